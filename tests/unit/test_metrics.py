"""The node's and the hub's metrics in registries of the test's own: counters where events happen,
state gauges read at scrape time (a real SQLite source and stores, a real in-process gRPC hub)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest

from adapters import open_source
from exchange.common.config import from_values
from exchange.common.metrics import commit_timestamp
from exchange.contracts.events import make_mapper
from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import EventStore
from exchange.transport.wire import to_wire
from hub.api import ExchangeServicer
from hub.ingest import Ingest
from hub.metrics import HubMetrics, HubState
from hub.status import StatusBoard, node_backlog, report
from node import config as node_config
from node.capture import Capture
from node.metrics import NodeMetrics, NodeState
from node.shipper import Shipper
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

AGENCY = "91310000MB2F31887X"


class Node:
    """A sample agency's database, prepared for capture, and a node store holding its snapshot."""

    def __init__(self, directory, metrics: NodeMetrics | None = None):
        self.agency = SampleAgency(str(directory / "agency.db"))
        self.agency.create(persons=5, legal_persons=2, licences=2)
        self.url = f"sqlite:///{self.agency.path}"
        self.source = open_source(self.url, TABLES)
        self.source.prepare()
        self.store = EventStore(f"sqlite:///{directory / 'node.db'}")
        self.recorder = self.store.node_recorder(AGENCY)
        self.capture = Capture(AGENCY, self.source, self.recorder, metrics=metrics or NodeMetrics(CollectorRegistry()))
        self.capture_all()
        self.snapshot = self.recorder.max_notification_id()  # snapshot events carry no commit time

    def capture_all(self) -> None:
        while self.capture.step():
            pass

    def oldest_commit_after(self, position: int) -> float:
        return commit_timestamp(self.recorder.read(position, 1)[0].state)

    def close(self) -> None:
        self.source.close()
        self.store.close()


@pytest.fixture
def node(tmp_path):
    n = Node(tmp_path)
    yield n
    n.close()


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_node_counters_go_to_the_injected_registry_only(tmp_path):
    registry = CollectorRegistry()
    before = REGISTRY.get_sample_value("exchange_node_events_stored_total") or 0
    n = Node(tmp_path, NodeMetrics(registry))
    try:
        n.agency.run(10)
        n.capture_all()
        stored = n.recorder.max_notification_id()
        assert registry.get_sample_value("exchange_node_events_stored_total") == stored
        assert registry.get_sample_value("exchange_node_changes_captured_total", {"op": "snapshot"}) > 0
        assert (REGISTRY.get_sample_value("exchange_node_events_stored_total") or 0) == before
    finally:
        n.close()


def test_node_state_is_read_when_scraped(node):
    node.agency.run(10)
    node.capture_all()
    acknowledged = [node.snapshot]
    oldest = node.oldest_commit_after(node.snapshot)
    clock = Clock(oldest + 30)
    registry = CollectorRegistry()
    registry.register(NodeState(node.recorder, lambda: acknowledged[0], lambda: open_source(node.url, TABLES), clock))
    value = registry.get_sample_value
    latest = node.recorder.max_notification_id()

    assert value("exchange_node_backlog_events") == latest - node.snapshot
    assert value("exchange_node_backlog_seconds") == pytest.approx(30)
    assert value("exchange_node_hub_position") == node.snapshot
    assert value("exchange_node_source_position") == node.capture.position
    assert value("exchange_node_source_pending_changes") == 0
    assert value("exchange_node_slot_retained_wal_bytes") == 0

    clock.now += 100  # no acknowledgement comes (the hub is down): the age keeps growing
    assert value("exchange_node_backlog_seconds") == pytest.approx(130)
    node.agency.run(5)  # committed at the source, not captured yet
    assert value("exchange_node_source_pending_changes") == 5

    clock.now = oldest - 60  # a source clock ahead of the node's: never a negative age
    assert value("exchange_node_backlog_seconds") == 0

    acknowledged[0] = latest
    assert value("exchange_node_backlog_events") == 0
    assert value("exchange_node_backlog_seconds") == 0


def test_a_source_that_cannot_be_read_leaves_its_samples_out_and_is_logged_once(node, tmp_path, caplog):
    registry = CollectorRegistry()
    missing = f"sqlite:///{tmp_path / 'gone.db'}"
    registry.register(NodeState(node.recorder, lambda: 0, lambda: open_source(missing, TABLES)))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            text = generate_latest(registry).decode()
            assert "exchange_node_source_pending_changes" not in text
            assert "exchange_node_backlog_events" in text
    warnings = [r for r in caplog.records if "cannot read the source" in r.getMessage()]
    assert len(warnings) == 1 and "gone.db does not exist" in warnings[0].getMessage()


@pytest.fixture
def hub(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}")
    yield Ingest(store)
    store.close()


def ship(node: Node, ingest: Ingest) -> int:
    """Store the node's events at the hub as one batch; the hub's position."""
    notifications = node.recorder.read(ingest.position(AGENCY), 10_000)
    return ingest.ingest(AGENCY, to_wire(notifications, ingest.position(AGENCY)))[0]


