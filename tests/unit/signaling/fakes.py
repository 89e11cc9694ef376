"""In-memory collaborators for SignalingService unit tests."""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock

from actrix.core.actrid import actr_id_repr, new_actr_id
from actrix.core.interfaces import Claims, CredentialError
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling.compat import CompatibilityCache, InlineAnalyzer
from actrix.signaling.local_directory import LocalDirectory
from actrix.signaling.service import Session, SignalingService

REALM = 7

T = TypeVar("T")


def done(work: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that must complete at once (LocalDirectory)."""
    d = Deferred.fromCoroutine(work)
    results: list[T] = []
    d.addCallback(results.append)
    assert results, "the coroutine waited"
    return results[0]


class FakeRealms:
    """Realm 7 exists; ACL rows in a dict (no row: deny)."""

    def __init__(self) -> None:
        self.acl: dict[tuple[int, str, str], bool] = {}

    def realm(self, realm_id: int) -> Any:
        return None

    def realm_problem(self, realm_id: int) -> str | None:
        return None if realm_id == REALM else f"Realm {realm_id} not found"

    def acl_allowed(self, realm_id: int, from_type: str, to_type: str) -> bool:
        return self.acl.get((realm_id, from_type, to_type), False)

    async def replace_acl(
        self, realm_id: int, to_type: str, rules: Mapping[str, bool]
    ) -> None:
        for key in [k for k in self.acl if k[0] == realm_id and k[2] == to_type]:
            del self.acl[key]
        for from_type, allow in rules.items():
            self.acl[(realm_id, from_type, to_type)] = allow


def token_for(actr_id: actr_pb2.ActrId) -> actr_pb2.AIdCredential:
    """A "token" the fake validator accepts: the ActrId repr in clear."""
    return actr_pb2.AIdCredential(
        encrypted_token=actr_id_repr(actr_id).encode(), token_key_id=1
    )


class FakeValidator:
    """Accepts tokens made by :func:`token_for`; can hold answers back."""

    def __init__(self) -> None:
        self.in_tolerance = False
        self.hold: list[Deferred[None]] | None = None

    async def validate(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims:
        if self.hold is not None:
            d: Deferred[None] = Deferred()
            self.hold.append(d)
            await d
        if not encrypted_token.startswith(b"") or b"@" not in encrypted_token:
            raise CredentialError(
                "decrypt", "Token decryption failed: Decryption error: bad"
            )
        return Claims(
            realm_id=expected_realm,
            actor_id=encrypted_token.decode(),
            expr_time=2**40,
            psk=b"\x00" * 32,
            key_in_tolerance=self.in_tolerance,
        )


class CachingValidator(FakeValidator):
    """Also has the synchronous ``validate_cached`` of a validator with a token LRU.

    A token is cached once ``validate`` accepted it; ``validations`` counts the
    asynchronous calls.
    """

    def __init__(self) -> None:
        super().__init__()
        self.cached: dict[tuple[bytes, int], Claims] = {}
        self.validations = 0
        self.lookups = 0  # validate_cached calls
        self.until = float("inf")

    async def validate(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims:
        self.validations += 1
        claims = await super().validate(encrypted_token, key_id, expected_realm)
        self.cached[(encrypted_token, key_id)] = claims
        return claims

    def validate_cached(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> Claims | None:
        self.lookups += 1
        claims = self.cached.get((encrypted_token, key_id))
        if claims is None or claims.realm_id != expected_realm:
            return None
        return claims

    def cached_until(
        self, encrypted_token: bytes, key_id: int, expected_realm: int
    ) -> tuple[Claims, float] | None:
        """``validate_cached``, valid until ``self.until`` (seconds)."""
        claims = self.validate_cached(encrypted_token, key_id, expected_realm)
        return None if claims is None else (claims, self.until)


class FakeIssuer:
    """Mints serials 1, 2, 3... or returns a configured error."""

    def __init__(self) -> None:
        self.serial = 0
        self.error: actr_pb2.ErrorResponse | None = None
        self.raises: Exception | None = None

    def _ok(self, actr_id: actr_pb2.ActrId) -> actr_pb2.RegisterResponse:
        response = actr_pb2.RegisterResponse()
        ok = response.success
        ok.actr_id.CopyFrom(actr_id)
        ok.credential.CopyFrom(token_for(actr_id))
        ok.psk = b"\x11" * 32
        ok.signaling_heartbeat_interval_secs = 30
        return response

    async def register(
        self, request: actr_pb2.RegisterRequest
    ) -> actr_pb2.RegisterResponse:
        if self.raises is not None:
            raise self.raises
        if self.error is not None:
            return actr_pb2.RegisterResponse(error=self.error)
        self.serial += 1
        actr_id = actr_pb2.ActrId(serial_number=self.serial)
        actr_id.realm.CopyFrom(request.realm)
        actr_id.type.CopyFrom(request.actr_type)
        return self._ok(actr_id)

    async def refresh(self, actr_id: actr_pb2.ActrId) -> actr_pb2.RegisterResponse:
        if self.error is not None:
            return actr_pb2.RegisterResponse(error=self.error)
        return self._ok(actr_id)


class FakeConnection:
    """Records what the service sends and how it closes."""

    def __init__(self) -> None:
        self.sent: list[signaling_pb2.SignalingEnvelope] = []
        self.closed: tuple[int, str] | None = None
        self.aborted = False
        self.open = True
        self.flushes = 0

    def send_bytes(self, data: bytes) -> bool:
        if not self.open:
            return False
        envelope = signaling_pb2.SignalingEnvelope()
        envelope.ParseFromString(data)
        self.sent.append(envelope)
        return True

    def close_session(self, code: int, reason: str) -> None:
        self.closed = (code, reason)

    def abort(self) -> None:
        self.aborted = True

    def flush_now(self) -> None:
        self.flushes += 1


class Harness:
    """A service over fakes, with helpers to open sessions and send envelopes."""

    def __init__(
        self,
        issuer: FakeIssuer | None = None,
        store: Any = None,
        validator: FakeValidator | None = None,
        heartbeat_timeout: float = 300.0,
        reconnect_window: float = 30.0,
    ) -> None:
        self.clock = Clock()
        self.clock.advance(1_700_000_000)
        self.realms = FakeRealms()
        self.validator = validator if validator is not None else FakeValidator()
        self.issuer = issuer if issuer is not None else FakeIssuer()
        self.service = SignalingService(
            self.clock,
            self.realms,
            self.validator,
            self.issuer,
            store,
            CompatibilityCache(self.clock, InlineAnalyzer()),
            heartbeat_timeout=heartbeat_timeout,
            reconnect_window=reconnect_window,
        )

    @property
    def local(self) -> LocalDirectory:
        """The service's directory: the default, a LocalDirectory."""
        directory = self.service.directory
        assert isinstance(directory, LocalDirectory)
        return directory

    def sweep_heartbeats(self) -> int:
        """Run the heartbeat expiry (it completes at once on a LocalDirectory)."""
        return done(self.service.sweep_heartbeats())

    def open(self, role: str | None = None) -> tuple[Session, FakeConnection]:
        connection = FakeConnection()
        return self.service.open_session(connection, "127.0.0.1", role), connection

    def register(
        self, session: Session, name: str = "svc", allow_from: str | None = None
    ) -> actr_pb2.ActrId:
        envelope = envelope_with_id()
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = REALM
        request.actr_type.manufacturer = "acme"
        request.actr_type.name = name
        if allow_from is not None:
            rule = request.acl.rules.add()
            rule.permission = actr_pb2.AclRule.ALLOW
            rule.principals.add().actr_type.CopyFrom(
                actr_pb2.ActrType(manufacturer="acme", name=allow_from)
            )
        self.last_request_id = envelope.envelope_id
        self.service.handle(session, envelope)
        assert session.actor is not None
        return session.actor

    def actor_message(
        self, session: Session, actr_id: actr_pb2.ActrId
    ) -> tuple[signaling_pb2.SignalingEnvelope, signaling_pb2.ActrToSignaling]:
        envelope = envelope_with_id()
        body = envelope.actr_to_server
        body.source.CopyFrom(actr_id)
        body.credential.CopyFrom(token_for(actr_id))
        return envelope, body


_counter = 0


def envelope_with_id() -> signaling_pb2.SignalingEnvelope:
    global _counter  # test-only id sequence
    _counter += 1
    envelope = signaling_pb2.SignalingEnvelope(envelope_version=1)
    envelope.envelope_id = f"req-{_counter}"
    return envelope


def actor(serial: int, name: str = "svc") -> actr_pb2.ActrId:
    return new_actr_id(REALM, serial, "acme", name)
