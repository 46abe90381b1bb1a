"""pgoutput messages (protocol version 1) and PostgreSQL text-format values.

``decode`` turns one logical replication payload into a message object.
Tuple values stay in PostgreSQL's text output form; ``parser`` gives the
function that turns such text into an exact Python value for a type, and
``to_text`` turns a Python value back into text PostgreSQL accepts as input.
Both directions assume the session settings in ``SESSION_OPTIONS``.

Values by type (anything not listed stays the text PostgreSQL prints):

==========================  =============================================
smallint, integer, bigint   int
numeric                     decimal.Decimal
real, double precision      float
boolean                     bool
text, varchar, char, name   str
bytea                       bytes
date                        datetime.date (infinity, BC dates: text)
time                        datetime.time (24:00:00: text)
timestamp                   naive datetime.datetime (infinity, BC: text)
timestamp with time zone    aware datetime.datetime in UTC
interval                    ISO 8601 text, e.g. "P1Y2M3DT4H5M6S"
json, jsonb                 the JSON text (jsonb's is canonical)
uuid                        uuid.UUID
arrays of the above         lists (nested for more dimensions)
==========================  =============================================

Intervals stay text because a timedelta cannot hold months and merges days
with hours ('1 day' and '24 hours' are different intervals); JSON stays text
because parsing loses the json type's key order, duplicates and spacing.
Array lower bounds other than 1 are dropped.
"""

from __future__ import annotations

import json
import math
import struct
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable

SESSION_OPTIONS = ("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 "
                   "-c extra_float_digits=3 -c bytea_output=hex")
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class _Unchanged:
    """An unchanged TOASTed value: pgoutput does not send it again."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()


# -- messages -----------------------------------------------------------------

@dataclass(frozen=True)
class Begin:
    final_lsn: int  # the commit record's LSN
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int  # just after the commit record
    commit_time: datetime


@dataclass(frozen=True)
class RelationColumn:
    name: str
    key: bool  # part of the replica identity
    type_oid: int
    typmod: int


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Insert:
    oid: int
    new: tuple[Any, ...]  # str (text form), None (NULL) or UNCHANGED per column


@dataclass(frozen=True)
class Update:
    oid: int
    old: tuple[Any, ...] | None  # sent only when the identity changed ('K') or is FULL ('O')
    new: tuple[Any, ...]


@dataclass(frozen=True)
class Delete:
    oid: int
    old: tuple[Any, ...]


@dataclass(frozen=True)
class Truncate:
    oids: tuple[int, ...]


@dataclass(frozen=True)
class Message:
    """A logical decoding message (pg_logical_emit_message)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at:end].decode()
        self.at = end + 1
        return text

    def raw(self, n: int) -> bytes:
        self.at += n
        return self.data[self.at - n:self.at]

    def tuple(self) -> tuple[Any, ...]:
        """TupleData: the hot path, so with plain indexing."""
        data, at = self.data, self.at
        (count,) = _INT16.unpack_from(data, at)
        at += 2
        values: list[Any] = []
        for _ in range(count):
            kind = data[at]
            at += 1
            if kind == 0x74:  # 't': text
                (length,) = _INT32.unpack_from(data, at)
                at += 4 + length
                values.append(data[at - length:at].decode())
            elif kind == 0x6E:  # 'n': null
                values.append(None)
            elif kind == 0x75:  # 'u': unchanged TOASTed value
                values.append(UNCHANGED)
            else:
                raise ValueError(f"unsupported pgoutput tuple value kind {chr(kind)!r}")
        self.at = at
        return tuple(values)


def _timestamp(microseconds: int) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=microseconds)


