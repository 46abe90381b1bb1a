"""A batch of record events reduced to its net effect per row, and stored states read without domain events."""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import date, datetime, time, timezone
from decimal import Decimal

import pytest
from support.records import record_event

import adapters
from adapters.apply import NetChanges, apply_events
from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, TableSchema
from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged, make_mapper
from exchange.contracts.stored_records import decode_record, record_of

AGENCY = "91310000MB2F31887X"
STAMP = datetime(2026, 3, 1, 8, 30, tzinfo=timezone.utc)


def stored(event):
    return make_mapper().to_stored_event(event)


def created(key, version=1, **row):
    return record_event(RecordCreated, AGENCY, key, version, row={"id": key, **row})


def updated(key, version, **changed):
    return record_event(RecordUpdated, AGENCY, key, version, changed=changed)


def deleted(key, version):
    return record_event(RecordDeleted, AGENCY, key, version)


def net(*events):
    changes = NetChanges()
    for event in events:
        changes.add(record_of(event))
    return [(run.op, *_key_and_values(run, row)) for run in changes.runs() for row in run.rows]


def _key_and_values(run, row):
    """The key and values of one row of a run (keys without NULLs), as the events gave them."""
    if run.op == ch.INSERT:
        values = dict(zip(run.columns, row))
        return {k: values[k] for k in run.key}, values
    width = len(run.columns)
    return dict(zip(run.key, row[width:])), dict(zip(run.columns, row[:width]))


@pytest.mark.parametrize("value", [
    "上海", 7, 2**70, 1.5, True, None, Decimal("12.30"), date(2026, 1, 2), time(8, 30, 1), STAMP, b"\x00\xff",
    uuid.UUID(int=5), [1, [date(2026, 1, 2), None]], {"a": [1, {"b": Decimal("1.0")}]},
])
def test_a_stored_state_reads_as_the_mapper_reads_it(value):
    event = record_event(RecordCreated, AGENCY, value if not isinstance(value, (list, dict)) else "k", 3,
                         row={"id": "k", "v": value, "w": "x"})
    state = stored(replace(event, commit_time=STAMP))
    assert decode_record(state.topic, state.state) == record_of(make_mapper().to_domain_event(state))


def test_text_that_looks_like_a_transcoded_value_stays_text():
    event = created("k", v='x"_type_', w={"_type_": "date_iso"}, d=date(2026, 1, 2))
    state = stored(event)
    assert decode_record(state.topic, state.state).values == event.row


def test_a_state_the_fast_decoder_refuses_is_read_by_the_transcoder():
    state = stored(updated(1, 2, score=float("nan"), when=date(2026, 1, 2)))
    record = decode_record(state.topic, state.state)
    assert math.isnan(record.values["score"]) and record.values["when"] == date(2026, 1, 2)
    assert (record.kind, record.key, record.commit_time) == (RecordUpdated.TOPIC, {"id": 1}, None)


def test_insert_update_and_delete_of_one_record_in_a_batch_leave_nothing():
    assert net(created(1, a="x"), updated(1, 2, a="y"), deleted(1, 3)) == []


def test_an_insert_then_updates_become_one_insert_of_the_last_state():
    first = created(1, a="x", b="y")
    assert net(first, updated(1, 2, a="z"), updated(1, 3, b="w")) == [(ch.INSERT, {"id": 1},
                                                                       {"id": 1, "a": "z", "b": "w"})]
    assert first.row == {"id": 1, "a": "x", "b": "y"}  # the event's own image is left as it was


def test_updates_of_an_existing_row_merge_and_a_delete_replaces_them():
    assert net(updated(1, 2, a="z"), updated(1, 3, b="w")) == [(ch.UPDATE, {"id": 1}, {"a": "z", "b": "w"})]
    assert net(updated(1, 2, a="z"), deleted(1, 3)) == [(ch.DELETE, {"id": 1}, {})]


def test_a_row_deleted_and_created_again_is_deleted_first():
    assert net(deleted(1, 2), created(1, 3, a="new")) == [(ch.DELETE, {"id": 1}, {}),
                                                          (ch.INSERT, {"id": 1}, {"id": 1, "a": "new"})]


def test_a_key_change_deletes_the_old_key_before_inserting_the_new_one():
    # UPDATE ... SET id = 2 WHERE id = 1, then a new row takes key 1: delete 1, insert 1 and 2
    ops = net(deleted(1, 2), created(2, 1, a="moved"), created(1, 3, a="other"))
    assert ops[0] == (ch.DELETE, {"id": 1}, {})
    assert sorted((op, key["id"]) for op, key, _ in ops[1:]) == [(ch.INSERT, 1), (ch.INSERT, 2)]


def test_a_schema_change_within_a_batch_applies_the_rows_before_it_first(tmp_path):
    target = adapters.open_target(f"sqlite:///{tmp_path / 'replica.db'}")

    def schema(version, *columns, renames=None):
        table = TableSchema("licences", tuple(Column(c, "TEXT") for c in ("id", *columns)), ("id",))
        return record_event(SchemaChanged, AGENCY, "schema", version, table=table.to_dict(), renames=renames)

    events = [schema(1, "a"), created("1", a="x"), updated("1", 2, a="y"), created("2", a="z"),
              schema(2, "b", renames={"a": "b"}), updated("1", 3, b="renamed"), deleted("2", 2),
              schema(3, "b", "c"), created("3", b="q", c="new"), updated("1", 4, c="added")]
    try:
        stats = apply_events(target, "replica", list(enumerate(events, 1)), 0, len(events))
    finally:
        target.close()
    reader = adapters.open_reader(f"sqlite:///{tmp_path / 'replica.db'}")
    rows = list(reader.rows("licences"))
    reader.close()
    assert rows == [{"id": "1", "b": "renamed", "c": "added"}, {"id": "3", "b": "q", "c": "new"}]
    assert (stats.events, stats.schema_changes, stats.position) == (10, 3, 10)


def test_rows_with_a_null_key_value_are_updated_and_deleted_by_is_null(tmp_path):
    url = f"sqlite:///{tmp_path / 'replica.db'}"
    table = TableSchema("licences", (Column("id", "TEXT"), Column("a", "TEXT")), ())
    schema = record_event(SchemaChanged, AGENCY, "schema", 1, table=table.to_dict(), renames=None)
    batches = [[schema, created(None, a="x"), created("2", a="z")],
               [updated(None, 2, a="y"), deleted("2", 2)]]
    target = adapters.open_target(url)
    try:
        position = 0
        for events in batches:
            apply_events(target, "replica", list(enumerate(events, position + 1)), position, position + len(events))
            position += len(events)
    finally:
        target.close()
    reader = adapters.open_reader(url)
    try:
        assert list(reader.rows("licences")) == [{"id": None, "a": "y"}]
    finally:
        reader.close()
