"""The envelope: what a record event's state says about routing, read cheaply and sent beside the state."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import pytest
from eventsourcing.persistence import Notification
from hypothesis import given
from hypothesis import strategies as st

from exchange.common.metrics import commit_timestamp
from exchange.contracts.envelope import header
from exchange.contracts.events import RecordUpdated, make_mapper
from exchange.transport.wire import MalformedEvent, checked_resource, commit_time_of, to_wire
from protos.exchange.v1 import exchange_pb2 as pb

COMMIT = datetime(2026, 5, 1, 8, 30, tzinfo=timezone.utc)


def record_state(**fields) -> bytes:
    event = RecordUpdated(originator_id=uuid.uuid4(), originator_version=2, timestamp=COMMIT, agency="a",
                          resource="licences", key={"id": 1}, position=4711, commit_time=COMMIT, txid="9",
                          schema_version=1, event_schema_version=1, changed={"resource": "not this one", **fields})
    return make_mapper().to_stored_event(event).state


def json_header(state: bytes):
    """What reading the whole state with the json module gives."""
    try:
        whole = json.loads(state)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(whole, dict):
        return None, None
    resource = whole.get("resource")
    return resource if isinstance(resource, str) else None, whole.get("commit_time")


@pytest.mark.parametrize("state", [
    record_state(), record_state(score=float("nan")), b'{"resource": "a", "resource": "b"}', b'{"resource": 5}',
    b"[1]", b"\xff\xfe", b"[" * 5000, b'{"resource": "x", "row": {"v": NaN}}', b'{"a": 1e999, "resource": "y"}',
])
def test_the_header_names_the_resource_the_whole_state_names(state):
    assert header(state).resource == json_header(state)[0]


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner) | st.dictionaries(st.sampled_from(["resource", "r", "commit_time"]),
                                                                   inner), max_leaves=8))
def test_any_json_value_gives_the_same_resource(value):
    state = json.dumps(value).encode()
    assert header(state).resource == json_header(state)[0]


def test_to_wire_sends_the_envelope_and_receivers_fall_back_to_the_state_without_one():
    state = record_state()
    event = to_wire([Notification(id=7, originator_id=uuid.uuid4(), originator_version=2, topic=RecordUpdated.TOPIC,
                                   state=state)], after=6).events[0]
    assert (event.resource, event.operation, event.commit_time, event.source_position) == (
        "licences", "Updated", COMMIT.timestamp(), 4711)
    older = pb.Event(notification_id=7, originator_id=event.originator_id, originator_version=2,
                     topic=event.topic, state=state)  # from a node or bundle without envelopes
    assert commit_time_of(event) == commit_time_of(older) == commit_timestamp(state) == COMMIT.timestamp()
    assert checked_resource(event) == checked_resource(older) == "licences"
    event.commit_time = 1.0
    assert commit_time_of(event) == 1.0  # metrics take the envelope as sent
    event.resource = "persons"
    with pytest.raises(MalformedEvent, match="event 7: its envelope names resource 'persons', its state 'licences'"):
        checked_resource(event)