def test_hub_state_and_lag_are_read_when_scraped(node, hub):
    node.agency.run(10)
    node.capture_all()
    position = ship(node, hub)
    newest = hub.newest_commit(AGENCY)
    board = StatusBoard()
    clock = Clock(newest + 600)
    overdue = {"catalog": {AGENCY: 2}, "share": {AGENCY: 1}}
    registry = CollectorRegistry()
    registry.register(HubState(hub, board, lambda: overdue["catalog"], lambda: overdue["share"], clock))

    def value(name: str) -> float | None:
        return registry.get_sample_value(name, {"agency": AGENCY})

    assert value("exchange_hub_position") == position
    assert value("exchange_hub_publishers_connected") == 0  # known from the store, not connected
    assert value("exchange_hub_last_commit_timestamp_seconds") == newest
    assert value("exchange_hub_catalog_entries_overdue") == 2
    assert value("exchange_hub_share_requests_overdue") == 1
    assert value("exchange_hub_node_backlog_events") is None  # no batch since the hub started
    assert value("exchange_hub_sync_lag_seconds") is None

    board.set_head(AGENCY, position)  # caught up: however old the newest event, no lag
    assert value("exchange_hub_node_backlog_events") == 0
    assert value("exchange_hub_sync_lag_seconds") == 0
    assert report(hub, board)["agencies"][0]["lag_seconds"] == 0

    node.agency.run(5)
    node.capture_all()
    head = node.recorder.max_notification_id()
    board.set_head(AGENCY, head)  # the node held more: at most as old as the newest event here
    assert value("exchange_hub_node_backlog_events") == head - position
    assert value("exchange_hub_sync_lag_seconds") == pytest.approx(600)
    clock.now += 60
    assert value("exchange_hub_sync_lag_seconds") == pytest.approx(660)

    board.set_clock_ahead(AGENCY, commit=clock.now + 900, received=clock.now)
    assert value("exchange_hub_clock_skew_seconds") == 900
    assert value("exchange_hub_sync_lag_seconds") == pytest.approx(1560)

    ship(node, hub)  # the rest arrives without a new head (an offline bundle, say): caught up
    assert value("exchange_hub_node_backlog_events") == 0
    assert value("exchange_hub_sync_lag_seconds") == 0

    overdue["catalog"] = None  # the calendar did not know a year: no sample, no failed scrape
    assert value("exchange_hub_catalog_entries_overdue") is None
    assert value("exchange_hub_position") == head


def test_the_hub_sees_a_source_clock_ahead_in_a_published_batch(node, hub, free_port):
    """Publish over real gRPC one event committed an hour in the future by the hub's clock."""
    mapper = make_mapper()
    event = mapper.to_domain_event(node.recorder.read(0, 1)[0])
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    ahead = mapper.to_stored_event(type(event)(**{**vars(event), "commit_time": future}))
    batch = pb.EventBatch(after=0, head=1, events=[pb.Event(
        notification_id=1, originator_id=str(ahead.originator_id), originator_version=ahead.originator_version,
        topic=ahead.topic, state=ahead.state)])
    registry = CollectorRegistry()
    board = StatusBoard()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ExchangeServicer_to_server(ExchangeServicer(hub, 100, board, metrics=HubMetrics(registry)), server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            requests = [pb.PublishRequest(hello=pb.Hello(agency=AGENCY)), pb.PublishRequest(batch=batch)]
            answers = list(pb_grpc.ExchangeStub(channel).Publish(iter(requests), timeout=30))
    finally:
        server.stop(None)
    assert answers[-1].position == 1
    known = board.snapshot()[AGENCY]
    assert known.node_head == 1
    assert 3500 < known.clock_ahead_seconds <= 3600
    assert registry.get_sample_value("exchange_hub_events_stored_total", {"agency": AGENCY}) == 1
    row = report(hub, board)["agencies"][0]
    assert row["lag_seconds"] == 0 and row["source_clock_ahead_seconds"] == known.clock_ahead_seconds


def test_registering_the_collectors_reads_nothing_and_claims_their_names(node, hub):
    asked = []
    registry = CollectorRegistry(auto_describe=True)
    registry.register(NodeState(node.recorder, lambda: asked.append("hub position") or 0))
    registry.register(HubState(hub, StatusBoard(), lambda: asked.append("catalog") or {}))
    assert asked == []
    with pytest.raises(ValueError, match="exchange_node_backlog_seconds"):
        registry.register(NodeState(node.recorder))
    with pytest.raises(ValueError, match="exchange_hub_sync_lag_seconds"):
        registry.register(HubState(hub, StatusBoard()))


def test_a_node_whose_newest_events_stay_at_the_node_shows_no_backlog_at_the_hub(node, hub, free_port):
    """The newest changes are of a ``[source] not_shared`` table: once the rest is at the hub, it is caught up."""
    source = node.agency.connect()
    source.execute("UPDATE licences SET status = 'revoked'")
    source.close()
    node.capture_all()
    board = StatusBoard()
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ExchangeServicer_to_server(ExchangeServicer(hub, 100, board, metrics=HubMetrics(CollectorRegistry())),
                                           server)
    address = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(address)
    server.start()
    cfg = from_values(node_config.SETTINGS, {"agency": AGENCY, "store.url": "sqlite:///unused.db", "source.url": node.url,
                                             "source.tables": TABLES, "source.not_shared": ["licences"],
                                             "hub.address": address, "hub.insecure": True})
    shipper = Shipper(AGENCY, node.recorder, address, reconnect_max=0.2, metrics=NodeMetrics(CollectorRegistry()),
                      cfg=cfg)
    thread = threading.Thread(target=shipper.run)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while shipper.acknowledged < node.recorder.max_notification_id():
            assert time.monotonic() < deadline, "the shipper did not settle every event"
            time.sleep(0.05)
    finally:
        shipper.stop()
        thread.join(10)
        server.stop(None)
    position = hub.position(AGENCY)
    assert 0 < position < node.recorder.max_notification_id()  # the licences' changes stayed at the node
    assert node_backlog(board.snapshot()[AGENCY], position) == 0
