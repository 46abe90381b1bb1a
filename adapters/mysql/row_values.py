"""Values written to and read from MariaDB/MySQL, so they come back as they went in (docs/mariadb.md).

Written: aware timestamps as UTC (``datetime(6)`` holds no zone), lists and
dicts as JSON text, UUIDs as text.  Read (``parser``): ``tinyint(1)`` as
bool, ``datetime``/``timestamp`` as aware UTC datetimes, ``time`` as
``datetime.time`` (durations beyond a day as MariaDB's text), the rest as
PyMySQL gives them (int, Decimal, float, str, bytes, date).
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable
from uuid import UUID

from exchange.contracts.errors import InvalidInput

Parser = Callable[[Any], Any]
BOUND_AS_IS = frozenset({str, int, bool, type(None), bytes, Decimal, date})  # most values: bound as they are


def to_param(value: Any) -> Any:
    """``value`` as PyMySQL binds it into a column of the type ``target_types`` chose for it."""
    if type(value) in BOUND_AS_IS:
        return value
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, time) and value.tzinfo is not None:
        return value.isoformat()
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidInput(f"MariaDB/MySQL cannot store the floating-point value {value!r}")
    return value


def _utc(value: Any) -> Any:
    return value.replace(tzinfo=timezone.utc) if isinstance(value, datetime) else value


def _time(value: Any) -> Any:
    if isinstance(value, timedelta) and timedelta(0) <= value < timedelta(days=1):
        return (datetime.min + value).time()
    return str(value) if isinstance(value, timedelta) else value


def _keep(value: Any) -> Any:
    return value


def parser(type_: str) -> Parser:
    """The function making a PyMySQL value of a column of ``type_`` (as ``tables.load_table`` reports it)
    the Python value capture produces."""
    if type_.startswith("tinyint(1)"):
        return bool
    if type_.startswith(("datetime", "timestamp")):
        return _utc
    return _time if type_.startswith("time") else _keep
