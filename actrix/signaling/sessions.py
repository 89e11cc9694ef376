"""Sessions: the service's view of a WebSocket, the actor bound to it, and sending.

The protocol gives every socket to the service as a :class:`Connection`; the
service wraps it in a :class:`Session`. :class:`Sessions` owns the open sessions
and the index actor → session that relays and presence pushes use, and it is
the one place that serializes an envelope onto a socket (and counts it).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterator
from typing import Final, Protocol

from twisted.internet.interfaces import IReactorTime

from actrix.core.actrid import actr_id_repr, type_key
from actrix.core.directory import ActorKey
from actrix.core.interfaces import Claims
from actrix.proto import actr_pb2, signaling_pb2
from actrix.signaling import messages as m
from actrix.signaling.metrics import SignalingMetrics

REPLACED_CODE: Final = 4000  # close code of a socket superseded by a reconnect

RelayAuth = tuple[bytes, int, int, Claims, float]


class Connection(Protocol):
    """What the service needs from a WebSocket."""

    def send_bytes(self, data: bytes) -> bool:
        """Queue one binary message; False if the socket is no longer open."""
        ...

    def close_session(self, code: int, reason: str) -> None:
        """Start a WebSocket close handshake."""
        ...

    def abort(self) -> None:
        """Drop the TCP connection now."""
        ...

    def flush_now(self) -> None:
        """Write what is queued now, not at the reactor's next turn."""
        ...


class Session:
    """One WebSocket as the service sees it.

    ``label`` and ``type_key`` are the bound actor's ActrId repr and type key,
    computed once at bind time so per-message checks need not rebuild them.
    """

    __slots__ = (
        "actor",
        "backlog",
        "closed",
        "connection",
        "credential",
        "id",
        "ip",
        "key",
        "label",
        "opened_at",
        "relay_auth",
        "type_key",
        "webrtc_role",
    )

    def __init__(
        self,
        connection: Connection,
        ip: str,
        webrtc_role: str | None,
        session_id: int = 0,
        opened_at: float = 0.0,
    ) -> None:
        self.id = session_id  # unique within this process (directory entries)
        self.opened_at = opened_at  # clock seconds when the socket opened
        self.connection = connection
        self.ip = ip
        self.webrtc_role = webrtc_role
        self.actor: actr_pb2.ActrId | None = None
        self.key: ActorKey | None = None
        self.label = ""
        self.type_key = ""
        # Left None: see Sessions.bind. (Kept for callers that update it.)
        self.credential: actr_pb2.AIdCredential | None = None
        self.backlog: deque[signaling_pb2.SignalingEnvelope] | None = None
        self.closed = False
        # The last relay credential this socket presented that checked out:
        # (token, key id, realm id, claims, valid until); see MessageChecks.
        self.relay_auth: RelayAuth | None = None

    @property
    def answers(self) -> bool:
        return self.webrtc_role == "answer"


class Sessions:
    """Open sessions, the actor each one is bound to, and writing to them."""

    def __init__(self, clock: IReactorTime, metrics: SignalingMetrics) -> None:
        self._clock = clock
        self._metrics = metrics
        self._open: set[Session] = set()
        self._bound: dict[ActorKey, Session] = {}
        self._ids = itertools.count(1)

    def __len__(self) -> int:
        return len(self._open)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._open))

    def open(self, connection: Connection, ip: str, webrtc_role: str | None) -> Session:
        session = Session(
            connection, ip, webrtc_role, next(self._ids), self._clock.seconds()
        )
        self._open.add(session)
        self._metrics.connections_total += 1
        return session

    def close(self, session: Session) -> ActorKey | None:
        """Forget a closed socket; the key of the actor it was serving, if any."""
        self._open.discard(session)
        key = session.key
        if key is not None and self._bound.get(key) is session:
            del self._bound[key]
            return key
        return None

    def bound(self, key: ActorKey) -> Session | None:
        """The live session of an actor (by realm and serial), if any."""
        return self._bound.get(key)

    def is_bound(self, key: ActorKey) -> bool:
        return key in self._bound

    def exact(self, actr_id: actr_pb2.ActrId) -> Session | None:
        """The session bound to exactly this ActrId (type included), if any."""
        session = self._bound.get(m.actor_key(actr_id))
        if session is None or session.actor is None:
            return None
        return session if m.same_id(session.actor, actr_id) else None

    def bind(
        self,
        session: Session,
        actr_id: actr_pb2.ActrId,
        credential: actr_pb2.AIdCredential,
    ) -> None:
        """Make ``session`` the socket of ``actr_id`` (``credential`` was checked)."""
        key = m.actor_key(actr_id)
        session.actor = actr_pb2.ActrId()
        session.actor.CopyFrom(actr_id)
        session.key = key
        session.label = actr_id_repr(actr_id)
        session.type_key = type_key(actr_id.type)
        session.relay_auth = None
        # The credential itself is not kept: every message carries its own and
        # is checked on its own (a copy was ~220 bytes per actor, never read).
        self._bound[key] = session

    def detach(self, session: Session) -> None:
        """Unbind a session from its actor (it stays open)."""
        if session.key is not None and self._bound.get(session.key) is session:
            del self._bound[session.key]
        session.actor = None
        session.key = None
        session.label = ""
        session.type_key = ""
        session.credential = None
        session.relay_auth = None

    def send(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        flow: str | None = None,
    ) -> bool:
        """Write an envelope to a session; False (and nothing else) if it is gone.

        ``flow`` is the metrics label when the caller already knows it.
        """
        if session.closed:
            return False
        return self.send_encoded(
            session, m.encode(envelope), flow or m.flow_name(envelope)
        )

    def send_encoded(self, session: Session, data: bytes, flow: str) -> bool:
        """:meth:`send` of an envelope already encoded (from another node)."""
        if session.closed or not session.connection.send_bytes(data):
            return False
        self._metrics.messages_out[flow] += 1
        return True

    def reply_error(
        self,
        session: Session,
        envelope: signaling_pb2.SignalingEnvelope,
        target: actr_pb2.ActrId,
        code: int,
        message: str,
        reason: str,
    ) -> None:
        """Answer ``envelope`` with ``server_to_actr.error`` and count the refusal."""
        self._metrics.rejections[reason] += 1
        now = self._clock.seconds()
        self.send(
            session,
            m.error_to_actor(now, target, envelope.envelope_id, code, message),
            "error",
        )
