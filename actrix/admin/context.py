"""What every admin route may use: the collaborators ``tap.py`` hands the API.

:class:`AdminContext` is a plain bundle; the services that do not run in this
process are ``None`` and their lists come back empty (their details 404).
:class:`Caller` is who made a request, :class:`AdminMetrics` what the admin API
counts for ``/metrics`` and the time series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import attrs
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actrix.admin.series import SeriesSampler
from actrix.admin.sessions import LoginLimiter, Sessions
from actrix.admin.store import AdminStore
from actrix.core.settings import Settings
from actrix.core.storage import Database

if TYPE_CHECKING:
    from actrix.admin.ports import RoomControl, SignalingControl, TurnControl
    from actrix.core.directory import ActorDirectory


@attrs.define(eq=False)
class AdminMetrics:
    """``actrix_admin_*``: logins that failed, sessions open."""

    login_failures: int = 0
    sessions: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "actrix_admin_login_failures",
            "Admin logins and bearer tokens refused",
            value=self.login_failures,
        )
        yield GaugeMetricFamily(
            "actrix_admin_sessions", "Console sessions open", value=self.sessions()
        )


@attrs.frozen
class Caller:
    """Who is calling: the token's name, its rights, how it authenticated."""

    name: str
    token_id: int
    read_only: bool
    remote: str
    cookie: str | None = None  # the session cookie value, for logout


@attrs.define
class AdminContext:
    """The admin API's collaborators (see the module docstring)."""

    settings: Settings
    clock: Any  # IReactorTime
    store: AdminStore
    realm_db: Database
    realms: Any  # RealmCache: ``await realms.load()`` after each write
    sessions: Sessions
    limiter: LoginLimiter
    sampler: SeriesSampler
    metrics: AdminMetrics = attrs.Factory(AdminMetrics)
    directory: ActorDirectory | None = None
    signaling: SignalingControl | None = None
    rooms: RoomControl | None = None
    turn: TurnControl | None = None
    draining: Callable[[], bool] = lambda: False
    reload_hook: Callable[[], None] = lambda: None
    started_at: float = 0.0
