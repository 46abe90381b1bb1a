"""The consumer replica's bookkeeping (items, withdrawal, checkpoints) and the ledger on both store kinds."""

from __future__ import annotations

import uuid

import pytest
from support.records import record_event
from test_sharing import CONSUMER, PROVIDER, DictTerms, terms

import adapters
from consumer.replica import Replica
from exchange.contracts.events import RecordCreated, RecordUpdated, SchemaChanged
from exchange.store import EventStore
from hub.catalog.terms import CONDITIONAL
from hub.sharing.ledger import SharingLedger
from hub.workdays import WorkingCalendar


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path):
    """A fresh database URL of each kind (for a replica or a hub store)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url(postgres.create_database(f"sharing_{uuid.uuid4().hex[:12]}"))


def _event(kind, key, version, **fields):
    return record_event(kind, PROVIDER, key, version, **fields)


def _rows(url):
    reader = adapters.open_reader(url)
    try:
        return {t: list(reader.rows(t)) for t in reader.tables()}
    finally:
        reader.close()


def test_a_replica_applies_batches_with_their_checkpoint_and_withdraws_a_resource_whole(database):
    schema = {"name": "licences", "primary_key": ["id"],
              "columns": [{"name": "id", "type": "INTEGER", "notnull": True, "default": None},
                          {"name": "kind", "type": "TEXT", "notnull": False, "default": None}]}
    replica = Replica(database)
    try:
        assert (replica.position(PROVIDER, "licences"), replica.items(PROVIDER, "licences")) == (0, None)
        replica.set_items(PROVIDER, "licences", ["kind"])
        events = [(3, _event(SchemaChanged, "__schema__", 1, table=schema)),
                  (5, _event(RecordCreated, 1, 1, row={"id": 1, "kind": "food"})),
                  (8, _event(RecordCreated, 2, 1, row={"id": 2, "kind": "drugs"}))]
        assert replica.apply(PROVIDER, "licences", events, 0, 10) == 3
        assert replica.apply(PROVIDER, "licences", [(12, _event(RecordUpdated, 1, 2, changed={"kind": "bread"}))],
                             10, 15) == 1
        assert replica.position(PROVIDER, "licences") == 15  # the position reached, beyond the last event
        assert _rows(database) == {"licences": [{"id": 1, "kind": "bread"}, {"id": 2, "kind": "drugs"}]}
        replica.withdraw(PROVIDER, "licences")
        assert (replica.position(PROVIDER, "licences"), replica.items(PROVIDER, "licences")) == (0, None)
        assert _rows(database) == {}
    finally:
        replica.close()


def test_the_ledger_keeps_its_state_in_either_store(database):
    store = EventStore(database)
    try:
        catalog = DictTerms(terms("licences", CONDITIONAL))
        ledger = SharingLedger(store, catalog, WorkingCalendar())
        request = ledger.request(CONSUMER, PROVIDER, "licences", scope="all", purpose="permits", items=["name"])
        ledger.approve(str(request.id), PROVIDER)
        ledger.record_delivery(ledger.entitlement(CONSUMER, PROVIDER, "licences"), purpose="permits", events=3,
                               after=0, reached=9, mode="stream")
        again = SharingLedger(store, catalog, WorkingCalendar())
        assert again.entitlement(CONSUMER, PROVIDER, "licences").items == {"name"}
        assert [d["events"] for d in again.deliveries(CONSUMER)] == [3]
        assert store.agencies() == []  # sharing logs are not agency logs
    finally:
        store.close()


def test_the_consumer_recopies_a_resource_whose_items_change_and_withdraws_it_when_revoked(tmp_path, free_port):
    import sqlite3
    import threading
    import time

    from test_sharing_stream import Hub, approve

    from consumer.subscriber import Subscription, Wanted
    from exchange.common.config import from_values
    from node import config

    hub = Hub(tmp_path, port := free_port())
    hub.publish(hub.schema("licences"), *hub.rows("licences", [1, 2, 3]))
    replica_path = tmp_path / "replica.db"
    cfg = from_values(config.CONSUMER_SETTINGS, {
        "agency": CONSUMER, "hub.address": f"127.0.0.1:{port}", "hub.reconnect_max": 0.2, "hub.insecure": True,
        "consumer.replica": f"sqlite:///{replica_path}", "consumer.resources": [f"{PROVIDER}/licences"],
        "consumer.purpose": "permits"})
    stopping = threading.Event()
    subscription = Subscription(cfg, Wanted(PROVIDER, "licences"), stopping)
    worker = threading.Thread(target=subscription.run)
    worker.start()

    def columns_and_rows():
        if not replica_path.exists():
            return None
        with sqlite3.connect(replica_path) as db:
            columns = [r[1] for r in db.execute("PRAGMA table_info(licences)")]
            return (columns, db.execute("SELECT * FROM licences ORDER BY id").fetchall()) if columns else None

    def wait_for(expected):
        deadline = time.monotonic() + 30
        while columns_and_rows() != expected:
            assert time.monotonic() < deadline, columns_and_rows()
            time.sleep(0.05)

    try:
        first = approve(hub, items=("name",))
        wait_for((["id", "name"], [("1", "n1"), ("2", "n2"), ("3", "n3")]))
        second = approve(hub, items=("born",))  # the items grow: the resource is copied anew with them
        hub.publish(*hub.rows("licences", [4]))
        wait_for((["id", "name", "born"], [(str(k), f"n{k}", "1990") for k in (1, 2, 3, 4)]))
        hub.ledger.revoke(str(first.id), PROVIDER, reason="done")
        hub.ledger.revoke(str(second.id), PROVIDER, reason="done")
        wait_for(None)  # withdrawn from the replica
    finally:
        stopping.set()
        subscription.stop()
        worker.join(10)
        hub.close()
