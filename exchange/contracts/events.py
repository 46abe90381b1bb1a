"""Versioned record events: what a node stores and the hub receives.

Each captured source row is an aggregate whose id is uuid5(agency, resource,
key) and whose versions run 1, 2, 3 ... without gaps.  Schema changes and
truncations are events of a per-table schema aggregate.  Topics are fixed strings so that
moving a module never breaks stored events.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any

import orjson
from eventsourcing.domain import DomainEvent
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic, register_topic

from exchange.contracts import fastjson

EVENT_SCHEMA_VERSION = 1
_NAMESPACE = uuid.UUID("5b0c8a52-3d1e-4c1e-9a57-0d6a3c2f8e11")
SCHEMA_KEY = {"__schema__": True}


def record_id(agency: str, resource: str, key: dict[str, Any]) -> uuid.UUID:
    """The aggregate id of one source row."""
    # uuid.uuid5 of the canonical JSON of [agency, resource, key], from its bytes
    digest = hashlib.sha1(_id_prefix(agency, resource) + _canonical_bytes(key) + b"]").digest()
    return uuid.UUID(bytes=digest[:16], version=5)


@functools.lru_cache(maxsize=1024)
def _id_prefix(agency: str, resource: str) -> bytes:
    """The namespace and the canonical JSON of ``[agency, resource, key]`` up to the key (a list's
    canonical JSON is its items' joined by commas)."""
    return _NAMESPACE.bytes + _canonical_bytes([agency, resource])[:-1] + b","


def schema_id(agency: str, resource: str) -> uuid.UUID:
    """The aggregate id of one table's schema history."""
    return record_id(agency, resource, SCHEMA_KEY)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and a fixed rendering of non-JSON scalars."""
    encoded = _orjson_canonical(value)
    return encoded.decode() if encoded is not None else _json_canonical(value)


# Exact types of the values of an object orjson writes as json does without a ``default`` (an integer
# beyond 64 bits and a lone surrogate it refuses): what most keys and many rows hold.
_FLAT = frozenset({str, int, type(None)})


def _flat_json(value: Any, option: int = 0) -> bytes | None:
    """``value``, a dict of str, int and None values, as orjson writes it; None for any other value."""
    if type(value) is dict and _FLAT.issuperset(map(type, value.values())):
        try:
            return orjson.dumps(value, option=option)
        except orjson.JSONEncodeError:
            pass
    return None


def _canonical_bytes(value: Any) -> bytes:
    """``canonical_json(value)`` as UTF-8."""
    encoded = _flat_json(value, orjson.OPT_SORT_KEYS)
    if encoded is not None:
        return encoded
    encoded = _orjson_canonical(value)
    return encoded if encoded is not None else _json_canonical(value).encode()


def _orjson_canonical(value: Any) -> bytes | None:
    if not fastjson.plain_value(value, fastjson.WITH_UUID):
        return None
    return fastjson.dumps(value, _plain, orjson.OPT_SORT_KEYS)


def _json_canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_plain)


def _plain(o: Any) -> Any:
    if isinstance(o, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(o)).decode()}
    if isinstance(o, (datetime, date, time)):
        return o.isoformat()
    return str(o)


def image_hash(row: dict[str, Any]) -> str:
    """Digest of a row image; null columns are left out so that adding a
    nullable column to a table does not change the digest of existing rows."""
    present = {k: v for k, v in row.items() if v is not None} if None in row.values() else row
    return hashlib.sha256(_canonical_bytes(present)).hexdigest()[:32]


@dataclass(frozen=True)
class RecordEvent(DomainEvent):
    """Common fields of every record event (docs/design.md §3)."""

    agency: str
    resource: str
    key: dict[str, Any]
    position: int  # source position (change id, LSN, binlog offset)
    commit_time: datetime | None
    txid: str
    schema_version: int
    event_schema_version: int


@dataclass(frozen=True)
class RecordCreated(RecordEvent):
    TOPIC = "exchange.record:Created"
    row: dict[str, Any]


@dataclass(frozen=True)
class RecordUpdated(RecordEvent):
    TOPIC = "exchange.record:Updated"
    changed: dict[str, Any]  # changed columns only, new values


@dataclass(frozen=True)
class RecordDeleted(RecordEvent):
    TOPIC = "exchange.record:Deleted"


@dataclass(frozen=True)
class SchemaChanged(RecordEvent):
    TOPIC = "exchange.schema:Changed"
    table: dict[str, Any]  # TableSchema.to_dict()
    # Columns of the previous schema renamed in this one (old -> new name), their values kept.
    # Events stored before renames were recorded lack the field and read as None.
    renames: dict[str, str] | None = None


@dataclass(frozen=True)
class TableTruncated(RecordEvent):
    """The table was emptied at the source; a RecordDeleted of each of its live records follows."""

    TOPIC = "exchange.schema:Truncated"


for _cls in (RecordCreated, RecordUpdated, RecordDeleted, SchemaChanged, TableTruncated):
    register_topic(_cls.TOPIC, _cls)  # so stored topics resolve without an import path


class BytesAsBase64(Transcoding):
    type = bytes
    name = "bytes_b64"

    def encode(self, obj: bytes) -> str:
        return base64.b64encode(obj).decode()

    def decode(self, data: str) -> bytes:
        return base64.b64decode(data)


class DateAsISO(Transcoding):
    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class TimeAsISO(Transcoding):
    type = time
    name = "time_iso"

    def encode(self, obj: time) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> time:
        return time.fromisoformat(data)


class FastJSONTranscoder(JSONTranscoder):
    """The library's JSON transcoder, writing the same bytes by orjson where it can (exchange.contracts.fastjson).

    The last few datetimes it wrote are remembered by identity: the events of
    one capture batch share their timestamp, and a snapshot's rows their commit time."""

    _REMEMBERED = 4

    def __init__(self) -> None:
        super().__init__()
        self._datetimes: dict[int, tuple[datetime, dict[str, Any]]] = {}  # the object is kept: its id stays its own

    def _encode_obj(self, o: Any) -> dict[str, Any]:
        if type(o) is not datetime:
            return super()._encode_obj(o)
        found = self._datetimes.get(id(o))
        if found is not None and found[0] is o:
            return found[1]
        encoded = super()._encode_obj(o)
        if len(self._datetimes) >= self._REMEMBERED:
            self._datetimes.clear()
        self._datetimes[id(o)] = (o, encoded)
        return encoded

    def encode(self, obj: Any) -> bytes:
        encoded = _flat_json(obj)
        if encoded is not None:
            return encoded
        if fastjson.plain_value(obj):
            encoded = fastjson.dumps(obj, self._encode_obj)
            if encoded is not None:
                return encoded
        return super().encode(obj)


# How values JSON cannot hold are written in stored states ({"_type_": name, "_data_": ...}).
TRANSCODINGS: tuple[Transcoding, ...] = (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO(), DateAsISO(), TimeAsISO(),
                                         BytesAsBase64())


_HEAD = ("timestamp", "agency", "resource", "key")
_MIDDLE = ("position", "commit_time", "txid", "schema_version", "event_schema_version")


def _row_events() -> dict[type, str | None]:
    """Row event classes whose state is the common fields in the order of ``_HEAD`` and ``_MIDDLE``,
    then at most one field of their own: its name (None without one)."""
    found: dict[type, str | None] = {}
    for cls in (RecordCreated, RecordUpdated, RecordDeleted):
        names = [f.name for f in dataclasses.fields(cls)][2:]  # after originator_id and version
        own = names[len(_HEAD) + len(_MIDDLE):]
        if names[:len(_HEAD) + len(_MIDDLE)] == [*_HEAD, *_MIDDLE] and len(own) <= 1 and \
                getattr(cls, "class_version", 1) == 1:
            found[cls] = own[0] if own else None
    return found


class RecordMapper(Mapper):
    """The library's mapper, writing the same bytes quicker for row events: the fields the events of
    a batch share (timestamp, agency, table, commit time, ...) are encoded once, and each event's key,
    position and row are joined to them (JSON of an object is its members' JSON, joined)."""

    _ROW_EVENTS = _row_events()

    def __init__(self, transcoder: Any):
        super().__init__(transcoder=transcoder)
        self._head: tuple[Any, ...] = (object(),)  # the last shared fields and their bytes
        self._middle: tuple[Any, ...] = (object(),)

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        return self.to_stored_record_event(domain_event)

    def to_stored_record_event(self, domain_event: Any, key_json: bytes | None = None) -> StoredEvent:
        """As ``to_stored_event``; ``key_json``: the event's key as the transcoder encodes it, when known."""
        position = getattr(domain_event, "position", None)
        if type(domain_event) not in self._ROW_EVENTS or self.compressor or self.cipher or \
                type(position) is not int or not -2 ** 63 <= position < 2 ** 63:
            return super().to_stored_event(domain_event)
        e = domain_event
        own = self._ROW_EVENTS[type(e)]
        own_value = getattr(e, own) if own else None
        if own and type(own_value) is not dict:
            return super().to_stored_event(domain_event)
        head, middle = self._head, self._middle
        # datetimes by identity (equal ones may print differently), the rest by type and value
        if not (head[0] is e.timestamp and head[1] == e.agency and head[2] == e.resource
                and type(e.agency) is str and type(e.resource) is str):
            encoded = self.transcoder.encode({"timestamp": e.timestamp, "agency": e.agency, "resource": e.resource})
            head = self._head = (e.timestamp, e.agency, e.resource, encoded[:-1] + b',"key":')
        shared = (e.txid, e.schema_version, e.event_schema_version, own)
        kinds = (type(e.txid), type(e.schema_version), type(e.event_schema_version))
        if not (middle[0] is e.commit_time and middle[1] == shared and middle[2] == kinds):
            encoded = self.transcoder.encode(dict(zip(_MIDDLE[1:], (e.commit_time, *shared[:3]))))
            middle = self._middle = (e.commit_time, shared, kinds,
                                     b"," + encoded[1:-1] + (f',"{own}":'.encode() if own else b""))
        if key_json is None:
            key_json = self.transcoder.encode(e.key)
        state = b"".join((head[3], key_json, b',"position":', str(position).encode(),
                          middle[3], self.transcoder.encode(own_value) if own else b"", b"}"))
        return StoredEvent(originator_id=e.originator_id, originator_version=e.originator_version,
                           topic=get_topic(type(e)), state=state)


def make_mapper() -> Mapper:
    """The mapper every store uses to turn record events into stored bytes."""
    transcoder = FastJSONTranscoder()
    for transcoding in TRANSCODINGS:
        transcoder.register(transcoding)
    return RecordMapper(transcoder)
