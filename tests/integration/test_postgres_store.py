"""PostgreSQL event stores for node and hub, chosen by a postgresql:// store URL."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent, Tracking
from test_exchange_e2e import AGENCY, assert_exactly_once, assert_replay_equals, wait_caught_up

from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import EventStore, RecordState, StoreError, VersionGapError


def test_a_postgres_store_keeps_events_positions_and_states(postgres):
    store = EventStore(postgres.url(postgres.create_database("node_store")))
    try:
        recorder = store.node_recorder(AGENCY)
        record = uuid.uuid4()
        events = [StoredEvent(record, 1, "t", b"{}"), StoredEvent(record, 2, "t", b"{}")]
        recorder.insert_events(events, tracking=Tracking("source", 5), states={record.hex: RecordState(2, "h", True)})
        assert recorder.position("source") == 5
        assert recorder.record_states([record.hex]) == {record.hex: RecordState(2, "h", True)}
        assert [n.originator_version for n in recorder.read(0, 10)] == [1, 2]
        assert recorder.count_after(0) == 2
        assert store.agencies() == [AGENCY]
    finally:
        store.close()


def test_a_version_gap_is_refused_and_nothing_is_written(postgres):
    store = EventStore(postgres.url(postgres.create_database("hub_store")))
    try:
        recorder = store.recorder(AGENCY)
        record = uuid.uuid4()
        recorder.insert_events([StoredEvent(record, 1, "t", b"{}")], tracking=Tracking("node:x", 1))
        with pytest.raises(VersionGapError, match=f"record {record}: expected version 2, got 3"):
            recorder.insert_events([StoredEvent(uuid.uuid4(), 1, "t", b"{}"), StoredEvent(record, 3, "t", b"{}")],
                                   tracking=Tracking("node:x", 3))
        assert recorder.count_after(0) == 1
        assert recorder.position("node:x") == 1
    finally:
        store.close()


def insert_in_time(recorder, events, timeout: float = 300, **kwargs) -> None:
    """Insert ``events`` in a thread; fail (instead of hanging the suite) if it has not returned in ``timeout`` s."""
    failure: list[BaseException] = []

    def insert() -> None:
        try:
            recorder.insert_events(events, **kwargs)
        except BaseException as e:  # reported below
            failure.append(e)

    worker = threading.Thread(target=insert, daemon=True)
    worker.start()
    worker.join(timeout)
    assert not worker.is_alive(), f"storing {len(events)} events did not return: client and server wait on each other"
    if failure:
        raise failure[0]


def test_a_batch_of_wide_rows_is_stored_by_node_and_hub_stores(postgres):
    """500 events of 45 KB (a 22 MB transaction) and one of 20 MB: psycopg's pipeline mode hung on these."""
    store = EventStore(postgres.url(postgres.create_database("wide_store")))
    try:
        wide = [StoredEvent(uuid.uuid4(), 1, "t", b"w" * 45_000) for _ in range(500)]
        node = store.node_recorder(AGENCY)
        insert_in_time(node, wide, tracking=Tracking("source", 500),
                       states={e.originator_id.hex: RecordState(1, "h", True) for e in wide})
        assert node.count_after(0) == 500 and node.position("source") == 500
        hub = store.recorder("123100004250061179")
        huge = StoredEvent(uuid.uuid4(), 1, "t", b"b" * 20_000_000)
        insert_in_time(hub, [*wide, huge], tracking=Tracking("node:x", 501))
        assert hub.position("node:x") == 501
        assert hub.read(500, 1)[0].state == huge.state
    finally:
        store.close()


def test_an_unreachable_store_is_a_clear_error(free_port):
    with pytest.raises(StoreError, match="cannot open store"):
        EventStore(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing")


def test_node_and_hub_on_postgres_stores_deliver_exactly_once(launch, postgres, tmp_path):
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=40, legal_persons=20, licences=20)
    hub = launch.hub(config={"store": {"url": postgres.url(postgres.create_database("hub_e2e"))},
                             "audit": {"path": str(tmp_path / "audit.log")}})
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES,
                       config={"store": {"url": postgres.url(postgres.create_database("node_e2e"))}})
    agency.run(500)
    node.kill()
    node = launch.restart(node)
    agency.run(300)
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert_replay_equals(hub.config["store"]["url"], Path(agency.path), tmp_path, "from-postgres-hub")
