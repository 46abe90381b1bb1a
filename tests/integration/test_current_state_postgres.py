"""The hub's current-state table (lookup, browse, row scope) on a PostgreSQL hub store."""

from __future__ import annotations

from test_lookup import populate, source_rows, table
from test_sharing import PROVIDER
from test_sharing_stream import Hub

from exchange.contracts.events import make_mapper
from exchange.store import EventStore
from hub.ingest import Ingest
from hub.sharing.current import CurrentState, Follower, key_text


def test_the_current_state_on_postgres_is_folded_once_paged_and_rebuilt(postgres):
    store = EventStore(postgres.url(postgres.create_database("hub_current")))
    try:
        hub = Hub.__new__(Hub)  # its publishing helpers over this store
        hub.store, hub.ingest, hub.mapper, hub.versions, hub.node_position = store, Ingest(store), make_mapper(), {}, 0
        populate(hub)
        current = CurrentState(store)
        CurrentState(store)  # opening it again keeps what is there
        follower = Follower(current, hub.ingest, batch=4)
        assert follower.catch_up() == hub.ingest.hub_position(PROVIDER)
        assert table(current) == source_rows(hub)
        assert current.advance(PROVIDER, hub.ingest.read(PROVIDER, 0, 100)) == hub.ingest.hub_position(PROVIDER)
        assert table(current) == source_rows(hub)
        first = current.scan(PROVIDER, "licences", "", 3)
        rest = current.scan(PROVIDER, "licences", first[-1][0], 100)
        assert [k for k, *_ in first + rest] == sorted(key_text({"id": k}) for k in source_rows(hub))
        assert current.get(PROVIDER, "licences", key_text({"id": 3}))[2]["name"] == "renamed"
        current.rebuild()
        assert table(current) == {} and current.position(PROVIDER) == 0
        follower.catch_up()
        assert table(current) == source_rows(hub)
    finally:
        store.close()


def test_hubs_opening_a_fresh_store_together_all_open_it(postgres):
    """Hub processes starting at the same moment on one new PostgreSQL store each create the
    current-state tables if missing; none fails because another created them meanwhile."""
    import threading

    for attempt in range(3):
        url = postgres.url(postgres.create_database(f"hub_current_race_{attempt}"))
        stores = [EventStore(url) for _ in range(4)]
        start, failures = threading.Barrier(len(stores)), []

        def open_current(store: EventStore) -> None:
            start.wait()
            try:
                CurrentState(store)
            except Exception as e:  # noqa: BLE001 - collected and asserted below
                failures.append(e)

        threads = [threading.Thread(target=open_current, args=(s,)) for s in stores]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            for s in stores:
                s.close()
        assert not failures, failures
