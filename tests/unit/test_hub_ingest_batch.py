"""Hub ingest of one published batch: checked whole before any part of it is stored, cut into parts by
the bytes the events take in the store, re-sent events dropped."""

from __future__ import annotations

import uuid

import pytest

from exchange.store import EventStore
from exchange.transport.wire import MalformedEvent
from hub.ingest import TRACKING_PREFIX, Ingest
from protos.exchange.v1 import exchange_pb2 as pb

AGENCY = "91310000MB2F31887X"


def events(ids: range, width: int) -> list[pb.Event]:
    return [pb.Event(notification_id=i, originator_id=str(uuid.uuid4()), originator_version=1, topic="t",
                     state=b"s" * width) for i in ids]


@pytest.fixture
def store(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}")
    yield store
    store.close()


def test_a_malformed_event_in_a_later_part_stores_nothing_of_the_batch(store):
    ingest = Ingest(store, batch_bytes=5_000)
    batch = pb.EventBatch(after=0, events=events(range(1, 11), 1000))
    batch.events[9].originator_id = "not a uuid"
    with pytest.raises(MalformedEvent, match="event 10: originator_id"):
        ingest.ingest(AGENCY, batch)
    recorder = ingest.recorder(AGENCY)
    assert recorder.count_after(0) == 0 and recorder.position(TRACKING_PREFIX + AGENCY) == 0


def test_parts_hold_the_events_the_byte_bound_allows_in_the_store(store, monkeypatch):
    ingest = Ingest(store, batch_bytes=5_000)
    recorder = ingest.recorder(AGENCY)
    parts: list[int] = []
    insert = recorder.insert_events
    monkeypatch.setattr(recorder, "insert_events", lambda stored, **kw: parts.append(len(stored)) or insert(stored, **kw))
    # 1000 bytes of state, one of topic and 48 for ids and version: four events to a part.
    assert ingest.ingest(AGENCY, pb.EventBatch(after=0, events=events(range(1, 11), 1000))) == (10, 10)
    assert parts == [4, 4, 2]
    assert [n.originator_version for n in recorder.read(0, 20)] == [1] * 10


def test_a_batch_overlapping_the_position_stores_only_what_follows_it(store):
    ingest = Ingest(store)
    sent = events(range(1, 21), 10)
    assert ingest.ingest(AGENCY, pb.EventBatch(after=0, events=sent[:12])) == (12, 12)
    assert ingest.ingest(AGENCY, pb.EventBatch(after=5, events=sent[5:])) == (20, 8)
    stored = ingest.read(AGENCY, 0, 50)
    assert [uuid.UUID(str(n.originator_id)) for n in stored] == [uuid.UUID(e.originator_id) for e in sent]
