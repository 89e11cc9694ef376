"""What ``/health`` and ``/metrics`` say about this node's place in a cluster.

Built by ``tap.py`` when ``[redis]`` is configured. Everything here is read
from memory: Redis reachability from the client's last check, the live nodes
and their actor counts from the directory's last beat (once a second), bus
counters from the bus. Nothing on these endpoints waits for Redis.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from actrix.core.redis_bus import RedisBus
from actrix.core.redis_client import RedisClient
from actrix.core.redis_directory import RedisDirectory
from actrix.core.sibling_bus import SiblingBus


class ClusterStatus:
    """``cluster`` in ``/health``; ``actrix_cluster_*`` and ``actrix_redis_*``."""

    def __init__(
        self,
        client: RedisClient,
        directory: RedisDirectory,
        bus: RedisBus,
        name: str,
        siblings: SiblingBus | None = None,
    ) -> None:
        self._client = client
        self._directory = directory
        self._bus = bus
        self._name = name
        self._siblings = siblings

    def redis_up(self) -> bool:
        return self._client.up

    def health(self) -> dict[str, Any]:
        nodes = self._directory.nodes
        return {
            "node_id": self._directory.node_id,
            "name": self._name,
            "redis": "up" if self._client.up else "unreachable",
            "nodes": sorted(nodes),
            "actors": {
                "local": self._directory.local_count(),
                "remote": self._remote_actors(),
            },
        }

    def _remote_actors(self) -> int:
        me = self._directory.node_id
        return sum(n for node, n in self._directory.nodes.items() if node != me)

    def collect(self) -> Iterator[Metric]:
        nodes = GaugeMetricFamily(
            "actrix_cluster_nodes", "Live nodes (processes) sharing the directory"
        )
        nodes.add_metric([], len(self._directory.nodes))
        yield nodes
        actors = GaugeMetricFamily(
            "actrix_cluster_actors",
            "Registered actors whose socket is on this node or on others",
            labels=["where"],
        )
        actors.add_metric(["local"], self._directory.local_count())
        actors.add_metric(["remote"], self._remote_actors())
        yield actors
        bus = CounterMetricFamily(
            "actrix_cluster_bus_messages",
            "Cross-node deliveries: published and heard, published to no"
            " listener, received here",
            labels=["direction"],
        )
        bus.add_metric(["sent"], self._bus.sent)
        bus.add_metric(["unheard"], self._bus.unheard)
        bus.add_metric(["received"], self._bus.received_count)
        yield bus
        siblings = self._siblings
        if siblings is not None:
            direct = CounterMetricFamily(
                "actrix_cluster_sibling_messages",
                "Deliveries between workers of this supervisor over their own"
                " links (not Redis): written, read, dropped for a full link",
                labels=["direction"],
            )
            direct.add_metric(["sent"], siblings.sent)
            direct.add_metric(["received"], siblings.received_count)
            direct.add_metric(["dropped"], siblings.dropped)
            yield direct
            links = GaugeMetricFamily(
                "actrix_cluster_sibling_links", "Open links to sibling workers"
            )
            links.add_metric([], siblings.links)
            yield links
        yield from self._client.collect()
