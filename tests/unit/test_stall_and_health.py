"""Stall detection, the capture's stopped state, and byte-bounded batches at the hub and the shipper."""

from __future__ import annotations

import logging
import uuid

import pytest
from eventsourcing.persistence import Notification
from prometheus_client import CollectorRegistry, Counter

from exchange.common.stall import StalledSteps, Watchdog
from exchange.store import EventStore, VersionGapError
from hub.ingest import TRACKING_PREFIX, Ingest
from node.health import CaptureHealth
from node.metrics import NodeMetrics
from node.shipper import within_bytes
from protos.exchange.v1 import exchange_pb2 as pb

AGENCY = "91310000MB2F31887X"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stalls_counter() -> tuple[Counter, CollectorRegistry]:
    registry = CollectorRegistry()
    return Counter("exchange_test_stalls_total", "stalls", ["step"], registry=registry), registry


def test_a_stalled_step_is_logged_once_counted_once_then_reported_at_growing_intervals(caplog):
    counter, registry = stalls_counter()
    clock = Clock()
    watchdog = Watchdog(10.0, counter, clock=clock)
    caplog.set_level(logging.WARNING, "exchange.common.stall")
    with watchdog.step("store", "the node store to take 5 events"):
        clock.now += 5
        watchdog.check()
        assert not caplog.records and watchdog.stalled() == []
        clock.now += 6
        watchdog.check()
        watchdog.check()  # a second look at once says nothing more
        assert [r.getMessage() for r in caplog.records] == [
            "store step has made no progress for 11 seconds: waiting on the node store to take 5 events"]
        assert watchdog.stalled() == [{"step": "store", "waiting_on": "the node store to take 5 events",
                                       "seconds": 11.0}]
        family = next(StalledSteps(watchdog, "exchange_test_stalled_step_seconds").collect())
        assert [(s.labels["step"], s.value) for s in family.samples] == [("store", 11.0)]
        for _ in range(60):  # a minute of checks: reported after 20 s more, then 40 s more
            clock.now += 1
            watchdog.check()
        assert len(caplog.records) == 3
    assert registry.get_sample_value("exchange_test_stalls_total", {"step": "store"}) == 1
    assert "went on after 71 seconds" in caplog.records[-1].getMessage()
    assert watchdog.stalled() == []


def test_a_stopped_capture_is_loud_once_then_quiet_and_exported():
    registry = CollectorRegistry()
    metrics = NodeMetrics(registry)
    clock, monotonic = Clock(), Clock()
    health = CaptureHealth(metrics, clock=clock, monotonic=monotonic)
    assert registry.get_sample_value("exchange_node_capture_up") == 1
    logged = []
    handler = logging.Handler()
    handler.emit = logged.append  # type: ignore[method-assign]
    logging.getLogger("node.health").addHandler(handler)
    try:
        for _ in range(120):  # two minutes of the same failure, one attempt a second
            health.failed(OSError("source database refused the connection"))
            clock.now += 1
            monotonic.now += 1
        assert registry.get_sample_value("exchange_node_capture_up") == 0
        assert registry.get_sample_value("exchange_node_capture_down_since_timestamp_seconds") == 1000.0
        reason = "OSError: source database refused the connection"
        assert registry.get_sample_value("exchange_node_capture_stopped_info", {"reason": reason}) == 1
        assert logged[0].exc_info is not None  # the traceback, once
        assert all(r.exc_info is None for r in logged[1:])
        assert 3 <= len(logged) <= 8  # at 1, 2, 4, 8 ... seconds: not one per attempt
        health.ok()
        assert registry.get_sample_value("exchange_node_capture_up") == 1
        assert registry.get_sample_value("exchange_node_capture_stopped_info", {"reason": reason}) is None
        assert "capture runs again" in logged[-1].getMessage()
    finally:
        logging.getLogger("node.health").removeHandler(handler)


def events(ids: range, width: int, record: uuid.UUID | None = None, version: int = 1) -> list[pb.Event]:
    return [pb.Event(notification_id=i, originator_id=str(record or uuid.uuid4()), originator_version=version,
                     topic="t", state=b"s" * width) for i in ids]


def test_hub_ingest_stores_a_large_batch_in_parts_each_with_its_position(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        ingest = Ingest(store, batch_bytes=5_000)
        record = uuid.uuid4()
        # Ten events of 1 KB (parts of four), then one whose version leaves a gap: the parts before its part
        # stay stored, each with its position.
        batch = pb.EventBatch(after=0, events=[*events(range(1, 11), 1000), *events(range(11, 12), 10, record, 2)])
        with pytest.raises(VersionGapError):
            ingest.ingest(AGENCY, batch)
        recorder = ingest.recorder(AGENCY)
        assert recorder.position(TRACKING_PREFIX + AGENCY) == 8
        assert recorder.count_after(0) == 8
        with pytest.raises(VersionGapError):  # sent again: what is held is dropped, the gap refused again
            ingest.ingest(AGENCY, batch)
        assert recorder.count_after(0) == 8
    finally:
        store.close()


def test_the_shipper_cuts_a_batch_at_its_byte_bound():
    notifications = [Notification(id=i, originator_id=uuid.uuid4(), originator_version=1, topic="t",
                                  state=b"x" * 1000) for i in range(1, 11)]
    assert [n.id for n in within_bytes(notifications, 3500)] == [1, 2, 3]
    assert [n.id for n in within_bytes(notifications, 10)] == [1]  # one larger event goes alone
    assert within_bytes(notifications, 10**6) == notifications
