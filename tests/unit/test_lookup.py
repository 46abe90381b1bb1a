"""Lookup and browse (Art. 16): the hub's current-state table and the Query service over real gRPC."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from prometheus_client import CollectorRegistry
from test_sharing import CONSUMER, OTHER, PROVIDER
from test_sharing_stream import Hub

from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated
from exchange.store import EventStore
from exchange.store.at_rest import StateCipher
from hub.ingest import Ingest
from hub.metrics import HubMetrics
from hub.sharing.current import ROWS, CurrentState, Follower, key_text
from hub.sharing.query import QueryServicer
from protos.exchange.v1 import query_pb2 as qpb
from protos.exchange.v1 import query_pb2_grpc as qpb_grpc


def source_rows(hub) -> dict:
    """What the provider's table holds after ``populate``."""
    rows = {k: {"id": k, "name": f"n{k}", "born": "1990", "district": "P" if k % 2 else "Q"} for k in range(1, 13)}
    rows[2]["district"] = "P"
    rows[3].update(name="renamed", district="Q")
    del rows[5]
    return rows


def populate(hub) -> None:
    hub.publish(hub.schema("licences"))
    hub.publish(*[hub.event(RecordCreated, "licences", k, row={"id": k, "name": f"n{k}", "born": "1990",
                                                               "district": "P" if k % 2 else "Q"}) for k in range(1, 13)])
    hub.publish(hub.event(RecordUpdated, "licences", 2, changed={"district": "P"}),
                hub.event(RecordUpdated, "licences", 3, changed={"name": "renamed"}),
                hub.event(RecordUpdated, "licences", 3, changed={"district": "Q"}),
                hub.event(RecordDeleted, "licences", 5))


def table(current: CurrentState, resource="licences") -> dict:
    return {row["id"]: row for _, _, _, row in current.scan(PROVIDER, resource, "", 1000)}


@pytest.fixture
def hub(tmp_path, free_port):
    h = Hub(tmp_path, free_port())
    populate(h)
    h.current = CurrentState(h.store)
    h.ledger.current = h.current
    yield h
    h.close()


def test_the_follower_folds_each_event_exactly_once_and_a_rebuild_gives_the_same_state(hub):
    follower = Follower(hub.current, hub.ingest, batch=3)
    assert follower.catch_up() == hub.ingest.hub_position(PROVIDER)
    assert table(hub.current) == source_rows(hub)
    assert hub.current.position(PROVIDER) == hub.ingest.hub_position(PROVIDER)
    # The same notifications again (a crash after commit, before the caller noticed) change nothing.
    assert hub.current.advance(PROVIDER, hub.ingest.read(PROVIDER, 0, 100)) == hub.ingest.hub_position(PROVIDER)
    assert table(hub.current) == source_rows(hub)
    version, key, row = hub.current.get(PROVIDER, "licences", key_text({"id": 3}))
    assert (version, key, row["name"]) == (3, {"id": 3}, "renamed")
    hub.current.rebuild(PROVIDER)
    assert table(hub.current) == {} and hub.current.position(PROVIDER) == 0
    follower.catch_up()
    assert table(hub.current) == source_rows(hub)


def test_the_follower_reports_how_far_behind_the_logs_it_is(hub):
    metrics = HubMetrics(CollectorRegistry())
    stopped = Follower(hub.current, hub.ingest, metrics=metrics)
    stopped.stop()  # never started: its rounds end before folding anything
    stopped.catch_up()
    behind = lambda: metrics.registry.get_sample_value(  # noqa: E731
        "exchange_hub_current_state_behind_events", {"agency": PROVIDER})
    assert behind() == hub.ingest.hub_position(PROVIDER)
    Follower(hub.current, hub.ingest, metrics=metrics).catch_up()
    assert behind() == 0


def test_the_follower_wakes_on_each_stored_batch(hub):
    follower = Follower(hub.current, hub.ingest, poll=60).start()
    try:
        hub.publish(hub.event(RecordCreated, "licences", 40, row={"id": 40, "name": "late", "born": "", "district": "P"}))
        _poll(lambda: hub.current.get(PROVIDER, "licences", key_text({"id": 40})) is not None)
    finally:
        follower.stop()


def test_the_current_state_of_an_encrypted_store_is_sealed(tmp_path):
    cipher = StateCipher(bytes(range(32)))
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}", cipher=cipher)
    try:
        current = CurrentState(store)
        current.advance(PROVIDER, [])
        hub = Hub.__new__(Hub)
        hub.store, hub.ingest, hub.versions, hub.node_position = store, Ingest(store), {}, 0
        from exchange.contracts.events import make_mapper
        hub.mapper = make_mapper()
        hub.publish(hub.event(RecordCreated, "licences", 1, row={"id": 1, "name": "秘密", "district": "P"}))
        Follower(current, hub.ingest).catch_up()
        assert current.get(PROVIDER, "licences", key_text({"id": 1}))[2]["name"] == "秘密"
        with store.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT state FROM {ROWS}")
            [(sealed,)] = c.fetchall()
        assert "秘密".encode() not in bytes(sealed) and b"licences" not in bytes(sealed)
    finally:
        store.close()


