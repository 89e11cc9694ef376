"""ICE server lists for room acknowledgements (rooms.md §4.5).

The TURN REST scheme (coturn ``use-auth-secret``): username ``<expiry>:<name>``,
password base64(HMAC-SHA1(secret, username)). The TURN service verifies such
credentials; this module mints them, so the room service needs no TURN import.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable
from typing import Any

import attrs


def rest_credential(secret: bytes, name: str, expiry: int) -> tuple[str, str]:
    """A coturn REST ``(username, password)`` pair valid until ``expiry`` (s)."""
    username = f"{expiry}:{name}"
    mac = hmac.new(secret, username.encode("utf-8"), hashlib.sha1).digest()
    return username, base64.b64encode(mac).decode("ascii")


@attrs.frozen
class IceServerSource:
    """What this daemon's STUN/TURN offers; ``servers`` builds the list for a peer.

    ``stun``: STUN or TURN runs. ``turn_secret``: TURN runs with
    ``turn.static_auth_secret``. ``tcp``/``tls_port``: ``bind.ice``.
    """

    domain: str
    port: int
    stun: bool
    turn_secret: bytes | None = attrs.field(default=None, repr=False)
    tcp: bool = True
    tls_port: int | None = None
    # The bound port when ``bind.ice.port`` is 0 (tests); read at each ACK.
    port_of: Callable[[], int] | None = attrs.field(default=None, eq=False)

    def _port(self) -> int:
        return self.port if self.port_of is None else self.port_of()

    def servers(self, peer_id: str, expiry: int) -> list[dict[str, Any]]:
        """RTCIceServer dictionaries for ``peer_id``, TURN credential to ``expiry``."""
        out: list[dict[str, Any]] = []
        port = self._port()
        if self.stun or self.turn_secret is not None:
            out.append({"urls": [f"stun:{self.domain}:{port}"]})
        if self.turn_secret is not None:
            urls = [f"turn:{self.domain}:{port}?transport=udp"]
            if self.tcp:
                urls.append(f"turn:{self.domain}:{port}?transport=tcp")
            if self.tls_port is not None:
                urls.append(f"turns:{self.domain}:{self.tls_port}?transport=tcp")
            username, password = rest_credential(self.turn_secret, peer_id, expiry)
            out.append({"urls": urls, "username": username, "credential": password})
        return out

    def first_stun_url(self) -> str | None:
        if self.stun or self.turn_secret is not None:
            return f"stun:{self.domain}:{self._port()}"
        return None
