"""The hub's batch insert on PostgreSQL (one COPY per batch): ids, order, positions, concurrent publishers,
sealed states, byte parts and lost connections."""

from __future__ import annotations

import threading
import uuid

import pytest
from eventsourcing.persistence import StoredEvent, Tracking

from exchange.store import EventStore, PositionMoved, VersionGapError
from exchange.store.at_rest import MARK, StateCipher
from hub.ingest import TRACKING_PREFIX, ConcurrentPublish, Ingest, NotHeld
from protos.exchange.v1 import exchange_pb2 as pb

AGENCY = "91310000MA00000019"
POSITION = TRACKING_PREFIX + AGENCY
# Every byte value, and what a text COPY or a composite literal would have to escape.
AWKWARD = bytes(range(256)) + b'\\N\t\n\r,"(){}\\\\' + "中文".encode()


def wire(first: int, count: int, records: int, state: bytes = b"{}", base: int = 0, node: str = "") -> list[pb.Event]:
    """Events with node ids ``first``..: ``records`` records (of ``node``), each at the next version in turn
    (``base`` versions already stored)."""
    ids = [uuid.uuid5(uuid.NAMESPACE_OID, f"{node}r{i}") for i in range(records)]
    return [pb.Event(notification_id=n, originator_id=str(ids[(n - 1) % records]),
                     originator_version=base + (n - first) // records + 1, topic="exchange.record:Updated",
                     state=state + str(n).encode()) for n in range(first, first + count)]


def test_a_big_batch_is_stored_in_its_order_under_the_ids_returned(postgres):
    store = EventStore(postgres.url(postgres.create_database("ingest_ids")))
    try:
        recorder = store.recorder(AGENCY)
        recorder.advance_notification_ids(10_000)  # ids come from the table's sequence, wherever it stands
        events = [StoredEvent(uuid.uuid5(uuid.NAMESPACE_OID, f"r{i % 700}"), i // 700 + 1, "t", AWKWARD + b"%d" % i)
                  for i in range(5000)]
        ids = recorder.insert_events(events, tracking=Tracking(POSITION, 5000))
        stored = recorder.read(0, 10_000)
        assert list(ids) == [n.id for n in stored]
        assert ids[0] > 10_000 and all(a < b for a, b in zip(ids, ids[1:]))
        assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in stored] == \
            [(e.originator_id, e.originator_version, e.topic, e.state) for e in events]
        more = recorder.insert_events([StoredEvent(events[0].originator_id, 9, "t", b"{}")],
                                      tracking=Tracking(POSITION, 5001))
        assert more[0] > ids[-1] and recorder.position(POSITION) == 5001
    finally:
        store.close()


def test_a_version_gap_anywhere_in_a_big_batch_writes_nothing(postgres):
    store = EventStore(postgres.url(postgres.create_database("ingest_gap")))
    try:
        ingest = Ingest(store)
        ingest.ingest(AGENCY, pb.EventBatch(after=0, events=wire(1, 3000, 500)))
        gap = wire(3001, 3000, 500, base=6)
        gap[2500].originator_version += 1
        with pytest.raises(VersionGapError):
            ingest.ingest(AGENCY, pb.EventBatch(after=3000, events=gap))
        assert ingest.position(AGENCY) == 3000 and ingest.recorder(AGENCY).count_after(0) == 3000
    finally:
        store.close()


def test_a_publisher_holding_a_moved_position_is_refused_and_nothing_is_written(postgres):
    url = postgres.url(postgres.create_database("ingest_moved"))
    first, second = EventStore(url), EventStore(url)  # two hubs on one store
    try:
        Ingest(first).ingest(AGENCY, pb.EventBatch(after=0, events=wire(1, 100, 10)))
        other = Ingest(second).recorder(AGENCY)
        stale = [StoredEvent(uuid.uuid4(), 1, "t", b"{}") for _ in range(50)]
        with pytest.raises(PositionMoved):
            other.insert_events(stale, tracking=Tracking(POSITION, 50), expected_position=0)
        assert other.count_after(0) == 100 and other.position(POSITION) == 100
    finally:
        first.close()
        second.close()


def test_publishers_racing_through_two_hubs_store_one_batch_once(postgres):
    url = postgres.url(postgres.create_database("ingest_race"))
    stores = [EventStore(url), EventStore(url)]
    try:
        hubs = [Ingest(s) for s in stores]
        for hub in hubs:
            hub.recorder(AGENCY)
        batches = [pb.EventBatch(after=0, events=wire(1, 2000, 100, node=f"node {k}")) for k in range(2)]
        outcomes: list[object] = [None, None]
        start = threading.Barrier(2)

        def publish(k: int) -> None:
            start.wait()
            try:
                outcomes[k] = hubs[k].ingest(AGENCY, batches[k])
            except (ConcurrentPublish, NotHeld) as e:
                outcomes[k] = e

        threads = [threading.Thread(target=publish, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [k for k in range(2) if outcomes[k] == (2000, 2000)]
        assert len(won) == 1, outcomes
        assert isinstance(outcomes[1 - won[0]], (ConcurrentPublish, NotHeld)), outcomes
        stored = hubs[0].read(AGENCY, 0, 5000)
        assert [str(n.originator_id) for n in stored] == [e.originator_id for e in batches[won[0]].events]
        assert hubs[1].position(AGENCY) == 2000
    finally:
        for s in stores:
            s.close()


def test_a_sealed_store_holds_ciphertext_and_reads_back_every_byte(postgres):
    url = postgres.url(postgres.create_database("ingest_sealed"))
    store = EventStore(url, cipher=StateCipher(b"k" * 32))
    try:
        ingest = Ingest(store)
        events = wire(1, 1500, 300, state=AWKWARD)
        ingest.ingest(AGENCY, pb.EventBatch(after=0, events=events))
        assert [n.state for n in ingest.read(AGENCY, 0, 2000)] == [e.state for e in events]
        raw = postgres.execute(f'SELECT state FROM "events_{AGENCY}" ORDER BY notification_id', dbname="ingest_sealed")
        assert len(raw) == 1500 and all(bytes(r[0]).startswith(MARK) and AWKWARD not in bytes(r[0]) for r in raw)
    finally:
        store.close()


def test_a_batch_cut_into_byte_parts_stores_every_part_with_its_position(postgres):
    store = EventStore(postgres.url(postgres.create_database("ingest_parts")))
    try:
        ingest = Ingest(store, batch_bytes=20_000)
        events = wire(1, 200, 40, state=b"x" * 1000)
        assert ingest.ingest(AGENCY, pb.EventBatch(after=0, events=events)) == (200, 200)
        stored = ingest.read(AGENCY, 0, 500)
        assert [n.state for n in stored] == [e.state for e in events]
        assert all(a.id < b.id for a, b in zip(stored, stored[1:]))
        assert ingest.position(AGENCY) == 200
    finally:
        store.close()


def test_a_batch_is_stored_once_after_the_server_dropped_the_store_connections(postgres):
    db = postgres.create_database("ingest_reconnect")
    store = EventStore(postgres.url(db))
    try:
        ingest = Ingest(store)
        ingest.ingest(AGENCY, pb.EventBatch(after=0, events=wire(1, 100, 10)))
        postgres.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                         "AND pid <> pg_backend_pid()", (db,))
        assert ingest.ingest(AGENCY, pb.EventBatch(after=100, events=wire(101, 100, 10, base=10))) == (200, 100)
        assert ingest.recorder(AGENCY).count_after(0) == 200
    finally:
        store.close()
