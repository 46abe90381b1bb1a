"""Row images as the capture triggers write them: JSON objects of column -> value.

Integers, text and NULL are plain JSON values; REAL and BLOB values are
tagged objects (``{"real": "1.5e+00"}``, ``{"blob": "C0FFEE"}``) because
SQLite's JSON renders reals with 15 digits only and cannot hold blobs.
Decoding gives back exactly what the sqlite3 module returns for the row.
"""

from __future__ import annotations

import json
from typing import Any, Sequence

from adapters.sqlite.dialect import literal, quote

_COLUMNS_PER_OBJECT = 60  # json_object() takes at most 127 arguments, two per column


def _value_sql(ref: str) -> str:
    # ``|| ''`` drops a JSON subtype the writer's value may carry (e.g. from
    # json_array()), so text is always stored as a JSON string.
    return (f"CASE typeof({ref}) WHEN 'text' THEN {ref} || '' "
            f"WHEN 'real' THEN json_object('real', printf('%!.17e', {ref})) "
            f"WHEN 'blob' THEN json_object('blob', hex({ref})) ELSE {ref} END")


def image_sql(columns: Sequence[str], prefix: str = "") -> str:
    """SQL for the JSON image of a row; wide tables become an array of objects."""
    objects = [
        "json_object(" + ", ".join(f"{literal(c)}, {_value_sql(prefix + quote(c))}" for c in chunk) + ")"
        for chunk in (columns[i:i + _COLUMNS_PER_OBJECT] for i in range(0, len(columns), _COLUMNS_PER_OBJECT))
    ]
    return objects[0] if len(objects) == 1 else "json_array(" + ", ".join(objects) + ")"


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return bytes.fromhex(value["blob"]) if "blob" in value else float(value["real"])
    return value


def decode_image(text: str | None) -> dict[str, Any] | None:
    """The row dict of a JSON image written by ``image_sql``."""
    if text is None:
        return None
    data = json.loads(text)
    row: dict[str, Any] = {}
    for part in data if isinstance(data, list) else [data]:
        row.update((name, _decode_value(value)) for name, value in part.items())
    return row
