"""Cost of the revocation check on the signaling fast path (one cached credential).

Every relay and actor message of a bound actor checks its token through
``validate_cached``. This times that call on the plain :class:`TokenValidator`
(the reference, same run) and through :class:`RevokingValidator` with no
revocation in force, with 10 000 of other actors, and for a revoked actor.
Prints a table and one ``RESULT`` line; ratios are against the reference.

    .venv/bin/python bench/revocation.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import coincurve
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from actrix.core import tokens
from actrix.core.credentials import InlineCrypto, TokenValidator
from actrix.core.interfaces import Claims, KeyRecord, SecretKey
from actrix.core.revocations import (
    Revocation,
    RevocationList,
    RevokingValidator,
)

ROUNDS = 200_000
REPEATS = 9


class _OneKey:
    def __init__(self) -> None:
        self.private = coincurve.PrivateKey()

    async def generate_key(self) -> KeyRecord:
        raise NotImplementedError

    async def secret_key(self, key_id: int) -> SecretKey | None:
        return SecretKey(1, self.private.secret, 0, 0)


class _NoDatabase:
    dialect = "sqlite"


def _time(fn: Any, args: tuple[Any, ...]) -> float:
    """One run of ROUNDS calls, in ns per call."""
    start = time.perf_counter_ns()
    for _ in range(ROUNDS):
        fn(*args)
    return (time.perf_counter_ns() - start) / ROUNDS


def main() -> None:
    clock = Clock()
    clock.advance(1_700_000_000)
    keys = _OneKey()
    inner = TokenValidator(keys, clock, crypto=InlineCrypto())
    claims = Claims(7, "abc@7/acme:svc", 1_700_003_600, b"k" * 32)
    token = tokens.encrypt_token(keys.private.public_key.format(True), claims)
    done: list[Claims] = []
    Deferred.fromCoroutine(inner.validate(token, 1, 7)).addCallback(done.append)
    assert done, "validation did not complete synchronously"

    def guard(serials: range, revoke_this: bool) -> RevokingValidator:
        revoked = RevocationList(_NoDatabase(), clock)  # type: ignore[arg-type]
        for serial in serials:
            revoked.add(Revocation(7, serial, "x", "", 0, 1_800_000_000))
        if revoke_this:
            revoked.add(Revocation(7, 0xABC, "abc@7/acme:svc", "", 0, 1_800_000_000))
        return RevokingValidator(inner, revoked)

    others = range(0x100000, 0x100000 + 10_000)
    variants = [
        ("plain TokenValidator (reference)", inner.validate_cached),
        ("RevokingValidator, none revoked", guard(range(0), False).validate_cached),
        ("RevokingValidator, 10 000 others", guard(others, False).validate_cached),
        ("RevokingValidator, this actor", guard(others, True).validate_cached),
    ]
    args = (token, 1, 7)
    assert variants[3][1](*args) is None
    best = [float("inf")] * len(variants)
    for _ in range(REPEATS):  # interleaved, so load changes hit every variant
        for i, (_, fn) in enumerate(variants):
            best[i] = min(best[i], _time(fn, args))
    rows = [(label, ns) for (label, _), ns in zip(variants, best, strict=True)]
    reference = rows[0][1]
    print(f"{'validate_cached':36} {'ns/call':>8} {'ratio':>6}")
    for label, ns in rows:
        print(f"{label:36} {ns:8.0f} {ns / reference:6.2f}")
    print(
        "RESULT "
        f"plain_ns={reference:.0f} none_ns={rows[1][1]:.0f} "
        f"others_ns={rows[2][1]:.0f} revoked_ns={rows[3][1]:.0f} "
        f"none_ratio={rows[1][1] / reference:.2f} "
        f"others_ratio={rows[2][1] / reference:.2f}"
    )


if __name__ == "__main__":
    main()
