"""JSON encoding by orjson where it writes what the json module would.

orjson writes compact JSON, ``ensure_ascii=False`` style, byte for byte
like ``json.dumps`` except for: NaN and infinities (null instead of
``NaN``), floats of magnitude below 1e-4 (``1e-5`` for ``1e-05``, or no
exponent), exact types it renders itself (UUID, enum, dataclass, float
subclasses) and what it refuses (integers beyond 64 bits, keys that are not
strings, lone surrogates, nesting deeper than 254).  ``plain`` says whether
a value holds none of these, so callers use orjson for it and json otherwise.
``loads`` reads with msgspec (orjson reads integers beyond 64 bits as
floats) and falls back to json for what msgspec refuses.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any, Callable, Iterable
from uuid import UUID

import msgspec
import orjson

# Types orjson passes to ``default`` (or renders as json does) with these options.
OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
SCALARS: frozenset[type] = frozenset({str, int, bool, type(None), Decimal, datetime, date, time, bytes})
WITH_UUID = SCALARS | {UUID}  # a UUID is rendered as str(uuid), as a ``default`` returning str() would


def plain(values: Iterable[Any], scalars: frozenset[type] = SCALARS) -> bool:
    """Whether orjson writes these values (an iterable that can be read twice) as json would."""
    kinds = set(map(type, values))
    if kinds <= scalars:
        return True
    for kind in kinds - scalars:
        if kind is float:
            for v in values:
                # NaN and infinities fail both comparisons
                if type(v) is float and not (v == 0.0 or 1e-4 <= abs(v) < math.inf):
                    return False
        elif kind is dict:
            for v in values:
                if type(v) is dict and not plain(v.values(), scalars):
                    return False
        elif kind is list or kind is tuple:
            for v in values:
                if type(v) is kind and not plain(v, scalars):
                    return False
        else:
            return False
    return True


def plain_value(value: Any, scalars: frozenset[type] = SCALARS) -> bool:
    """Whether orjson writes ``value`` as json would."""
    kind = type(value)
    if kind is dict:
        return plain(value.values(), scalars)
    return plain(value if kind is list or kind is tuple else (value,), scalars)


def dumps(value: Any, default: Callable[[Any], Any], option: int = 0) -> bytes | None:
    """``value`` encoded by orjson (with ``OPTIONS``), or None where orjson refuses it."""
    try:
        return orjson.dumps(value, default=default, option=OPTIONS | option)
    except orjson.JSONEncodeError:
        return None


_DECODER = msgspec.json.Decoder()


def loads(data: bytes | str) -> Any:
    """``json.loads(data)``, read by msgspec where it can (it refuses ``NaN``, infinities and lone
    surrogates, which json reads)."""
    try:
        return _DECODER.decode(data)
    except msgspec.DecodeError:
        return json.loads(data)