@pytest.fixture
def query(hub, free_port):
    Follower(hub.current, hub.ingest).catch_up()
    executor = ThreadPoolExecutor(max_workers=4)
    server = grpc.server(executor)
    qpb_grpc.add_QueryServicer_to_server(QueryServicer(hub.ledger, hub.current, scan_budget=4), server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    stub = qpb_grpc.QueryStub(channel)

    def find(consumer=CONSUMER, **fields):
        return stub.Find(qpb.QueryRequest(agency=consumer, provider=PROVIDER, resource="licences", **fields))
    yield find
    channel.close()
    server.stop(None).wait(10)
    executor.shutdown(wait=True)


def approve(hub, rows="district = 'P'", items=("name", "district")):
    asked = hub.ledger.request(CONSUMER, PROVIDER, "licences", scope="P", purpose="permits", items=list(items))
    return hub.ledger.approve(str(asked.id), PROVIDER, rows=rows)


def rows_of(page) -> list[dict]:
    return [json.loads(r.row) for r in page.rows]


def test_a_key_lookup_answers_within_the_items_and_rows_approved(hub, query):
    approve(hub)
    page = query(key=[qpb.KeyPart(item="id", value="2")])
    assert rows_of(page) == [{"id": 2, "name": "n2", "district": "P"}]  # born is not granted
    assert page.items == ["district", "name"] and page.rows_filter == "district = 'P'"
    assert page.position == hub.ingest.hub_position(PROVIDER) and page.rows[0].version == 2
    assert rows_of(query(key=[qpb.KeyPart(item="id", value="3")])) == []  # left the scope
    assert rows_of(query(key=[qpb.KeyPart(item="id", value="5")])) == []  # deleted
    [record] = [d for d in hub.ledger.deliveries(CONSUMER) if d["mode"] == "query"][:1]
    assert record["query"] == {"key": {"id": "2"}, "where": "", "rows": 1} and record["purpose"] == "permits"
    assert record["rows"] == "district = 'P'" and record["events"] == 1


def test_browsing_pages_through_the_filtered_rows(hub, query):
    approve(hub)
    found, token, pages = [], "", 0
    while True:
        page = query(where="name != 'n1'", page_size=2, page_token=token)
        assert len(page.rows) <= 2 and page.scanned <= 4  # the scan budget bounds each call
        found += rows_of(page)
        pages += 1
        token = page.next_page_token
        if not token:
            break
    expected = sorted(k for k, r in source_rows(hub).items() if r["district"] == "P" and r["name"] != "n1")
    assert sorted(r["id"] for r in found) == expected and pages > 2


@pytest.mark.parametrize("fields, consumer, reason", [
    ({}, OTHER, "holds no current approval"),
    ({"where": "born < '2000'"}, CONSUMER, "names born, not among the data items granted"),
    ({"purpose": "marketing"}, CONSUMER, "approved for the purpose 'permits', not 'marketing'"),
])
def test_a_query_outside_the_entitlement_is_refused_saying_why(hub, query, fields, consumer, reason):
    approve(hub)
    with pytest.raises(grpc.RpcError) as refused:
        query(consumer=consumer, **fields)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED and reason in refused.value.details()
    assert not [d for d in hub.ledger.deliveries() if d["mode"] == "query"]


@pytest.mark.parametrize("fields, reason", [
    ({"where": "name = "}, "at its end"),
    ({"page_size": 5000}, "at most 1000"),
    ({"page_token": "%%%"}, "not one this hub gave"),
    ({"key": [qpb.KeyPart(item="id", value="1"), qpb.KeyPart(item="id", value="2")]}, "repeated"),
])
def test_bad_queries_are_invalid_arguments(hub, query, fields, reason):
    approve(hub)
    with pytest.raises(grpc.RpcError) as refused:
        query(**fields)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and reason in refused.value.details()


def _poll(condition, timeout=60.0):
    import time
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def test_an_event_without_what_folding_needs_neither_stops_the_follower_nor_reaches_a_scoped_consumer(hub):
    from test_sharing_stream import read_until

    from protos.exchange.v1 import exchange_pb2 as pb
    hub.node_position += 1
    broken = pb.Event(notification_id=hub.node_position, originator_id="6f1c1a52-3d1e-4c1e-9a57-0d6a3c2f8e11",
                      originator_version=1, topic=RecordCreated.TOPIC, state=b'{"resource":"licences","key":{"id":99}}')
    hub.ingest.ingest(PROVIDER, pb.EventBatch(after=hub.node_position - 1, events=[broken]))
    hub.publish(hub.event(RecordCreated, "licences", 50, row={"id": 50, "name": "after", "born": "", "district": "P"}))
    Follower(hub.current, hub.ingest).catch_up()
    assert hub.current.position(PROVIDER) == hub.ingest.hub_position(PROVIDER)
    assert hub.current.get(PROVIDER, "licences", key_text({"id": 50})) is not None
    assert hub.current.get(PROVIDER, "licences", key_text({"id": 99})) is None
    approve(hub)
    batches = read_until(hub.subscribe("licences"), hub.ingest.hub_position(PROVIDER))
    assert all(e.originator_id != broken.originator_id for b in batches for e in b.events)
