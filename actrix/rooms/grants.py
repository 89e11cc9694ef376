"""Room token checks (rooms.md §4.3) and use counting, for the room service.

:class:`Authorizer` turns the token text of a JOIN, DISCOVER, CONNECT or ROOM_*
into a :class:`Grant`, or raises :class:`~actrix.rooms.model.RoomError` with the
first failing check's reason. Use counts live in memory, keyed by the token's
nonce until its expiry; each counted use is also written to the store so a
restart does not reset them.
"""

from __future__ import annotations

from typing import Final, Protocol, TypeGuard

import attrs
from twisted.internet.interfaces import IReactorTime

from actrix.core import roomtokens
from actrix.core.interfaces import RealmInfo
from actrix.core.realms import RoomSecret
from actrix.rooms.model import UNAUTHORIZED, RoomError

REASONS: Final = {
    "token_required": "a room token is required",
    "token_malformed": "room token is malformed",
    "unknown_kid": "room token key is unknown",
    "bad_signature": "room token signature is invalid",
    "expired": "room token has expired",
    "realm_inactive": "realm is not active",
    "wrong_room": "room token does not grant this room",
    "wrong_role": "room token does not grant this role",
    "wrong_peer": "room token is bound to another peer",
    "uses_exhausted": "room token use limit reached",
    "wrong_realm": "room belongs to another realm",
}


def refusal(reason: str) -> RoomError:
    """The UNAUTHORIZED error of a §4.3 reason key (binary: ERROR 1)."""
    message = REASONS[reason]
    return RoomError(
        UNAUTHORIZED,
        message,
        reason,
        binary_message=f"Authentication failed: {message}",
    )


class RealmSecrets(Protocol):
    """What the checks need from the realm directory (RealmCache)."""

    def room_secret(self, realm_id: int, kid: int) -> bytes | None: ...

    def realm_problem(self, realm_id: int) -> str | None: ...

    def realm(self, realm_id: int) -> RealmInfo | None: ...

    async def current_room_secret(self, realm_id: int) -> RoomSecret: ...


