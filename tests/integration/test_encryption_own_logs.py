"""Encryption at rest of every log of a store: agency logs read by any path, the catalog's log and the
sharing ledger's logs; plaintext own logs left by earlier releases are sealed once, when opened."""

from __future__ import annotations

import json
import logging
import uuid

import pytest
from eventsourcing.persistence import StoredEvent
from test_catalog import AGENCY, OTHER, entry, publish, store_url  # noqa: F401 (store_url: a fixture, SQLite and PostgreSQL)

from exchange.store import StoreError, open_store
from exchange.store.at_rest import MARK, CipherError, StateCipher
from hub.catalog.catalog import Catalog
from hub.sharing.ledger import Entitlement, SharingLedger
from hub.workdays import WorkingCalendar

MARKER = "独有加密测试十十十号"  # must never lie in plaintext in an encrypted store
KEY = StateCipher(bytes(range(32)))


def raw_states(url: str, table: str) -> list[bytes]:
    """The states of ``table`` as stored, without the store's cipher."""
    store = open_store(url)
    try:
        with store.datastore.transaction(commit=False) as c:
            c.execute(f'SELECT state FROM "{table}"')
            return [bytes(row["state"]) for row in c.fetchall()]
    finally:
        store.close()


def assert_sealed(url: str, table: str) -> None:
    states = raw_states(url, table)
    assert states and all(s.startswith(MARK) and MARKER.encode() not in s for s in states), table


def test_every_read_path_of_an_agency_log_sees_plaintext(store_url):
    store = open_store(store_url, cipher=KEY)
    try:
        recorder = store.recorder(AGENCY)
        oid = uuid.uuid4()
        recorder.insert_events([StoredEvent(oid, 1, "exchange.record:Created", json.dumps({"a": MARKER}).encode())])
        [by_record] = recorder.select_events(oid)
        [by_topic] = recorder.select_notifications(1, 10, topics=("exchange.record:Created",))
        [read] = recorder.read(0, 10)
        assert {json.loads(e.state)["a"] for e in (by_record, by_topic, read)} == {MARKER}
    finally:
        store.close()
    assert_sealed(store_url, f"events_{AGENCY}")


def test_the_catalog_and_the_sharing_ledger_write_only_ciphertext(store_url):
    catalog = Catalog(store_url, WorkingCalendar(), cipher=KEY)
    store = open_store(store_url, cipher=KEY)
    try:
        publish(catalog, entry(summary=MARKER))
        assert [type(e).__name__ for e in catalog.history("101001/0001")][:2] == ["Edited", "Submitted"]
        ledger = SharingLedger(store, catalog, WorkingCalendar())
        ledger.request(OTHER, AGENCY, "persons", scope="all", purpose=MARKER, items=["name"])
        ledger.record_delivery(Entitlement(OTHER, AGENCY, "persons", frozenset({"name"}), MARKER, "request"),
                               purpose=MARKER, events=1, after=0, reached=1, mode="stream")
        again = SharingLedger(store, catalog, WorkingCalendar())
        assert [r.purpose for r in again.requests.values()] == [MARKER]
        assert [d["purpose"] for d in again.deliveries()] == [MARKER]
    finally:
        catalog.close()
        store.close()
    for table in ("catalog_events", "sharing_requests", "sharing_deliveries"):
        assert_sealed(store_url, table)
    reopened = Catalog(store_url, WorkingCalendar(), cipher=KEY)
    assert reopened.get("101001/0001").content["summary"] == MARKER
    reopened.close()
    with pytest.raises(CipherError, match="the store is encrypted"):
        Catalog(store_url, WorkingCalendar())


def test_a_plaintext_catalog_log_of_an_encrypted_store_is_sealed_once_when_opened(store_url, caplog):
    store = open_store(store_url, cipher=KEY)
    store.recorder(AGENCY).insert_events([StoredEvent(uuid.uuid4(), 1, "exchange.record:Created", b"{}")])
    store.close()
    earlier = Catalog(store_url, WorkingCalendar())  # as releases that did not seal the catalog's log wrote it
    earlier.edit(AGENCY, entry(summary=MARKER))
    earlier.close()
    assert all(MARKER.encode() in s for s in raw_states(store_url, "catalog_events"))

    with caplog.at_level(logging.WARNING, logger="exchange.store"):
        catalog = Catalog(store_url, WorkingCalendar(), cipher=KEY)
    assert "sealed 1 events of log catalog_events" in caplog.text
    assert catalog.get("101001/0001").content["summary"] == MARKER
    catalog.edit(AGENCY, entry(summary=MARKER, name="Renamed"))
    catalog.close()
    assert_sealed(store_url, "catalog_events")

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="exchange.store"):
        Catalog(store_url, WorkingCalendar(), cipher=KEY).close()
    assert "sealed" not in caplog.text


def test_a_plaintext_store_given_a_key_is_refused_and_left_as_it_was(store_url):
    store = open_store(store_url)
    store.recorder(AGENCY).insert_events([StoredEvent(uuid.uuid4(), 1, "exchange.record:Created", b"{}")])
    store.close()
    plain = Catalog(store_url, WorkingCalendar())
    plain.edit(AGENCY, entry(summary=MARKER))
    plain.close()

    with pytest.raises(CipherError, match="written without encryption"):
        Catalog(store_url, WorkingCalendar(), cipher=KEY)
    assert all(MARKER.encode() in s for s in raw_states(store_url, "catalog_events"))
    plain = Catalog(store_url, WorkingCalendar())
    assert plain.get("101001/0001").content["summary"] == MARKER
    plain.close()


@pytest.mark.parametrize("name", ["events_x", "Catalog", "catalog-events", ""])
def test_an_own_log_name_that_could_clash_is_refused(tmp_path, name):
    store = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    with pytest.raises(StoreError, match=f"invalid log name {name!r}"):
        store.log(name)
    store.close()
