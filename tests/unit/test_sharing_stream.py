"""Consumer subscriptions through the hub's real gRPC Subscribe (in-process server, SQLite store)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from test_sharing import CONSUMER, OTHER, PROVIDER, Clock, DictTerms, terms

from exchange.contracts.events import RecordCreated, SchemaChanged, make_mapper
from exchange.store import EventStore
from exchange.transport.wire import from_wire
from hub.api import ExchangeServicer
from hub.catalog.terms import CONDITIONAL, NOT_SHARED, UNCONDITIONAL
from hub.ingest import Ingest
from hub.sharing.ledger import SharingLedger
from hub.workdays import WorkingCalendar
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

COLUMNS = ("id", "name", "born", "district")


class Hub:
    """An in-process hub: store, ingest, ledger and the Exchange service on a loopback port."""

    def __init__(self, directory, port: int):
        self.store = EventStore(f"sqlite:///{directory / 'hub.db'}")
        self.ingest = Ingest(self.store)
        self.catalog = DictTerms(terms("open", UNCONDITIONAL), terms("licences", CONDITIONAL),
                                 terms("secret", NOT_SHARED))
        self.clock = Clock(datetime.now(timezone.utc))
        self.ledger = SharingLedger(self.store, self.catalog, WorkingCalendar(), clock=self.clock)
        servicer = ExchangeServicer(self.ingest, max_batch=10)
        servicer.sharing = self.ledger
        self.executor = ThreadPoolExecutor(max_workers=8)
        self.server = grpc.server(self.executor)
        pb_grpc.add_ExchangeServicer_to_server(servicer, self.server)
        self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.ExchangeStub(self.channel)
        self.mapper = make_mapper()
        self.node_position = 0
        self.versions: dict[uuid.UUID, int] = {}

    def publish(self, *events) -> None:
        wire = []
        for event in events:
            self.node_position += 1
            stored = self.mapper.to_stored_event(event)
            wire.append(pb.Event(notification_id=self.node_position, originator_id=str(stored.originator_id),
                                 originator_version=stored.originator_version, topic=stored.topic,
                                 state=stored.state))
        self.ingest.ingest(PROVIDER, pb.EventBatch(after=self.node_position - len(events), events=wire))

    def event(self, kind, resource, key, **fields):
        oid = uuid.uuid5(uuid.NAMESPACE_OID, f"{resource}/{key}")
        self.versions[oid] = self.versions.get(oid, 0) + 1
        return kind(originator_id=oid, originator_version=self.versions[oid], timestamp=datetime.now(timezone.utc),
                    agency=PROVIDER, resource=resource, key={"id": key}, position=self.node_position + 1,
                    commit_time=None, txid="", schema_version=1, event_schema_version=1, **fields)

    def schema(self, resource):
        table = {"name": resource, "primary_key": ["id"],
                 "columns": [{"name": c, "type": "TEXT", "notnull": False, "default": None} for c in COLUMNS]}
        return self.event(SchemaChanged, resource, "__schema__", table=table)

    def rows(self, resource, keys):
        return [self.event(RecordCreated, resource, k, row={"id": k, "name": f"n{k}", "born": "1990", "district": "P"})
                for k in keys]

    def subscribe(self, resource, *, consumer=CONSUMER, after=0, purpose="permits", max_batch=0):
        return self.stub.Subscribe(pb.SubscribeRequest(agency=PROVIDER, consumer=consumer, resource=resource,
                                                       purpose=purpose, after=after, max_batch=max_batch))

    def close(self):
        self.channel.close()
        self.server.stop(None).wait(10)
        # Cancelled handlers run on until their next check; the store must outlive them.
        self.executor.shutdown(wait=True)
        self.store.close()


@pytest.fixture
def hub(tmp_path, free_port):
    h = Hub(tmp_path, free_port())
    h.publish(h.schema("licences"), h.schema("open"), h.schema("secret"))
    h.publish(*[e for k in range(1, 16) for e in (h.rows("licences", [k]) + h.rows("open", [k]) + h.rows("secret", [k]))])
    yield h
    h.close()


def approve(hub, items=("name",), consumer=CONSUMER, expires=None):
    request = hub.ledger.request(consumer, PROVIDER, "licences", scope="all", purpose="permits", items=list(items))
    return hub.ledger.approve(str(request.id), PROVIDER, expires=expires)


def read_until(stream, head):
    """Batches up to the one that reaches hub id ``head``."""
    batches = []
    for batch in stream:
        batches.append(batch)
        if batch.reached >= head:
            return batches
    raise AssertionError("the stream ended early")


def decoded(batches):
    mapper = make_mapper()
    return [mapper.to_domain_event(from_wire(e)) for b in batches for e in b.events]


def test_a_consumer_receives_only_its_entitled_resource_and_items(hub):
    approve(hub, items=("name", "born"))
    head = hub.ingest.hub_position(PROVIDER)
    stream = hub.subscribe("licences")
    batches = read_until(stream, head)
    stream.cancel()
    assert (batches[0].reached, list(batches[0].events), list(batches[0].items)) == (0, [], ["born", "name"])
    events = decoded(batches)
    assert {e.resource for e in events} == {"licences"}
    assert [c["name"] for c in events[0].table["columns"]] == ["id", "name", "born"]
    assert [e.row for e in events[1:3]] == [{"id": 1, "name": "n1", "born": "1990"},
                                            {"id": 2, "name": "n2", "born": "1990"}]
    assert len(events) == 16
    records = hub.ledger.deliveries(consumer=CONSUMER)
    assert sum(r["events"] for r in records) == 16 and {r["purpose"] for r in records} == {"permits"}


def test_resuming_from_any_reached_position_gives_no_gap_and_no_duplicate(hub):
    approve(hub)
    head = hub.ingest.hub_position(PROVIDER)
    stream = hub.subscribe("licences", max_batch=7)
    whole = read_until(stream, head)
    stream.cancel()
    everything = [e.notification_id for b in whole for e in b.events]
    assert len(everything) == len(set(everything)) == 16
    for cut in whole[1:-1]:
        resumed = hub.subscribe("licences", after=cut.reached, max_batch=7)
        rest = read_until(resumed, head)
        resumed.cancel()
        before = [e.notification_id for b in whole for e in b.events if e.notification_id <= cut.reached]
        assert before + [e.notification_id for b in rest for e in b.events] == everything


def test_a_subscription_that_loses_its_entitlement_mid_stream_ends_before_another_event(hub):
    request = approve(hub)
    head = hub.ingest.hub_position(PROVIDER)
    stream = hub.subscribe("licences")
    received = read_until(stream, head)
    hub.ledger.revoke(str(request.id), PROVIDER, reason="purpose fulfilled")
    hub.publish(*hub.rows("licences", [100, 101]))
    with pytest.raises(grpc.RpcError) as refused:
        for batch in stream:
            received.append(batch)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "no current approval" in refused.value.details()
    assert max(e.notification_id for b in received for e in b.events) <= head
    with pytest.raises(grpc.RpcError) as again:
        next(hub.subscribe("licences", after=head))
    assert again.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_expiring_approval_ends_the_stream(hub):
    approve(hub, expires=hub.clock.now + timedelta(hours=1))
    stream = hub.subscribe("licences")
    read_until(stream, hub.ingest.hub_position(PROVIDER))
    hub.clock.now += timedelta(hours=1)
    with pytest.raises(grpc.RpcError) as refused:
        list(stream)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_new_items_end_the_stream_so_the_consumer_resubscribes(hub):
    approve(hub, items=("name",))
    stream = hub.subscribe("licences")
    read_until(stream, hub.ingest.hub_position(PROVIDER))
    approve(hub, items=("born",))
    with pytest.raises(grpc.RpcError) as changed:
        list(stream)
    assert changed.value.code() == grpc.StatusCode.ABORTED
    again = hub.subscribe("licences")
    assert list(next(again).items) == ["born", "name"]
    again.cancel()


@pytest.mark.parametrize("resource, consumer, purpose, code, message", [
    ("licences", CONSUMER, "permits", grpc.StatusCode.PERMISSION_DENIED, "no current approval"),
    ("secret", CONSUMER, "permits", grpc.StatusCode.PERMISSION_DENIED, "not shared"),
    ("open", OTHER, "", grpc.StatusCode.INVALID_ARGUMENT, "state the purpose"),
    ("", OTHER, "x", grpc.StatusCode.INVALID_ARGUMENT, "names the resource"),
])
def test_subscriptions_without_entitlement_are_refused(hub, resource, consumer, purpose, code, message):
    with pytest.raises(grpc.RpcError) as refused:
        next(hub.subscribe(resource, consumer=consumer, purpose=purpose))
    assert refused.value.code() == code and message in refused.value.details()


def test_unconditional_resources_go_to_any_agency_with_every_item(hub):
    stream = hub.subscribe("open", consumer=OTHER, purpose="statistics")
    events = decoded(read_until(stream, hub.ingest.hub_position(PROVIDER)))
    stream.cancel()
    assert len(events) == 16 and events[1].row == {"id": 1, "name": "n1", "born": "1990", "district": "P"}


def test_the_provider_subscribing_to_itself_still_gets_its_whole_log(hub):
    stream = hub.stub.Subscribe(pb.SubscribeRequest(agency=PROVIDER, after=0))
    head = hub.ingest.hub_position(PROVIDER)
    ids = []
    for batch in stream:
        ids += [e.notification_id for e in batch.events]
        if ids[-1] == head:
            break
    stream.cancel()
    assert ids == list(range(1, head + 1))
    assert hub.ledger.deliveries() == []


def test_an_event_whose_state_names_no_resource_is_not_anyones_and_does_not_stop_the_stream(hub):
    """A stored state that is not a JSON object belongs to no resource: it is never delivered, and the
    provider's other events still are (the hub stores such states as it receives them)."""
    hub.node_position += 1
    odd = [pb.Event(notification_id=hub.node_position, originator_id=str(uuid.uuid4()), originator_version=1,
                    topic=RecordCreated.TOPIC, state=state) for state in (b"\xff not json", b"[1, 2]")]
    odd[1].notification_id = hub.node_position = hub.node_position + 1
    hub.ingest.ingest(PROVIDER, pb.EventBatch(after=hub.node_position - 2, events=odd))
    hub.publish(*hub.rows("open", [99]))
    stream = hub.subscribe("open", consumer=OTHER, purpose="statistics")
    events = decoded(read_until(stream, hub.ingest.hub_position(PROVIDER)))
    stream.cancel()
    assert len(events) == 17 and events[-1].row["id"] == 99