class MintError(Exception):
    """A token request refused with HTTP ``status`` and KS-style ``text``."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class UseRecorder(Protocol):
    """Persists token uses (``rooms.store.RoomStore``)."""

    def record_use(self, nonce: str, exp: int) -> None: ...


@attrs.frozen
class Grant:
    """What a checked token (or anonymous mode) allows."""

    realm_id: int
    role: str  # "sender" | "receiver" | "any"
    peer: str | None = None
    exp: int | None = None
    nonce: str | None = None
    max_uses: int | None = None

    @property
    def anonymous(self) -> bool:
        return self.nonce is None


class Authorizer:
    """Checks room tokens against realm secrets, status and use counts."""

    def __init__(
        self,
        realms: RealmSecrets,
        clock: IReactorTime,
        recorder: UseRecorder,
        *,
        allow_anonymous: bool,
        anonymous_realm_id: int,
        uses: dict[str, tuple[int, int]] | None = None,
        token_max_ttl: int = 86400,
    ) -> None:
        self.token_max_ttl = token_max_ttl
        self._realms = realms
        self._clock = clock
        self._recorder = recorder
        self.allow_anonymous = allow_anonymous
        self.anonymous_realm_id = anonymous_realm_id
        self._uses: dict[str, tuple[int, int]] = dict(uses or {})

    def anonymous(self) -> Grant:
        return Grant(self.anonymous_realm_id, "any")

    def realm_active(self, realm_id: int) -> bool:
        """The anonymous realm is always active; others per the realm directory."""
        if self.allow_anonymous and realm_id == self.anonymous_realm_id:
            return True
        return self._realms.realm_problem(realm_id) is None

    def check(
        self,
        token: str | None,
        *,
        room: str | None = None,
        role: str | None = None,
        client_id: str | None = None,
        count: bool = False,
    ) -> Grant:
        """Rows 1-10 of §4.3 (7/8 only with ``room``, 9 only with ``client_id``,
        10 only with ``count``); a ``count`` check does not count the use yet.

        Raises:
            RoomError: UNAUTHORIZED with the first failing reason.
        """
        if not token or not token.startswith(roomtokens.PREFIX):
            if self.allow_anonymous:
                return self.anonymous()
            raise refusal("token_required" if not token else "token_malformed")
        try:
            claims, body, mac = roomtokens.parse(token)
        except roomtokens.TokenFormatError:
            raise refusal("token_malformed") from None
        secret = self._realms.room_secret(claims.realm_id, claims.kid)
        if secret is None:
            raise refusal("unknown_kid")
        if not roomtokens.signature_valid(body, mac, secret):
            raise refusal("bad_signature")
        now = self._clock.seconds()
        if now >= claims.exp:
            raise refusal("expired")
        if not self.realm_active(claims.realm_id):
            raise refusal("realm_inactive")
        if room is not None and not claims.grants_room(room):
            raise refusal("wrong_room")
        if room is not None and not claims.grants_role(role):
            raise refusal("wrong_role")
        if (
            client_id is not None
            and claims.peer is not None
            and claims.peer != client_id
        ):
            raise refusal("wrong_peer")
        if count and claims.max_uses is not None:
            used = self._uses.get(claims.nonce, (0, 0))[0]
            if used >= claims.max_uses:
                raise refusal("uses_exhausted")
        return Grant(
            claims.realm_id,
            claims.role,
            claims.peer,
            claims.exp,
            claims.nonce,
            claims.max_uses,
        )

    def count_use(self, grant: Grant) -> None:
        """Count one successful join with ``grant`` (tokens with a use limit)."""
        if grant.nonce is None or grant.max_uses is None or grant.exp is None:
            return
        used = self._uses.get(grant.nonce, (0, grant.exp))[0] + 1
        self._uses[grant.nonce] = (used, grant.exp)
        self._recorder.record_use(grant.nonce, grant.exp)

    def uses(self, nonce: str) -> int:
        return self._uses.get(nonce, (0, 0))[0]

    def sweep(self) -> None:
        """Forget use counts of expired tokens."""
        now = self._clock.seconds()
        for nonce in [n for n, (_, exp) in self._uses.items() if exp <= now]:
            del self._uses[nonce]

    async def mint_request(
        self, body: dict[str, object]
    ) -> tuple[str, roomtokens.RoomClaims]:
        """Mint a token for a verified ``POST /api/rooms/tokens`` body (§6.2).

        Raises:
            MintError: 400 bad parameters, 404 unknown realm, 409 inactive realm.
        """
        bad = MintError(400, "Invalid request parameters")
        realm_id, room = body.get("realm_id"), body.get("room")
        role_text = body.get("role", "any")
        peer, ttl, max_uses = (
            body.get("peer"),
            body.get("ttl", 3600),
            body.get("max_uses"),
        )
        if (
            not _is_int(realm_id)
            or not isinstance(room, str)
            or not isinstance(role_text, str)
        ):
            raise bad
        role = roomtokens.normalize_role(role_text)
        if role is None or not _is_int(ttl) or not 60 <= ttl <= self.token_max_ttl:
            raise bad
        if peer is not None and not isinstance(peer, str):
            raise bad
        if max_uses is not None and not _is_int(max_uses):
            raise bad
        if self._realms.realm(realm_id) is None:
            raise MintError(404, "Realm not found")
        if self._realms.realm_problem(realm_id) is not None:
            raise MintError(409, "Realm not active")
        secret = await self._realms.current_room_secret(realm_id)
        claims = roomtokens.RoomClaims(
            realm_id=realm_id,
            room=room,
            role=role,
            exp=int(self._clock.seconds()) + ttl,
            nonce=roomtokens.new_nonce(),
            kid=secret.kid,
            peer=peer,
            max_uses=max_uses,
        )
        try:
            token = roomtokens.mint(claims, secret.secret)
        except roomtokens.TokenFormatError:
            raise bad from None
        return token, claims


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)
