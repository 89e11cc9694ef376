"""Envelopes of the signaling WebSocket: decoding, and the replies the server builds.

One binary frame is one ``signaling.SignalingEnvelope``. Missing proto2
``required`` fields decode as defaults (as prost does) and every envelope is
serialized with ``SerializePartialToString``, so a client that omits a required
field never makes the server raise while answering it (signaling.md §3.10).

Every string field of an inbound envelope, at any depth, is checked for UTF-8
here, once (:mod:`actrix.core.utf8`): the installed protobuf accepts bad UTF-8 in
proto2 strings and hands it back as ``bytes``, which no handler expects. An
envelope whose ``envelope_id`` is bad cannot be answered and is undecodable
(:class:`DecodeError`); any other bad string raises :class:`InvalidString`, which
the caller answers with :func:`invalid_string`.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Final

from google.protobuf.message import DecodeError as _ProtoDecodeError

from actrix.core.actrid import ActrIdError, parse_actr_id
from actrix.core.utf8 import Utf8Check
from actrix.proto import actr_pb2, signaling_pb2

ENVELOPE_VERSION: Final = 1
SUGGESTED_INTERVAL: Final = 30
TOLERANCE_WARNING: Final = (
    "Your credential key is in tolerance period. Please update your credential soon."
)

# The §9 texts, so tests and handlers agree on the exact prefixes.
CREDENTIAL_FAILED: Final = "Credential validation failed: "
REALM_FAILED: Final = "Realm validation failed: "
CROSS_REALM: Final = "Cross-realm relay is not allowed"
ACL_DENIED: Final = "ACL policy denies relay to target actor"
SOURCE_MISMATCH: Final = (
    "Source identity mismatch: relay.source does not match credential"
)
ACTOR_SOURCE_MISMATCH: Final = (
    "Source identity mismatch: source does not match credential"
)
CONNECTION_MISMATCH: Final = (
    "Source identity mismatch: source is not the actor registered on this connection"
)
ALREADY_REGISTERED: Final = "Already registered"
DIRECTORY_UNAVAILABLE: Final = (
    "Service unavailable: the actor directory (Redis) cannot be reached; "
    "try again later"
)
AIS_NOT_CONFIGURED: Final = "AIS not configured; registration is unavailable"
AIS_FAILED: Final = "Failed to call AIS: "
REFRESH_NOT_CONFIGURED: Final = "AIS service not configured"
REFRESH_FAILED: Final = "Failed to refresh credential: "
SPEC_NOT_FOUND: Final = "Service specification not found for name="
TOO_MANY_SUBSCRIPTIONS: Final = "Too many presence subscriptions"
# signaling.md §9 (and ais.md): the 400 text of a request that is not valid protobuf.
INVALID_PROTOBUF: Final = "Invalid protobuf: "
TOO_MANY_PRINCIPALS: Final = "Too many ACL principals: "  # Register, 400

# Built once: the schema copy that verifies UTF-8 (immutable after import).
_UTF8: Final = Utf8Check(signaling_pb2.SignalingEnvelope)


class DecodeError(Exception):
    """A binary frame is not a SignalingEnvelope."""


class InvalidString(Exception):
    """An envelope decoded, but one of its string fields is not UTF-8.

    ``envelope_id`` is valid (the envelope can be answered); ``field`` is the
    dotted path of the bad field.
    """

    def __init__(self, envelope_id: str, field: str) -> None:
        super().__init__(f"{field} is not valid UTF-8")
        self.envelope_id = envelope_id
        self.field = field


def decode_envelope(data: bytes) -> signaling_pb2.SignalingEnvelope:
    """Parse one frame and check every string field in it for UTF-8.

    Raises:
        DecodeError: the bytes are not a valid protobuf encoding, or the
            ``envelope_id`` is not UTF-8.
        InvalidString: another string field is not UTF-8.
    """
    envelope = signaling_pb2.SignalingEnvelope()
    try:
        envelope.ParseFromString(data)
    except (_ProtoDecodeError, RuntimeError, ValueError) as e:
        raise DecodeError(str(e) or "invalid protobuf") from None
    field = _UTF8.invalid_field(data, envelope)
    if field is None:
        return envelope
    if field == "envelope_id":
        raise DecodeError("envelope_id is not valid UTF-8")
    raise InvalidString(envelope.envelope_id, field)


def encode(envelope: signaling_pb2.SignalingEnvelope) -> bytes:
    """Serialize without enforcing ``required`` (clients' values are echoed)."""
    return envelope.SerializePartialToString()


def envelope_id() -> str:
    """A random UUIDv4, lowercase and hyphenated (as ``str(uuid.uuid4())``)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


_VARIANT: Final = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


class EnvelopeIds:
    """Random UUIDv4 strings for a hot path, 256 per ``os.urandom`` call.

    Relays need a fresh envelope id each; one ``getrandom`` system call per
    message (what ``uuid.uuid4()`` does) was a visible share of a relay's cost.
    The ids of a batch are formatted together, so a call is one ``list.pop``.
    """

    __slots__ = ("_ready",)

    BATCH: Final = 256

    def __init__(self) -> None:
        self._ready: list[str] = []

    def __call__(self) -> str:
        ready = self._ready
        if not ready:
            raw = os.urandom(16 * self.BATCH).hex()
            variant = _VARIANT
            ready.extend(
                f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant[h[16]]}{h[17:20]}-{h[20:]}"
                for h in (raw[i : i + 32] for i in range(0, len(raw), 32))
            )
        return ready.pop()


def restamp(
    envelope: signaling_pb2.SignalingEnvelope,
    now: float,
    reply_for: str | None = None,
    new_id: str | None = None,
) -> None:
    """Give ``envelope`` a fresh id (``new_id`` if given), version and timestamp."""
    envelope.envelope_version = ENVELOPE_VERSION
    envelope.envelope_id = new_id or envelope_id()
    envelope.timestamp.seconds = int(now)
    envelope.timestamp.nanos = 0
    if reply_for is None:
        envelope.ClearField("reply_for")
    else:
        envelope.reply_for = reply_for


def new_envelope(
    now: float, reply_for: str | None = None
) -> signaling_pb2.SignalingEnvelope:
    """An empty envelope with id, version, timestamp and optional ``reply_for``."""
    envelope = signaling_pb2.SignalingEnvelope()
    restamp(envelope, now, reply_for)
    return envelope


def to_actor(
    now: float, target: actr_pb2.ActrId, reply_for: str | None = None
) -> tuple[signaling_pb2.SignalingEnvelope, signaling_pb2.SignalingToActr]:
    """A ``server_to_actr`` envelope for ``target``; fill the payload of the second."""
    envelope = new_envelope(now, reply_for)
    body = envelope.server_to_actr
    body.target.CopyFrom(target)
    return envelope, body


def error_to_actor(
    now: float, target: actr_pb2.ActrId, reply_for: str, code: int, message: str
) -> signaling_pb2.SignalingEnvelope:
    """``server_to_actr.error{code, message}`` answering ``reply_for``."""
    envelope, body = to_actor(now, target, reply_for)
    body.error.code = code
    body.error.message = message
    return envelope


def envelope_error(
    now: float, code: int, message: str
) -> signaling_pb2.SignalingEnvelope:
    """An ``envelope_error`` push (no ``reply_for``), used for 429."""
    envelope = new_envelope(now)
    envelope.envelope_error.code = code
    envelope.envelope_error.message = message
    return envelope


def invalid_string(now: float, error: InvalidString) -> signaling_pb2.SignalingEnvelope:
    """The 400 ``envelope_error`` answering an envelope with a non-UTF-8 string."""
    envelope = envelope_error(now, 400, f"{INVALID_PROTOBUF}{error}")
    envelope.reply_for = error.envelope_id
    return envelope


def rate_limited(now: float, per_second: int) -> signaling_pb2.SignalingEnvelope:
    """The §1.3 message-rate refusal."""
    return envelope_error(
        now, 429, f"Too many messages. Limit: {per_second} messages/second"
    )


def temp_target() -> actr_pb2.ActrId:
    """The placeholder target of Register errors (§5.1)."""
    return actr_pb2.ActrId(
        realm=actr_pb2.Realm(realm_id=0),
        serial_number=0,
        type=actr_pb2.ActrType(manufacturer="temp", name="temp"),
    )


def register_error(
    now: float, reply_for: str, code: int, message: str
) -> signaling_pb2.SignalingEnvelope:
    """``register_response.error`` for a failed Register."""
    envelope, body = to_actor(now, temp_target(), reply_for)
    body.register_response.error.code = code
    body.register_response.error.message = message
    return envelope


def flow_name(envelope: signaling_pb2.SignalingEnvelope) -> str:
    """The flow label for metrics: the payload inside the envelope's flow."""
    flow = envelope.WhichOneof("flow")
    if flow is None:
        return "none"
    if flow == "envelope_error":
        return "envelope_error"
    inner: str | None = getattr(envelope, flow).WhichOneof("payload")
    return inner or flow


def same_type(a: actr_pb2.ActrType, b: actr_pb2.ActrType) -> bool:
    """Structural ActrType equality (version absent differs from version "")."""
    return (
        a.manufacturer == b.manufacturer
        and a.name == b.name
        and a.HasField("version") == b.HasField("version")
        and a.version == b.version
    )


def same_id(a: actr_pb2.ActrId, b: actr_pb2.ActrId) -> bool:
    """Full structural ActrId equality (realm, serial and type)."""
    return (
        a.realm.realm_id == b.realm.realm_id
        and a.serial_number == b.serial_number
        and same_type(a.type, b.type)
    )


def actor_key(actr_id: actr_pb2.ActrId) -> tuple[int, int]:
    """How relays and the registry find an actor: (realm_id, serial)."""
    return (actr_id.realm.realm_id, actr_id.serial_number)


def parse_url_identity(
    params: dict[str, list[str]],
) -> tuple[actr_pb2.ActrId, actr_pb2.AIdCredential] | None:
    """The reconnect identity of the upgrade URL (§1.1), or None if absent or malformed.

    ``params`` is the parsed query (values already percent-decoded). A ``+`` of
    an unescaped base64 token arrives as a space and is put back.
    """
    actor = params.get("actor_id")
    token = params.get("token")
    if not actor or not token:
        return None
    try:
        actr_id = parse_actr_id(actor[0])
    except ActrIdError:
        return None
    try:
        encrypted = base64.b64decode(token[0].replace(" ", "+"), validate=True)
    except (binascii.Error, ValueError):
        return None
    key_id = 0
    raw_key = params.get("token_key_id")
    if raw_key:
        try:
            key_id = int(raw_key[0])
        except ValueError:
            key_id = 0
        if not 0 <= key_id < 1 << 32:
            key_id = 0
    return actr_id, actr_pb2.AIdCredential(
        encrypted_token=encrypted, token_key_id=key_id
    )
