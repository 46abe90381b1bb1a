"""Hub processes on one PostgreSQL store wake each other's subscribers when they store a batch."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from test_sharing import PROVIDER
from test_sharing_stream import Hub

from exchange.contracts.events import make_mapper
from exchange.store import EventStore
from hub.ingest import Ingest


def publisher(store: EventStore) -> Hub:
    """Hub's publishing helpers over ``store``."""
    hub = Hub.__new__(Hub)
    hub.store, hub.ingest, hub.mapper, hub.versions, hub.node_position = store, Ingest(store), make_mapper(), {}, 0
    return hub


def test_a_batch_stored_through_one_hub_wakes_a_subscriber_waiting_on_another(postgres):
    url = postgres.url(postgres.create_database("hub_stored_signal"))
    first, second = EventStore(url), EventStore(url)
    hub = publisher(first)
    hub.publish(hub.schema("licences"))  # the log exists; the other hub reads it
    other = Ingest(second)
    listener = second.listen_stored(other.stored_elsewhere)
    try:
        assert listener.listening.wait(30), "the listener did not start"
        after = other.hub_position(PROVIDER)
        with ThreadPoolExecutor(1) as pool:
            woken = pool.submit(other.wait, PROVIDER, after, 120)  # its subscribers poll far less often
            hub.publish(*hub.rows("licences", [1]))
            assert woken.result(), "the waiting subscriber was not woken by the stored batch"
        assert [n.id for n in other.read(PROVIDER, after, 10)] == [hub.ingest.hub_position(PROVIDER)]
    finally:
        listener.close()
        first.close()
        second.close()


def test_a_sqlite_store_has_no_listener(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        assert store.listen_stored(lambda name, last: None) is None
    finally:
        store.close()
