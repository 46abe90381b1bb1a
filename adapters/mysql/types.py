"""MariaDB/MySQL values as capture emits them, the same whether a row was read by
a snapshot (PyMySQL, text protocol) or decoded from the row binlog
(mysql-replication).

==================================  ===========================================
TINYINT ... BIGINT [UNSIGNED]       int (BOOLEAN is TINYINT(1): 0 or 1)
DECIMAL / NUMERIC                   decimal.Decimal, every digit kept
FLOAT                               float, the shortest decimal that reads back
                                    as the stored single-precision value (0.1)
DOUBLE                              float
CHAR, VARCHAR, TEXT, ENUM           str (utf8mb4 in full, emoji included)
SET                                 str, members comma-separated in declaration
                                    order, '' for the empty set (as SELECT shows)
BINARY, VARBINARY, BLOB             bytes
BIT(n)                              int
DATE                                datetime.date
DATETIME(n)                         naive datetime.datetime (DATETIME carries no
                                    time zone: it is what the application wrote)
TIMESTAMP(n)                        aware datetime.datetime in UTC
TIME(n)                             datetime.time when in 00:00:00 .. 23:59:59.999999;
                                    other durations as the server's text
                                    ('-838:59:59', '25:00:00.5')
YEAR                                int (0 for the zero year)
JSON                                the JSON text (MariaDB keeps it as written;
                                    MySQL's binary JSON is written as MySQL
                                    prints it)
zero dates ('0000-00-00', zero      None: such values name no date, and the
months or days, the zero TIMESTAMP) binlog does not carry them apart from NULL
==================================  ===========================================
"""

from __future__ import annotations

import json
import struct
from datetime import datetime, time, timedelta, timezone
from typing import Any, Callable

from adapters.mysql.catalog import CatalogColumn

Convert = Callable[[Any], Any]


def _float32(value: float) -> float:
    """The shortest decimal that is the same single-precision float."""
    stored = struct.pack("<f", value)
    for digits in range(6, 10):
        candidate = float(f"{value:.{digits}g}")
        if struct.pack("<f", candidate) == stored:
            return candidate
    return value


def _duration(value: timedelta) -> time | str:
    """A TIME value: a time of day when it is one, else the server's text for it."""
    if timedelta(0) <= value < timedelta(days=1):
        return (datetime.min + value).time()
    sign = "-" if value < timedelta(0) else ""
    total = abs(value)
    seconds, micro = divmod(total.days * 86400 * 1_000_000 + total.seconds * 1_000_000 + total.microseconds,
                            1_000_000)
    hours, rest = divmod(seconds, 3600)
    text = f"{sign}{hours:02d}:{rest // 60:02d}:{rest % 60:02d}"
    return text + f".{micro:06d}".rstrip("0") if micro else text


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=timezone.utc)


def _bits(value: str) -> int:
    return int(value, 2) if value else 0


def _set_members(column: CatalogColumn) -> Convert:
    order = {m.lower(): i for i, m in enumerate(column.members)}

    def convert(value: Any) -> str:
        if isinstance(value, (set, frozenset)):
            return ",".join(sorted(value, key=lambda m: order.get(m.lower(), len(order))))
        return value
    return convert


def _binlog_json(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode()
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _binlog_timestamp(value: datetime) -> datetime | None:
    return None if value == datetime(1970, 1, 1) else _utc(value)


def _binlog_year(value: int) -> int:
    return 0 if value == 1900 else value  # the zero year is stored as 0 and decoded as 1900 + 0


def _binlog_text(value: Any) -> Any:
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else value


def _binlog_bytes(value: Any) -> Any:
    return value.encode("latin-1") if isinstance(value, str) else value


def from_binlog(column: CatalogColumn) -> Convert:
    """How a value mysql-replication decoded for ``column`` becomes the emitted value."""
    kind = column.data_type
    if kind == "float":
        return _float32
    if kind == "bit":
        return _bits
    if kind == "set":
        return _set_members(column)
    if kind == "year":
        return _binlog_year
    if kind == "timestamp":
        return _binlog_timestamp
    if kind == "time":
        return _duration
    if kind == "json":
        return _binlog_json
    if column.binary:
        return _binlog_bytes
    if kind in ("char", "varchar", "tinytext", "text", "mediumtext", "longtext", "enum"):
        return _binlog_text
    return _same


def _same(value: Any) -> Any:
    return value


def _zero_to_none(convert: Convert) -> Convert:
    def parse(value: Any) -> Any:
        return None if isinstance(value, str) else convert(value)  # PyMySQL leaves zero dates as text
    return parse


def _select_timestamp(value: datetime) -> datetime:
    return _utc(value)


def _select_bits(value: bytes) -> int:
    return int.from_bytes(value, "big")


def _select_json(value: Any) -> str:
    return bytes(value).decode() if isinstance(value, (bytes, bytearray)) else value


def from_select(column: CatalogColumn) -> Convert:
    """How a value PyMySQL read for ``column`` (session time zone UTC) becomes the emitted value."""
    kind = column.data_type
    if kind == "bit":
        return _select_bits
    if kind == "timestamp":
        return _zero_to_none(_select_timestamp)
    if kind in ("date", "datetime"):
        return _zero_to_none(_same)
    if kind == "time":
        return _duration
    if kind == "json":
        return _select_json
    if kind == "set":
        return _same
    return _same


def converters(columns: tuple[CatalogColumn, ...], binlog: bool) -> dict[str, Convert]:
    """Column name -> converter, for the binlog or for snapshot reads."""
    make = from_binlog if binlog else from_select
    return {c.name: make(c) for c in columns}


def convert_row(convert: dict[str, Convert], row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with every value converted (None stays None)."""
    return {name: None if value is None else convert.get(name, _same)(value) for name, value in row.items()}


def datetime_of(seconds: int) -> datetime:
    """A binlog event's timestamp as an aware datetime."""
    return datetime.fromtimestamp(seconds, timezone.utc)

