"""Record ids, row digests and stored event states are the bytes the json module writes.

Node stores hold digests and ids computed by ``json`` and the hub holds the
states nodes stored, so encoding by orjson must not change one byte of them:
each is compared here with the json-only form of earlier releases.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal

import pytest
from eventsourcing.persistence import DatetimeAsISO, DecimalAsStr, JSONTranscoder, UUIDAsHex
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.contracts import events as ev
from exchange.contracts import fastjson

pytestmark = pytest.mark.unit

NAMESPACE = uuid.UUID("5b0c8a52-3d1e-4c1e-9a57-0d6a3c2f8e11")


def json_canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=ev._plain)


def json_transcoder() -> JSONTranscoder:
    transcoder = JSONTranscoder()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), ev.DateAsISO(), ev.TimeAsISO(),
                        ev.BytesAsBase64()):
        transcoder.register(transcoding)
    return transcoder


texts = st.text(st.characters(codec="utf-8")) | st.sampled_from(["", "\x00\x1f\x7f", "\u2028\ufeff", "é\"\\\n\t"])
zones = st.sampled_from([None, timezone.utc, timezone(timedelta(hours=8)), timezone(timedelta(minutes=-330))])
scalars = st.one_of(
    st.none(), st.booleans(), texts,
    st.integers(), st.integers(min_value=-2**64, max_value=2**64),
    st.floats(), st.floats(min_value=-1e-3, max_value=1e-3), st.sampled_from([1e16, 1e-5, -0.0, 5e-324, 1.5e300]),
    st.decimals(allow_nan=False), st.dates(), st.datetimes(timezones=zones), st.times(), st.binary(), st.uuids(),
)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                      max_leaves=12)
rows = st.dictionaries(texts, values, max_size=8)
# Rows of text, integers (beyond 64 bits too) and nulls only: the encoders' quickest path.
flat_rows = st.dictionaries(texts, st.none() | texts | st.integers() | st.integers(min_value=-2**70, max_value=2**70),
                            max_size=8)
# What the json encoder fails on too (a lone surrogate, a key that is not text) must fail alike.
odd = st.sampled_from([{"a": "\ud800"}, {1: "x"}, {"t": (1, 2.5e-7)}, [uuid.UUID(int=5)], {"set": frozenset()}])


@settings(max_examples=400)
@given(rows | flat_rows | odd)
def test_canonical_json_and_digests_are_those_of_json(row):
    try:
        expected = json_canonical(row)
    except (TypeError, ValueError) as e:
        with pytest.raises(type(e)):
            ev.canonical_json(row)
        return
    assert ev.canonical_json(row) == expected
    if isinstance(row, dict):
        present = {k: v for k, v in row.items() if v is not None}
        try:
            digest = hashlib.sha256(json_canonical(present).encode()).hexdigest()[:32]
        except UnicodeEncodeError:
            return
        assert ev.image_hash(row) == digest


@settings(max_examples=300)
@given(st.dictionaries(texts, scalars, min_size=1, max_size=3) | flat_rows.filter(bool), texts)
def test_record_ids_are_those_of_json(key, resource):
    try:
        expected = uuid.uuid5(NAMESPACE, json_canonical(["91310000MB2F31887X", resource, key]))
    except UnicodeEncodeError:
        return
    assert ev.record_id("91310000MB2F31887X", resource, key) == expected


@settings(max_examples=300)
@given(rows | flat_rows | odd.filter(lambda v: isinstance(v, dict)))
def test_stored_states_are_those_of_json(row):
    old, new = json_transcoder(), ev.make_mapper().transcoder
    state = {"agency": "A", "resource": "t", "key": {"id": 1}, "position": 5, "commit_time": None, "txid": "",
             "schema_version": 1, "event_schema_version": 1,
             "timestamp": datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc), "row": row}
    try:
        expected = old.encode(state)
    except (TypeError, ValueError) as e:
        with pytest.raises(type(e)):
            new.encode(state)
        return
    assert new.encode(state) == expected
    assert new.decode(expected) == old.decode(expected)


def test_an_event_of_every_value_kind_round_trips():
    mapper = ev.make_mapper()
    row = {"n": 1, "big": 2**70, "f": 0.5, "tiny": 1e-7, "inf": float("inf"), "d": Decimal("1.10"),
           "day": date(2026, 1, 2), "at": time(3, 4, 5), "b": b"\x00\xff", "u": uuid.UUID(int=7), "a": [1, "x"]}
    event = ev.RecordCreated(originator_id=uuid.uuid4(), originator_version=1, timestamp=datetime.now(timezone.utc),
                             agency="A", resource="t", key={"n": 1}, position=1, commit_time=None, txid="",
                             schema_version=1, event_schema_version=ev.EVENT_SCHEMA_VERSION, row=row)
    stored = mapper.to_stored_event(event)
    assert stored.state == json_transcoder().encode(
        {k: v for k, v in vars(event).items() if k not in ("originator_id", "originator_version")})
    assert mapper.to_domain_event(stored).row == row


json_values = st.recursive(
    st.none() | st.booleans() | texts | st.integers() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=12)


@settings(max_examples=300)
@given(json_values)
def test_fast_reading_gives_what_json_reads(value):
    data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
    try:
        expected = json.loads(data)
    except ValueError:  # lone surrogates in the bytes
        with pytest.raises(ValueError):
            fastjson.loads(data)
        return
    read = fastjson.loads(data)
    assert json.dumps(read, sort_keys=True) == json.dumps(expected, sort_keys=True)  # NaN != NaN, but not as text


instants = st.sampled_from([datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
                            datetime(2026, 1, 2, 11, 4, 5, 6, tzinfo=timezone(timedelta(hours=8)))])  # equal instants
row_events = st.tuples(
    st.sampled_from([ev.RecordCreated, ev.RecordUpdated, ev.RecordDeleted]), instants, st.sampled_from(["A", "B"]),
    st.sampled_from(["t", "é\"\\"]), st.dictionaries(texts, scalars, min_size=1, max_size=2),
    st.integers(min_value=-2**64, max_value=2**64) | st.booleans(), st.none() | instants,
    st.sampled_from(["", "7"]), st.sampled_from([1, 2, True]), rows | flat_rows | st.just({}))


@settings(max_examples=300)
@given(st.lists(row_events, min_size=1, max_size=6))
def test_row_events_are_stored_as_the_json_form_of_their_fields(drafts):
    """The mapper writes row events from parts it keeps between events: the bytes are those of json."""
    mapper, old = ev.make_mapper(), json_transcoder()
    for cls, stamp, agency, resource, key, position, commit_time, txid, version, row in drafts:
        own = {"row": row} if cls is ev.RecordCreated else {"changed": row} if cls is ev.RecordUpdated else {}
        event = cls(originator_id=uuid.UUID(int=3), originator_version=1, timestamp=stamp, agency=agency,
                    resource=resource, key=key, position=position, commit_time=commit_time, txid=txid,
                    schema_version=version, event_schema_version=1, **own)
        try:
            expected = old.encode({k: v for k, v in vars(event).items()
                                   if k not in ("originator_id", "originator_version")})
        except (TypeError, ValueError) as e:
            with pytest.raises(type(e)):
                mapper.to_stored_event(event)
            continue
        stored = mapper.to_stored_event(event)
        assert stored.state == expected
        assert (stored.originator_id, stored.originator_version, stored.topic) == (event.originator_id, 1, cls.TOPIC)
        # capture passes the key it encoded already for the record's state
        assert mapper.to_stored_record_event(event, mapper.transcoder.encode(key)) == stored