def decode(payload: bytes) -> object | None:
    """The message in one pgoutput payload; None for kinds we do not use (Origin, Type)."""
    r = _Reader(payload)
    kind = r.take("!c")
    if kind == b"B":
        lsn, at, xid = r.take("!QqI")
        return Begin(lsn, _timestamp(at), xid)
    if kind == b"C":
        _flags, lsn, end, at = r.take("!bQQq")
        return Commit(lsn, end, _timestamp(at))
    if kind == b"R":
        oid = r.take("!I")
        namespace, name, identity = r.string(), r.string(), r.take("!c").decode()
        columns = []
        for _ in range(r.take("!h")):
            flags = r.take("!b")
            column_name = r.string()
            type_oid, typmod = r.take("!Ii")
            columns.append(RelationColumn(column_name, bool(flags & 1), type_oid, typmod))
        return Relation(oid, namespace or "pg_catalog", name, identity, tuple(columns))
    if kind == b"I":
        oid = r.take("!I")
        r.take("!c")  # 'N'
        return Insert(oid, r.tuple())
    if kind == b"U":
        oid = r.take("!I")
        marker = r.take("!c")
        old = None
        if marker in (b"K", b"O"):
            old = r.tuple()
            marker = r.take("!c")
        return Update(oid, old, r.tuple())
    if kind == b"D":
        oid = r.take("!I")
        r.take("!c")  # 'K' or 'O'
        return Delete(oid, r.tuple())
    if kind == b"T":
        count, _options = r.take("!Ib")
        return Truncate(tuple(r.take("!I") for _ in range(count)))
    if kind == b"M":
        flags, lsn = r.take("!bQ")
        prefix = r.string()
        return Message(bool(flags & 1), lsn, prefix, r.raw(r.take("!i")))
    if kind in (b"O", b"Y"):
        return None
    raise ValueError(f"unsupported pgoutput message {kind!r}")


# -- text values -> Python ------------------------------------------------------

Parser = Callable[[str], Any]


def _or_text(convert: Parser) -> Parser:
    """``convert``, keeping the text for values Python cannot hold (infinity, BC, 24:00)."""
    def parse(text: str) -> Any:
        try:
            return convert(text)
        except ValueError:
            return text
    return parse


def _timestamptz(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(timezone.utc)


def _bytea(text: str) -> bytes:
    return bytes.fromhex(text[2:])


SCALARS: dict[int, Parser] = {
    16: lambda t: t == "t",  # bool
    17: _bytea,
    20: int, 21: int, 23: int, 26: int,  # int8, int2, int4, oid
    700: float, 701: float,
    1082: _or_text(date.fromisoformat),
    1083: _or_text(time.fromisoformat),
    1114: _or_text(datetime.fromisoformat),
    1184: _or_text(_timestamptz),
    1700: Decimal,
    2950: uuid.UUID,
}


def text(value: str) -> str:
    return value


def array_parser(element: Parser, delimiter: str = ",") -> Parser:
    """A parser for arrays (any number of dimensions) of ``element`` values."""
    def parse(literal: str) -> list[Any]:
        if literal.startswith("["):  # explicit bounds, e.g. "[0:1]={1,2}"
            literal = literal[literal.index("=") + 1:]
        return _parse_array(literal, 0, element, delimiter)[0]
    return parse


def _parse_array(s: str, i: int, element: Parser, delimiter: str) -> tuple[list[Any], int]:
    """The array starting at s[i] == '{' and the index just after its '}'."""
    items: list[Any] = []
    i += 1
    while s[i] != "}":
        if s[i] == "{":
            item, i = _parse_array(s, i, element, delimiter)
            items.append(item)
        elif s[i] == '"':
            chars, i = [], i + 1
            while s[i] != '"':
                if s[i] == "\\":
                    i += 1
                chars.append(s[i])
                i += 1
            items.append(element("".join(chars)))
            i += 1
        else:
            end = i
            while s[end] not in (delimiter, "}"):
                end += 1
            word = s[i:end].strip()
            items.append(None if word.upper() == "NULL" else element(word))
            i = end
        if s[i] == delimiter:
            i += 1
    return items, i + 1


# -- Python -> text values ----------------------------------------------------

def to_text(value: Any) -> str | None:
    """PostgreSQL input text for a Python value (None for NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value).hex()
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return _array_text(value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _array_text(items: list[Any] | tuple[Any, ...]) -> str:
    parts = []
    for item in items:
        if item is None:
            parts.append("NULL")
        elif isinstance(item, (list, tuple)):
            parts.append(_array_text(item))
        else:
            parts.append('"' + to_text(item).replace("\\", "\\\\").replace('"', '\\"') + '"')
    return "{" + ",".join(parts) + "}"


# -- LSNs -----------------------------------------------------------------------

def lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def lsn_int(text_lsn: str) -> int:
    high, low = text_lsn.split("/")
    return (int(high, 16) << 32) | int(low, 16)
