"""Tests for actrix.signaling.registry: the actor registry and the spec index."""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from actrix.core.actrid import new_actr_id, type_key
from actrix.proto import actr_pb2
from actrix.signaling.persistence import RegistryPersistence
from actrix.signaling.registry import (
    SPEC_TOUCH_STEP,
    ActorRegistry,
    SpecIndex,
    entry_key,
    spec_key,
)
from actrix.signaling.routing import RouteEntry
from actrix.signaling.store import SPEC_TTL, SpecRow

START = 1_700_000_000.0
TIMEOUT = 300.0


def entry(
    serial: int,
    name: str = "echo",
    realm_id: int = 7,
    heartbeat: float = START,
    online: bool = True,
) -> RouteEntry:
    actr_id = new_actr_id(realm_id, serial, "acme", name)
    return RouteEntry(
        actr_id=actr_id,
        type_key=type_key(actr_id.type),
        service_name=f"acme/{name}",
        service_spec=None,
        ws_address=None,
        last_heartbeat=heartbeat,
        online=online,
    )


def serials(entries: Iterable[RouteEntry]) -> list[int]:
    return [e.actr_id.serial_number for e in entries]


class ActorRegistryTests(SynchronousTestCase):
    def test_add_get_remove(self) -> None:
        """An added entry is found by (realm, serial) until removed."""
        registry = ActorRegistry()
        first = entry(1)
        registry.add(first)
        self.assertIs(registry.get((7, 1)), first)
        self.assertIsNone(registry.get((8, 1)))
        self.assertIs(registry.remove((7, 1)), first)
        self.assertIsNone(registry.get((7, 1)))
        self.assertIsNone(registry.remove((7, 1)))
        self.assertEqual(len(registry), 0)

    def test_add_replaces_same_actor(self) -> None:
        """Adding an actor again replaces its entry, also in the type index."""
        registry = ActorRegistry()
        registry.add(entry(1, "old"))
        registry.add(entry(1, "new"))
        self.assertEqual(len(registry), 1)
        self.assertEqual(registry.of_type(7, "acme", "old"), [])
        self.assertEqual(serials(registry.of_type(7, "acme", "new")), [1])

    def test_iteration_follows_insertion_order(self) -> None:
        """Registry order is insertion order, and iterating tolerates removal."""
        registry = ActorRegistry()
        for serial in (5, 2, 9):
            registry.add(entry(serial))
        order = []
        for item in registry:
            order.append(item.actr_id.serial_number)
            registry.remove(entry_key(item))
        self.assertEqual(order, [5, 2, 9])

    def test_of_type_filters_realm_manufacturer_and_name(self) -> None:
        """of_type returns only entries of that realm and type name."""
        registry = ActorRegistry()
        registry.add(entry(1, "echo"))
        registry.add(entry(2, "echo", realm_id=8))
        registry.add(entry(3, "other"))
        registry.add(entry(4, "echo"))
        self.assertEqual(serials(registry.of_type(7, "acme", "echo")), [1, 4])
        self.assertEqual(serials(registry.of_type(8, "acme", "echo")), [2])
        self.assertEqual(registry.of_type(7, "other-maker", "echo"), [])

    def test_in_realm(self) -> None:
        """in_realm yields the entries of one realm only."""
        registry = ActorRegistry()
        registry.add(entry(1))
        registry.add(entry(2, realm_id=8))
        self.assertEqual(serials(registry.in_realm(8)), [2])

    def test_expiry_follows_the_clock(self) -> None:
        """Entries silent for more than the timeout are expired; others are not."""
        clock = Clock()
        clock.advance(START)
        registry = ActorRegistry()
        registry.add(entry(1, heartbeat=clock.seconds()))
        clock.advance(100)
        registry.add(entry(2, heartbeat=clock.seconds()))
        clock.advance(TIMEOUT - 100)
        # Exactly the timeout is not yet expired (strictly more than 300 s).
        self.assertEqual(registry.expired(clock.seconds(), TIMEOUT), [])
        clock.advance(1)
        self.assertEqual(serials(registry.expired(clock.seconds(), TIMEOUT)), [1])
        alive = registry.get((7, 2))
        assert alive is not None
        registry.add(attrs.evolve(alive, last_heartbeat=clock.seconds()))
        clock.advance(TIMEOUT)
        self.assertEqual(serials(registry.expired(clock.seconds(), TIMEOUT)), [1])
        # Reporting does not remove: the caller decides.
        self.assertEqual(len(registry), 2)

    def test_online_by_realm_counts_online_entries(self) -> None:
        """Offline entries are not counted as registered actors online."""
        registry = ActorRegistry()
        registry.add(entry(1))
        registry.add(entry(2, online=False))
        registry.add(entry(3, realm_id=8))
        self.assertEqual(registry.online_by_realm(), {7: 1, 8: 1})


def actr_type(version: str | None = None) -> actr_pb2.ActrType:
    t = actr_pb2.ActrType(manufacturer="acme", name="echo")
    if version is not None:
        t.version = version
    return t


