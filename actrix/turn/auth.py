"""TURN long-term credentials: actr tokens, coturn REST secrets and static users.

Every scheme yields both long-term keys of RFC 8489 §9.2.2, MD5 and SHA-256
of ``username ":" realm ":" password``; the request's PASSWORD-ALGORITHM picks
one and its MESSAGE-INTEGRITY(-SHA256) is then checked with it by
:mod:`actrix.turn.authn`. A request may name its user by USERHASH (RFC 8489
§14.4) instead: :meth:`TurnAuth.username_for_hash` maps the hashes of the
static users and of every username that has authenticated by name recently
(bounded) back to the name; a REST or actr username nobody has used by name
yet cannot be recovered from its hash.

* static ``turn.users``: the key is computed once at start;
* REST (``turn.static_auth_secret``, coturn's ``use-auth-secret``): username
  ``<expiry>:<name>``, password base64(HMAC-SHA1(secret, username)); cheap, so
  computed per request. Several secrets may be configured for rotation
  (coturn's repeated ``static-auth-secret``): :meth:`TurnAuth.lookup` gives
  the first one's credential and :meth:`TurnAuth.rest_alternatives` the
  others', tried in order when the integrity check fails;
* actr (turn-auth.md §2-4): username = base122(realm_id ‖ key_id ‖ ECIES token),
  password = hex PSK. The token is validated by the shared
  :class:`~actrix.core.interfaces.CredentialValidator` (KS lookup, decryption
  on a thread pool), which is asynchronous; the derived key then sits in a
  bounded LRU keyed by username (the realm is always ours: another realm is
  refused before the cache) until the token expires. A hit
  re-checks expiry and the realm's state, fixing the original's caveat that a
  cached token kept working after it expired or its realm was suspended.
  Deterministic failures are remembered briefly so one bad username cannot
  make us decrypt over and over.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections import OrderedDict
from collections.abc import Iterable
from typing import Final

from twisted.internet.interfaces import IReactorTime

from actrix.core import base122
from actrix.core.config import Secret, TurnUser
from actrix.core.interfaces import CredentialError, CredentialValidator, RealmDirectory
from actrix.stun.codec import ALGORITHM_SHA256, long_term_key
from actrix.stun.credentials import long_term_key_sha256, userhash

CACHE_SIZE: Final = 4096
NEGATIVE_TTL: Final = 10.0
NEGATIVE_SIZE: Final = 1024
MIN_ACTR_BYTES: Final = 9  # realm_id (4) + key_id (4) + at least one token byte


class AuthFailure(Exception):
    """The credentials are not acceptable; ``reason`` labels metrics and logs.

    ``code`` is the STUN error to answer: 401 for bad credentials (RFC 5389
    §10.2.2), 500 when the key source could not be asked.
    """

    def __init__(self, reason: str, code: int = 401) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class Credential:
    """Usable long-term keys and whom they belong to (for quotas)."""

    __slots__ = (
        "expires_at",
        "key",
        "key_sha256",
        "principal",
        "realm_id",
        "secret_index",
        "username",
    )

    def __init__(
        self,
        username: str,
        realm: str,
        password: str,
        principal: str,
        expires_at: float,
        realm_id: int | None,
        secret_index: int = -1,
    ) -> None:
        self.username = username
        self.secret_index = secret_index  # which REST secret; -1: not REST
        self.key = long_term_key(username, realm, password)
        self.key_sha256 = long_term_key_sha256(username, realm, password)
        self.principal = principal
        self.expires_at = expires_at
        self.realm_id = realm_id

    def key_for(self, algorithm: int) -> bytes:
        """The key of a PASSWORD-ALGORITHM (MD5 unless SHA-256)."""
        return self.key_sha256 if algorithm == ALGORITHM_SHA256 else self.key


class TurnAuth:
    """Looks up or derives the long-term key for a (USERNAME, REALM) pair."""

    def __init__(
        self,
        clock: IReactorTime,
        realm: str,
        *,
        users: Iterable[TurnUser] = (),
        rest_secrets: Iterable[Secret] = (),
        validator: CredentialValidator | None = None,
        realms: RealmDirectory | None = None,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self._clock = clock
        self.realm = realm
        self._static = {
            u.name: Credential(
                u.name, realm, u.password.value, f"user:{u.name}", float("inf"), None
            )
            for u in users
        }
        self._static_hashes = {userhash(name, realm): name for name in self._static}
        # USERHASH -> username of names seen in requests (bounded, LRU).
        self._hashes: OrderedDict[bytes, str] = OrderedDict()
        self._rest_secrets = [secret.encode() for secret in rest_secrets]
        self._validator = validator
        self._realms = realms
        self._cache: OrderedDict[str, Credential] = OrderedDict()
        self._cache_size = cache_size
        # username -> (until, reason, code): never the exception object itself.
        self._negative: OrderedDict[str, tuple[float, str, int]] = OrderedDict()

    def username_for_hash(self, value: bytes) -> str | None:
        """The username whose USERHASH is ``value``, if we know it."""
        name = self._static_hashes.get(value)
        if name is not None:
            return name
        name = self._hashes.get(value)
        if name is not None:
            self._hashes.move_to_end(value)
        return name

    def learn_username(self, username: str) -> None:
        """Remember the USERHASH of a username that authenticated by name."""
        if username in self._static:
            return
        value = userhash(username, self.realm)
        hashes = self._hashes
        hashes[value] = username
        hashes.move_to_end(value)
        while len(hashes) > self._cache_size:
            hashes.popitem(last=False)

    def lookup(self, username: str, realm: str) -> Credential | None:
        """The credential if it can be had synchronously; None means :meth:`resolve`.

        Raises:
            AuthFailure: unknown user, wrong realm, expired or invalid credential.
        """
        if realm != self.realm:
            raise AuthFailure("realm")
        static = self._static.get(username)
        if static is not None:
            return static
        if self._rest_secrets and _looks_like_rest(username):
            return self._rest(username, realm, 0)
        now = self._clock.seconds()
        cached = self._cache.get(username)
        if cached is not None:
            if now > cached.expires_at:
                del self._cache[username]
                raise AuthFailure("expired")
            if self._realm_problem(cached.realm_id):
                raise AuthFailure("realm_inactive")
            self._cache.move_to_end(username)
            return cached
        negative = self._negative.get(username)
        if negative is not None:
            until, reason, code = negative
            if now <= until:
                # A fresh exception per hit: re-raising a stored one would chain
                # this call's frames onto its traceback, growing on every hit.
                raise AuthFailure(reason, code)
            del self._negative[username]
        return None

    async def resolve(self, username: str, realm: str) -> Credential:
        """Validate an actr username (slow path) and cache the derived key.

        Raises:
            AuthFailure: ``bad_username``, ``no_key_source``, the validator's kind
                (``unknown_key``, ``decrypt``, ``expired``, ...), or
                ``realm_inactive``.
        """
        try:
            credential = await self._validate_actr(username, realm)
        except AuthFailure as failure:
            if failure.code == 401:
                self._remember_failure(username, failure)
            raise
        self._cache[username] = credential
        self._cache.move_to_end(username)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return credential

    async def _validate_actr(self, username: str, realm: str) -> Credential:
        try:
            raw = base122.decode(username)
        except base122.Base122Error as e:
            raise AuthFailure("bad_username") from e
        if len(raw) < MIN_ACTR_BYTES:
            raise AuthFailure("bad_username")
        realm_id = int.from_bytes(raw[0:4], "big")
        key_id = int.from_bytes(raw[4:8], "big")
        if self._validator is None:
            raise AuthFailure("no_key_source")
        try:
            claims = await self._validator.validate(raw[8:], key_id, realm_id)
        except CredentialError as e:
            code = 500 if e.kind == "ks_error" else 401
            raise AuthFailure(e.kind, code) from e
        if self._realm_problem(claims.realm_id):
            raise AuthFailure("realm_inactive")
        if self._clock.seconds() > claims.expr_time:
            raise AuthFailure("expired")
        principal = f"actr:{claims.realm_id}:{claims.actor_id}"
        return Credential(
            username,
            realm,
            claims.psk.hex(),
            principal,
            float(claims.expr_time),
            claims.realm_id,
        )

    def rest_alternatives(self, credential: Credential) -> list[Credential]:
        """The REST credentials of the same username under the other secrets."""
        if credential.secret_index != 0:
            return []
        return [
            self._rest(credential.username, self.realm, index)
            for index in range(1, len(self._rest_secrets))
        ]

    def _rest(self, username: str, realm: str, index: int) -> Credential:
        expiry_text, _, name = username.partition(":")
        expiry = int(expiry_text)
        if expiry < self._clock.seconds():
            raise AuthFailure("expired")
        secret = self._rest_secrets[index]
        mac = hmac.new(secret, username.encode(), hashlib.sha1).digest()
        password = base64.b64encode(mac).decode("ascii")
        return Credential(
            username, realm, password, f"rest:{name}", float(expiry), None, index
        )

    def _realm_problem(self, realm_id: int | None) -> bool:
        if realm_id is None or self._realms is None:
            return False
        return self._realms.realm_problem(realm_id) is not None

    def _remember_failure(self, username: str, failure: AuthFailure) -> None:
        until = self._clock.seconds() + NEGATIVE_TTL
        self._negative[username] = (until, failure.reason, failure.code)
        while len(self._negative) > NEGATIVE_SIZE:
            self._negative.popitem(last=False)

    def forget_principals(self, prefix: str) -> int:
        """Drop the cached keys whose principal starts with ``prefix``; how many."""
        doomed = [
            name
            for name, credential in self._cache.items()
            if credential.principal.startswith(prefix)
        ]
        for name in doomed:
            del self._cache[name]
        return len(doomed)

    def forget(self) -> None:
        """Drop every cached key (used on shutdown and in tests)."""
        self._cache.clear()
        self._negative.clear()
        self._hashes.clear()

    @property
    def cached_count(self) -> int:
        """How many actr keys are cached."""
        return len(self._cache)


def _looks_like_rest(username: str) -> bool:
    """``<digits>:<anything>``: coturn's timestamp-first REST username."""
    head, sep, _ = username.partition(":")
    return bool(sep) and 0 < len(head) <= 12 and head.isascii() and head.isdigit()


def rest_credentials(secret: str, name: str, expiry: int) -> tuple[str, str]:
    """A coturn REST (username, password) pair valid until ``expiry``."""
    username = f"{expiry}:{name}"
    mac = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode("ascii")
