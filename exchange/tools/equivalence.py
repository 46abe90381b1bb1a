"""Values that ``exchange verify`` takes as equal across kinds of database (docs/mariadb.md,
"Type equivalences in replay and verify").

Each row is brought to one normal form before it is compared and
checksummed: timestamps as aware UTC datetimes (one without a zone is taken
as UTC), decimals by value (integral ones as int), lists (arrays) as
canonical JSON text; in a column either side declares JSON, JSON text as
canonical JSON text; in a column either side declares boolean, 0 and 1 as
False and True.  Floats stay apart from ints and decimals.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Callable, Iterable

from exchange.contracts.events import canonical_json

Normal = Callable[[Any], Any]


def value(v: Any) -> Any:
    """``v`` in its normal form, whatever the column's type."""
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc) if v.tzinfo is not None else v.replace(tzinfo=timezone.utc)
    if isinstance(v, Decimal) and v.is_finite():
        return int(v) if v == v.to_integral_value() else v.normalize()
    if isinstance(v, (list, tuple)):
        return canonical_json(list(v))
    return v


def column(declared: Iterable[str]) -> Normal:
    """The normal form of values in a column declared of the types ``declared`` (one per side)."""
    lowered = [d.lower() for d in declared]
    as_json = any("json" in d for d in lowered)
    as_bool = any(d.startswith("bool") or d.startswith("tinyint(1)") for d in lowered)

    def normal(v: Any) -> Any:
        if as_bool and type(v) is int and v in (0, 1):
            return bool(v)
        if as_json and isinstance(v, str):
            try:
                return canonical_json(json.loads(v))
            except ValueError:
                return v
        return value(v)

    return normal


def row(r: dict[str, Any], normals: dict[str, Normal]) -> dict[str, Any]:
    """``r`` with each value in the normal form of its column."""
    return {k: None if v is None else normals.get(k, value)(v) for k, v in r.items()}
