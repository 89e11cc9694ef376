"""The collaborators every signaling flow shares.

:class:`~actrix.signaling.service.SignalingService` builds one
:class:`FlowContext` and hands it to each flow (:mod:`.registration`,
:mod:`.directory`, :mod:`.relay`); a flow's own extras (validator, AIS client,
compatibility cache, message checks) stay explicit constructor arguments.
"""

from __future__ import annotations

import attrs
from twisted.internet.interfaces import IReactorTime

from actrix.core.bus import Bus
from actrix.core.directory import ActorDirectory
from actrix.core.interfaces import RealmDirectory
from actrix.signaling.metrics import SignalingMetrics
from actrix.signaling.presence import PresenceEvents
from actrix.signaling.sessions import Sessions


@attrs.frozen
class FlowContext:
    """Clock, realms, actor directory, bus, sessions, presence events and metrics."""

    clock: IReactorTime
    realms: RealmDirectory
    directory: ActorDirectory
    bus: Bus
    sessions: Sessions
    presence: PresenceEvents
    metrics: SignalingMetrics
    heartbeat_timeout: float
