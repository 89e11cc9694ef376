"""TURN responses: success, error and 401/438 challenge messages for one request.

Every answer the TURN service gives to a request goes through
:class:`Responses`: it echoes the request's transaction id and FINGERPRINT
choice, appends the configured SOFTWARE, signs with the request's key when
there is one (MESSAGE-INTEGRITY-SHA256 when the request used it, RFC 8489
§9.2.4), puts PASSWORD-ALGORITHMS into 401/438 challenges, counts error
codes (``actrix_turn_error_responses``) and writes to the request's
:class:`~actrix.turn.allocation.ClientLink`. A rule that refuses a request
raises :class:`Reject`; the service turns it into :meth:`Responses.error`.

Debug lines cost ~4 µs each even when filtered out, so they are written only
while :attr:`Responses.debug` is set (the service re-reads the log level on
every sweep, so a SIGHUP level change applies).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from twisted.logger import Logger, LogLevel, PredicateResult

from actrix.core.logging import LEVELS
from actrix.stun import codec
from actrix.stun.codec import Message
from actrix.turn.allocation import ClientLink
from actrix.turn.limits import NonceIssuer
from actrix.turn.metrics import TurnMetrics

log = Logger()

_DEBUG_PROBE: Final = {"log_level": LogLevel.debug, "log_namespace": "actrix.turn"}


class Reject(Exception):
    """Answer the request with ``code`` (UNKNOWN-ATTRIBUTES, other attributes)."""

    def __init__(
        self,
        code: int,
        unknown: Iterable[int] = (),
        extra: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        super().__init__(code)
        self.code = code
        self.unknown = list(unknown)
        self.extra = list(extra)


def debug_enabled() -> bool:
    """Whether the process-wide log level lets the TURN debug lines out."""
    return LEVELS(_DEBUG_PROBE) is not PredicateResult.no


class Responses:
    """Encodes and sends the answers to TURN requests."""

    def __init__(
        self,
        metrics: TurnMetrics,
        realm: str,
        nonces: NonceIssuer,
        software: str = "",
        password_algorithms: bytes = b"",
    ) -> None:
        self._metrics = metrics
        self._realm_attr = realm.encode()
        self._algorithms: list[tuple[int, bytes]] = (
            [(codec.PASSWORD_ALGORITHMS, password_algorithms)]
            if password_algorithms
            else []
        )
        self._nonces = nonces
        self._software: list[tuple[int, bytes]] = (
            [(codec.SOFTWARE, software.encode())] if software else []
        )
        self.debug = debug_enabled()

    def refresh_debug(self) -> None:
        """Re-read the log level (called by the service's sweep)."""
        self.debug = debug_enabled()

    def success(
        self,
        message: Message,
        link: ClientLink,
        attrs: list[tuple[int, bytes]],
        key: bytes,
    ) -> None:
        """A success response signed with ``key``."""
        response = codec.encode(
            message.msg_type | codec.CLASS_SUCCESS,
            message.transaction_id,
            attrs + self._software,
            key=key,
            fingerprint=message.fingerprint,
            sha256=message.integrity256_offset >= 0,
        )
        link.send(response)

    def error(
        self,
        message: Message,
        link: ClientLink,
        code: int,
        key: bytes | None = None,
        unknown: Iterable[int] = (),
        extra: Iterable[tuple[int, bytes]] = (),
    ) -> None:
        """An error response (signed when ``key`` is given)."""
        self._metrics.rejected[code] += 1
        if self.debug:
            log.debug(
                "error {code} to 0x{method:03x} from {client}",
                code=code,
                method=message.method,
                client=link.address,
            )
        attrs = [(codec.ERROR_CODE, codec.encode_error_code(code))]
        unknown = list(unknown)
        if unknown:
            attrs.append(
                (codec.UNKNOWN_ATTRIBUTES, codec.encode_unknown_attributes(unknown))
            )
        attrs.extend(extra)
        attrs.extend(self._software)
        response = codec.encode(
            (message.msg_type & ~codec.CLASS_MASK) | codec.CLASS_ERROR,
            message.transaction_id,
            attrs,
            key=key,
            fingerprint=message.fingerprint,
            sha256=message.integrity256_offset >= 0,
        )
        link.send(response)

    def challenge(self, message: Message, link: ClientLink, code: int) -> None:
        """401 or 438 with our REALM, a fresh NONCE for the client's address and
        the PASSWORD-ALGORITHMS we accept (RFC 8489 §9.2.4)."""
        attrs = [
            (codec.REALM, self._realm_attr),
            (codec.NONCE, self._nonces.issue(link.address[0])),
            *self._algorithms,
        ]
        self.error(message, link, code, None, (), attrs)

    def allocate_success(
        self,
        message: Message,
        link: ClientLink,
        relay_addresses: list[tuple[str, int]],
        remaining: int,
        key: bytes,
        token: bytes | None,
        address_error: int = 0,
    ) -> None:
        """The Allocate success: relayed and mapped addresses, lifetime, token.

        A dual-stack allocation (RFC 8656) has two XOR-RELAYED-ADDRESS (IPv4
        first), or one and an IPv6 ADDRESS-ERROR-CODE when the second failed.
        """
        txid = message.transaction_id
        ip, port = link.address[0], link.address[1]
        attrs = [
            (codec.XOR_RELAYED_ADDRESS, codec.encode_xor_address(r_ip, r_port, txid))
            for r_ip, r_port in relay_addresses
        ]
        if address_error:
            attrs.append(
                (
                    codec.ADDRESS_ERROR_CODE,
                    codec.encode_address_error_code(codec.FAMILY_IPV6, address_error),
                )
            )
        attrs += [
            (codec.LIFETIME, codec.encode_u32(remaining)),
            (codec.XOR_MAPPED_ADDRESS, codec.encode_xor_address(ip, port, txid)),
        ]
        if token is not None:
            attrs.append((codec.RESERVATION_TOKEN, token))
        self.success(message, link, attrs, key)
