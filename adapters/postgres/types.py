"""PostgreSQL's text-format values, as pgoutput sends them and cursors read them.

``Types.parser`` gives the function that turns such text into an exact Python
value for a type (looked up once per type OID), and ``to_text`` turns a
Python value back into text PostgreSQL accepts as input.  Both directions
assume the session settings in ``SESSION_OPTIONS``.

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
import uuid
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any, Callable, Sequence

SESSION_OPTIONS = ("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=iso_8601 "
                   "-c extra_float_digits=3 -c bytea_output=hex")


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
    if type(value) is str or type(value) is int:  # most values: skip the checks below
        return str(value)
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


# -- type lookups ---------------------------------------------------------------

class Types:
    """Parsers of text values by type OID, and type names, looked up once in the catalog of
    the connection ``db`` returns."""

    def __init__(self, db: Callable[[], Any]):
        self._db = db
        self._parsers: dict[int, Parser] = dict(SCALARS)
        self._names: dict[tuple[int, int], str] = {}

    def parser(self, oid: int) -> Parser:
        """The parser of values of the type ``oid`` (domains as their base type; unknown types: ``text``)."""
        if oid not in self._parsers:
            with self._db().cursor() as cur:
                cur.execute("SELECT typtype, typbasetype, typelem, typdelim, typcategory FROM pg_type WHERE oid = %s",
                            (oid,))
                typtype, base, element, delimiter, category = cur.fetchone() or ("b", 0, 0, ",", "U")
            if typtype == "d":
                self._parsers[oid] = self.parser(base)
            elif category == "A" and element:
                self._parsers[oid] = array_parser(self.parser(element), delimiter)
            else:
                self._parsers[oid] = text
        return self._parsers[oid]

    def name(self, oid: int, typmod: int) -> str:
        """The type's name as ``format_type`` gives it, e.g. ``numeric(12,2)``."""
        if (oid, typmod) not in self._names:
            with self._db().cursor() as cur:
                cur.execute("SELECT format_type(%s, %s)", (oid, None if typmod < 0 else typmod))
                self._names[(oid, typmod)] = cur.fetchone()[0]
        return self._names[(oid, typmod)]

    def rows(self, columns: Sequence[Any], values: Sequence[Sequence[str | None]]) -> list[dict[str, Any]]:
        """The row dicts of ``values``, one list of text values (or None) per column of ``columns``
        (each with ``name`` and ``type_oid``), converted column by column (one parser per column, none for text)."""
        converted = []
        for column, texts in zip(columns, values):
            parse = self.parser(column.type_oid)
            if parse is text:
                converted.append(texts)
            elif None in texts:
                converted.append([None if v is None else parse(v) for v in texts])
            else:
                converted.append(list(map(parse, texts)))
        names = [c.name for c in columns]
        return [dict(zip(names, row)) for row in zip(*converted)]