def spec(fingerprint: str = "fp-1") -> actr_pb2.ServiceSpec:
    return actr_pb2.ServiceSpec(name="echo", fingerprint=fingerprint)


class SpecIndexTests(SynchronousTestCase):
    def test_spec_key_normalizes_version(self) -> None:
        """Versions are trimmed; blank and absent versions share the "" key."""
        self.assertEqual(
            spec_key(actr_type(" 1.0 "), "fp"), ("acme", "echo", "1.0", "fp")
        )
        self.assertEqual(spec_key(actr_type("  "), "fp"), spec_key(actr_type(), "fp"))
        self.assertEqual(spec_key(actr_type(), "fp")[2], "")

    def test_put_then_lookup(self) -> None:
        """A registered spec is found by type and fingerprint, not by another fp."""
        index = SpecIndex()
        row = index.put(actr_type("1.0"), spec(), START)
        self.assertEqual(row.key, ("acme", "echo", "1.0", "fp-1"))
        self.assertEqual(row.expires_at, int(START) + SPEC_TTL)
        self.assertEqual(actr_pb2.ServiceSpec.FromString(row.spec), spec())
        found, renewed = index.lookup(actr_type(" 1.0"), "fp-1", START)
        self.assertEqual(found, spec())
        self.assertIsNone(renewed)
        self.assertEqual(index.lookup(actr_type("1.0"), "fp-2", START), (None, None))
        self.assertEqual(index.lookup(actr_type("2.0"), "fp-1", START), (None, None))

    def test_lookup_extends_ttl_in_steps(self) -> None:
        """A lookup renews the TTL only once it moves by at least the step."""
        clock = Clock()
        clock.advance(START)
        index = SpecIndex()
        index.put(actr_type(), spec(), clock.seconds())
        clock.advance(SPEC_TOUCH_STEP - 1)
        self.assertIsNone(index.lookup(actr_type(), "fp-1", clock.seconds())[1])
        clock.advance(1)
        _, renewed = index.lookup(actr_type(), "fp-1", clock.seconds())
        self.assertEqual(renewed, int(clock.seconds()) + SPEC_TTL)
        # The renewed expiry is what the next step is measured from.
        clock.advance(SPEC_TOUCH_STEP - 1)
        self.assertIsNone(index.lookup(actr_type(), "fp-1", clock.seconds())[1])

    def test_expired_spec_is_dropped_on_lookup(self) -> None:
        """A spec past its expiry is not returned and leaves the index."""
        index = SpecIndex()
        index.put(actr_type(), spec(), START)
        later = START + SPEC_TTL
        self.assertEqual(index.lookup(actr_type(), "fp-1", later), (None, None))
        self.assertEqual(len(index), 0)

    def test_sweep_and_load(self) -> None:
        """Loaded rows are indexed; the sweep drops those that expired."""
        index = SpecIndex()
        index.load(
            [
                SpecRow(
                    ("acme", "echo", "", "old"), spec("old").SerializeToString(), 10
                ),
                SpecRow(
                    ("acme", "echo", "", "new"), spec("new").SerializeToString(), 99
                ),
            ]
        )
        self.assertEqual(len(index), 2)
        self.assertEqual(index.sweep(50), 1)
        self.assertEqual(index.lookup(actr_type(), "new", 50)[0], spec("new"))
        self.assertEqual(index.lookup(actr_type(), "old", 5), (None, None))

    def test_trim_drops_least_recently_stored_beyond_count(self) -> None:
        """Beyond the entry bound the oldest stored (not renewed) specs go first."""
        index = SpecIndex(max_entries=2)
        for fp in ("a", "b", "c"):
            index.put(actr_type(), spec(fp), START)
        index.lookup(actr_type(), "b", START + SPEC_TOUCH_STEP)  # renewed: recent
        index.put(actr_type(), spec("d"), START + SPEC_TOUCH_STEP)
        dropped = index.trim()
        self.assertEqual([key[3] for key in dropped], ["a", "c"])
        self.assertEqual(len(index), 2)
        self.assertEqual(index.lookup(actr_type(), "b", START)[0], spec("b"))

    def test_trim_bounds_total_size(self) -> None:
        """Specs beyond the byte bound are dropped, oldest first."""
        size = len(spec("a").SerializeToString())
        index = SpecIndex(max_bytes=2 * size)
        for fp in ("a", "b", "c"):
            index.put(actr_type(), spec(fp), START)
        self.assertEqual([key[3] for key in index.trim()], ["a"])
        self.assertEqual(index.trim(), [])

    def test_trimmed_spec_is_deleted_from_the_store(self) -> None:
        """Saving a spec past the bound queues the dropped spec's row for deletion."""
        clock = Clock()
        clock.advance(START)
        index = SpecIndex(max_entries=1)
        persistence = RegistryPersistence(clock, None, ActorRegistry(), index)
        persistence.save_spec(actr_type(), spec("a"), START)
        persistence.save_spec(actr_type(), spec("b"), START)
        pending = persistence.pending
        self.assertEqual([key[3] for key in pending.specs], ["b"])
        self.assertEqual([key[3] for key in pending.spec_deletes], ["a"])
