"""One PostgreSQL transaction far larger than a store batch, through node and hub processes, sent
after its commit or streamed while it runs: the node killed -9 inside it stores the rest once, in
order, and the hub holds it exactly once."""

from __future__ import annotations

import sqlite3
import time

import pytest
from test_exchange_e2e import AGENCY, assert_exactly_once, store_url, wait_caught_up

from exchange.contracts.events import RecordUpdated, make_mapper
from exchange.store import EventStore

ROWS = 30_000


def count_events(node) -> int:
    path = store_url(node).removeprefix("sqlite:///")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
            return conn.execute(f'SELECT count(*) FROM "events_{AGENCY}"').fetchone()[0]
    except sqlite3.OperationalError:  # not created yet
        return 0


def hub_events(hub) -> list:
    """The hub's events of the agency, in notification order."""
    store, mapper = EventStore(store_url(hub), create=False), make_mapper()
    try:
        recorder, events, after = store.recorder(AGENCY), [], 0
        while batch := recorder.read(after, 5000):
            events += map(mapper.to_domain_event, batch)
            after = batch[-1].id
        return events
    finally:
        store.close()


@pytest.mark.parametrize("work_mem", ["64MB", "64kB"], ids=["sent-at-commit", "streamed-while-it-runs"])
def test_a_huge_transaction_resumes_after_kill_9_with_nothing_lost_or_stored_twice(launch, postgres, work_mem):
    db = postgres.create_database("huge_source")
    postgres.execute(f"ALTER DATABASE {db} SET logical_decoding_work_mem = '{work_mem}'")
    postgres.execute("CREATE TABLE items (id integer PRIMARY KEY, n integer)", dbname=db)
    postgres.execute(f"INSERT INTO items SELECT g, 0 FROM generate_series(1, {ROWS}) g", dbname=db)
    hub = launch.hub()
    node = launch.node(hub.grpc_address, postgres.url(db), ["items"],
                       config={"source": {"batch_size": 500, "batch_bytes": 32 * 1024}})
    deadline = time.monotonic() + 300
    while count_events(node) < ROWS + 1:  # the schema and the snapshot
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.05)
    postgres.execute("UPDATE items SET n = n + 1", dbname=db)  # one transaction of ROWS changes
    while count_events(node) < ROWS + 1 + 3_000:
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.02)
    node.kill()  # kill -9 inside the transaction
    assert count_events(node) < 2 * ROWS + 1, "the node stored the whole transaction before it was killed"
    node = launch.restart(node)
    wait_caught_up(node, timeout=300)
    assert_exactly_once(node, hub)
    events = hub_events(hub)
    updates = [e for e in events if isinstance(e, RecordUpdated)]
    assert len(events) == 1 + 2 * ROWS and len(updates) == ROWS
    assert [e.key["id"] for e in updates] == list(range(1, ROWS + 1))  # in the transaction's order, once each
    assert all(e.originator_version == 2 for e in updates) and len({e.txid for e in updates}) == 1
    assert all(a.position < b.position for a, b in zip(updates, updates[1:]))
