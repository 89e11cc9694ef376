"""A small actr signaling client for tests and the benchmark: Autobahn + our protos.

It speaks only the wire protocol (signaling.md): one binary frame per
``SignalingEnvelope``, responses matched by ``reply_for``, everything else
queued as a push. It knows nothing of the server's internals.
"""

from __future__ import annotations

import base64
import uuid
from collections import deque
from typing import Any
from urllib.parse import quote, urlencode

from autobahn.twisted.websocket import WebSocketClientFactory
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, wrapClientTLS

from actrix.core.actrid import actr_id_repr
from actrix.proto import actr_pb2, signaling_pb2, webrtc_pb2
from tests.wsclient import ClientClosed, ClientProtocol

TIMEOUT = 5.0


class SignalingClient:
    """One actr client connection."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.protocol: ClientProtocol | None = None
        self.actr_id: actr_pb2.ActrId | None = None
        self.credential: actr_pb2.AIdCredential | None = None
        self.psk: bytes = b""
        self.pushes: deque[signaling_pb2.SignalingEnvelope] = deque()
        self.text_frames = 0
        self.close_code: int | None = None
        self.close_reason = ""
        self._waiting: dict[str, Deferred[signaling_pb2.SignalingEnvelope]] = {}
        self._push_waiters: list[Deferred[signaling_pb2.SignalingEnvelope]] = []
        self._open: Deferred[SignalingClient] = Deferred()
        self._close_waiters: list[Deferred[int | None]] = []
        self.closed = False

    # ------------------------------------------------------------------
    # Connection

    @classmethod
    async def connect(
        cls,
        reactor: Any,
        port: int,
        query: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        path: str = "/signaling/ws",
        tls: Any = None,
    ) -> SignalingClient:
        """Open a WebSocket (``wss://`` with ``tls``, a client TLS connection
        creator); raises ClientClosed if the upgrade is refused."""
        client = cls(reactor)
        url = f"{'wss' if tls is not None else 'ws'}://{host}:{port}{path}"
        if query:
            url += "?" + urlencode(query, quote_via=quote)
        factory = WebSocketClientFactory(url, reactor=reactor)
        factory.protocol = ClientProtocol
        factory.setProtocolOptions(autoPingInterval=0, openHandshakeTimeout=TIMEOUT)
        endpoint: Any = TCP4ClientEndpoint(reactor, host, port, timeout=TIMEOUT)
        if tls is not None:
            endpoint = wrapClientTLS(tls, endpoint)
        protocol = await endpoint.connect(factory)
        assert isinstance(protocol, ClientProtocol)
        protocol.client = client
        opened = client._open
        opened.addTimeout(TIMEOUT, reactor)
        return await opened

    @classmethod
    async def reconnect(
        cls, reactor: Any, port: int, old: SignalingClient, role: str | None = None
    ) -> SignalingClient:
        """Connect with ``old``'s identity in the URL (§1.1) and adopt it."""
        assert old.actr_id is not None and old.credential is not None
        query = url_identity(old.actr_id, old.credential)
        if role is not None:
            query["webrtc_role"] = role
        client = await cls.connect(reactor, port, query)
        client.actr_id, client.credential, client.psk = (
            old.actr_id,
            old.credential,
            old.psk,
        )
        return client

    def _opened(self, protocol: ClientProtocol) -> None:
        self.protocol = protocol
        if not self._open.called:
            self._open.callback(self)

    def _received(self, payload: bytes, is_binary: bool) -> None:
        if not is_binary:
            self.text_frames += 1
            return
        envelope = signaling_pb2.SignalingEnvelope()
        envelope.ParseFromString(payload)
        if envelope.HasField("reply_for") and envelope.reply_for in self._waiting:
            self._waiting.pop(envelope.reply_for).callback(envelope)
            return
        if self._push_waiters:
            self._push_waiters.pop(0).callback(envelope)
        else:
            self.pushes.append(envelope)

    def _closed(self, code: int | None, reason: str) -> None:
        self.closed = True
        self.close_code, self.close_reason = code, reason
        error = ClientClosed(code, reason)
        if not self._open.called:
            self._open.errback(error)
        for d in list(self._waiting.values()) + self._push_waiters:
            if not d.called:
                d.errback(error)
        self._waiting.clear()
        self._push_waiters.clear()
        for waiter in self._close_waiters:
            waiter.callback(code)
        self._close_waiters.clear()

    async def close(self, code: int = 1000) -> None:
        """Close and wait until the socket is gone."""
        if self.closed or self.protocol is None:
            return
        done = self.wait_closed()
        self.protocol.sendClose(code)
        await done

    def wait_closed(self, timeout: float = TIMEOUT) -> Deferred[int | None]:
        d: Deferred[int | None] = Deferred()
        if self.closed:
            d.callback(self.close_code)
            return d
        self._close_waiters.append(d)
        d.addTimeout(timeout, self.reactor)
        return d

    def drop(self) -> None:
        """Abort the TCP connection without a close handshake."""
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.abortConnection()  # type: ignore[attr-defined]  # ITCPTransport

    # ------------------------------------------------------------------
    # Frames

    def send_raw(
        self, data: bytes, binary: bool = True, fragment_size: int | None = None
    ) -> None:
        """One WebSocket message, split in frames of ``fragment_size`` if given."""
        assert self.protocol is not None
        self.protocol.sendMessage(data, isBinary=binary, fragmentSize=fragment_size)

    def send(
        self,
        envelope: signaling_pb2.SignalingEnvelope,
        fragment_size: int | None = None,
    ) -> None:
        self.send_raw(envelope.SerializePartialToString(), fragment_size=fragment_size)

    async def request(
        self,
        envelope: signaling_pb2.SignalingEnvelope,
        timeout: float = TIMEOUT,
        fragment_size: int | None = None,
    ) -> signaling_pb2.SignalingEnvelope:
        """Send and wait for the envelope whose ``reply_for`` is our id."""
        d: Deferred[signaling_pb2.SignalingEnvelope] = Deferred()
        self._waiting[envelope.envelope_id] = d
        d.addTimeout(timeout, self.reactor)
        self.send(envelope, fragment_size)
        return await d

    async def request_bytes(
        self, envelope_id: str, data: bytes, timeout: float = TIMEOUT
    ) -> signaling_pb2.SignalingEnvelope:
        """Send a hand-made frame and wait for the answer to ``envelope_id``."""
        d: Deferred[signaling_pb2.SignalingEnvelope] = Deferred()
        self._waiting[envelope_id] = d
        d.addTimeout(timeout, self.reactor)
        self.send_raw(data)
        return await d

    async def next_push(
        self, timeout: float = TIMEOUT
    ) -> signaling_pb2.SignalingEnvelope:
        """The next envelope that answers no request."""
        if self.pushes:
            return self.pushes.popleft()
        d: Deferred[signaling_pb2.SignalingEnvelope] = Deferred()
        self._push_waiters.append(d)
        d.addTimeout(timeout, self.reactor)
        return await d

    # ------------------------------------------------------------------
    # Flows

    async def register(
        self,
        realm_id: int,
        manufacturer: str = "acme",
        name: str = "echo",
        version: str | None = None,
        spec: actr_pb2.ServiceSpec | None = None,
        acl: actr_pb2.Acl | None = None,
        ws_address: str | None = None,
    ) -> actr_pb2.RegisterResponse:
        """Register; on success remember the ActrId and credential."""
        envelope = new_envelope()
        request = envelope.peer_to_server.register_request
        request.realm.realm_id = realm_id
        request.actr_type.manufacturer = manufacturer
        request.actr_type.name = name
        if version is not None:
            request.actr_type.version = version
        if spec is not None:
            request.service_spec.CopyFrom(spec)
        if acl is not None:
            request.acl.CopyFrom(acl)
        if ws_address is not None:
            request.ws_address = ws_address
        reply = await self.request(envelope)
        response = reply.server_to_actr.register_response
        if response.HasField("success"):
            self.actr_id = actr_pb2.ActrId()
            self.actr_id.CopyFrom(response.success.actr_id)
            self.credential = actr_pb2.AIdCredential()
            self.credential.CopyFrom(response.success.credential)
            self.psk = response.success.psk
        return response

    def actor_envelope(
        self,
        source: actr_pb2.ActrId | None = None,
        credential: actr_pb2.AIdCredential | None = None,
    ) -> tuple[signaling_pb2.SignalingEnvelope, signaling_pb2.ActrToSignaling]:
        """An ``actr_to_server`` envelope from us (or a chosen source/credential)."""
        envelope = new_envelope()
        body = envelope.actr_to_server
        src = source if source is not None else self.actr_id
        cred = credential if credential is not None else self.credential
        assert src is not None and cred is not None
        body.source.CopyFrom(src)
        body.credential.CopyFrom(cred)
        return envelope, body

    async def ping(
        self,
        availability: int = 0,
        power_reserve: float = 1.0,
        mailbox_backlog: float = 0.0,
        sticky: tuple[str, ...] = (),
    ) -> signaling_pb2.SignalingToActr:
        envelope, body = self.actor_envelope()
        body.ping.availability = availability  # type: ignore[assignment]  # enum int
        body.ping.power_reserve = power_reserve
        body.ping.mailbox_backlog = mailbox_backlog
        body.ping.sticky_client_ids.extend(sticky)
        return (await self.request(envelope)).server_to_actr

    async def call(self, **payload: Any) -> signaling_pb2.SignalingToActr:
        """One actor request whose payload field is the keyword's name."""
        envelope, body = self.actor_envelope()
        for field, value in payload.items():
            getattr(body, field).CopyFrom(value)
        return (await self.request(envelope)).server_to_actr

    def relay_envelope(
        self,
        target: actr_pb2.ActrId,
        source: actr_pb2.ActrId | None = None,
        credential: actr_pb2.AIdCredential | None = None,
    ) -> tuple[signaling_pb2.SignalingEnvelope, signaling_pb2.ActrRelay]:
        envelope = new_envelope()
        relay = envelope.actr_relay
        src = source if source is not None else self.actr_id
        cred = credential if credential is not None else self.credential
        assert src is not None and cred is not None
        relay.source.CopyFrom(src)
        relay.credential.CopyFrom(cred)
        relay.target.CopyFrom(target)
        return envelope, relay

    def send_candidate(
        self, target: actr_pb2.ActrId, candidate: str = "candidate:1"
    ) -> str:
        envelope, relay = self.relay_envelope(target)
        relay.ice_candidate.CopyFrom(webrtc_pb2.IceCandidate(candidate=candidate))
        self.send(envelope)
        return envelope.envelope_id


def new_envelope() -> signaling_pb2.SignalingEnvelope:
    envelope = signaling_pb2.SignalingEnvelope()
    envelope.envelope_version = 1
    envelope.envelope_id = str(uuid.uuid4())
    envelope.timestamp.seconds = 0
    return envelope


def url_identity(
    actr_id: actr_pb2.ActrId, credential: actr_pb2.AIdCredential
) -> dict[str, str]:
    """The §1.1 query parameters of a reconnect."""
    return {
        "actor_id": actr_id_repr(actr_id),
        "token": base64.b64encode(credential.encrypted_token).decode("ascii"),
        "token_key_id": str(credential.token_key_id),
    }
