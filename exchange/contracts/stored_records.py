"""Stored record events read straight into what applying them needs.

Replay and replicas apply many thousand events a second.  Turning each
stored state into a domain event (a JSON object hook on every object, then
a frozen dataclass) costs more than applying it, so the states of record
events are decoded here into ``Record``s instead: only the fields a row
operation needs, with the values the mapper would give.  A state the fast
decoder does not take (a NaN written by Python's JSON, say) is read by the
mapper's transcoder, with the same result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from exchange.contracts.events import (
    TRANSCODINGS,
    RecordCreated,
    RecordDeleted,
    RecordEvent,
    RecordUpdated,
    make_mapper,
)

CREATED, UPDATED, DELETED = RecordCreated.TOPIC, RecordUpdated.TOPIC, RecordDeleted.TOPIC
RECORD_TOPICS = frozenset((CREATED, UPDATED, DELETED))
_CONTAINERS = frozenset((dict, list))
_MARKER = b'"_type_"'  # the name that marks a transcoded object in a stored state
_TRANSCODINGS = {t.name: t for t in TRANSCODINGS}
_DATETIME = "datetime_iso"  # the transcoding of the event's own times


class Record(msgspec.Struct, frozen=True, gc=False):
    """One record event as a row operation: ``kind`` is its topic, ``values`` the
    full row (created), the changed columns (updated) or None (deleted)."""

    kind: str
    resource: str
    key: dict[str, Any]
    values: dict[str, Any] | None
    position: int
    commit_time: datetime | None


class _Transcoded(msgspec.Struct, rename={"name": "_type_", "data": "_data_"}):
    name: str
    data: Any


class _Stamp(msgspec.Struct, rename={"name": "_type_", "time": "_data_"}):
    name: str
    time: datetime  # read by msgspec, as datetime.fromisoformat reads what isoformat wrote


class _State(msgspec.Struct):
    resource: str
    key: dict[str, Any]
    position: int
    commit_time: _Stamp | None
    timestamp: _Stamp | None = None
    row: dict[str, Any] | None = None
    changed: dict[str, Any] | None = None


_DECODER = msgspec.json.Decoder(_State)
_TRANSCODER = make_mapper().transcoder


def decode_record(topic: str, state: bytes) -> Record:
    """The ``Record`` of a stored record event (``topic`` one of ``RECORD_TOPICS``, ``state`` in plaintext)."""
    try:
        fields = _DECODER.decode(state)
        key, stamp = fields.key, fields.commit_time
        values = fields.row if topic == CREATED else fields.changed if topic == UPDATED else None
        # Every transcoded object carries the marker (text may add more, which only costs the slow way):
        # when the count is that of the event's own times, key and row hold none and are taken as they are.
        if state.count(_MARKER) != (fields.timestamp is not None) + (stamp is not None):
            key, values = _restored_values(key), None if values is None else _restored_values(values)
        if stamp is not None and stamp.name != _DATETIME:
            raise KeyError(stamp.name)
        return Record(topic, fields.resource, key, values, fields.position, None if stamp is None else stamp.time)
    except (msgspec.MsgspecError, KeyError):  # the transcoder reads it, or names what it cannot read
        return _record(topic, _TRANSCODER.decode(state))


def record_of(event: RecordEvent) -> Record:
    """The ``Record`` of a record event already decoded (created, updated or deleted)."""
    if isinstance(event, RecordCreated):
        topic, values = CREATED, event.row
    elif isinstance(event, RecordUpdated):
        topic, values = UPDATED, event.changed
    else:
        topic, values = DELETED, None
    return Record(topic, event.resource, event.key, values, event.position, event.commit_time)


def _record(topic: str, state: dict[str, Any]) -> Record:
    values = state["row"] if topic == CREATED else state["changed"] if topic == UPDATED else None
    return Record(topic, state["resource"], state["key"], values, state["position"], state["commit_time"])


def _restored_values(values: dict[str, Any]) -> dict[str, Any]:
    if _CONTAINERS.isdisjoint(map(type, values.values())):
        return values  # scalars only, the usual row: nothing was transcoded
    return {name: _restored(value) for name, value in values.items()}


def _restored(value: Any) -> Any:
    """``value`` with every transcoded object in it decoded, as the mapper's object hook does."""
    if type(value) is list:
        return [_restored(item) for item in value]
    if type(value) is not dict:
        return value
    value = {name: _restored(item) for name, item in value.items()}
    if len(value) == 2 and "_type_" in value and "_data_" in value:
        return _TRANSCODINGS[value["_type_"]].decode(value["_data_"])
    return value
