"""The file-drop source's own SQLite database: its tables, and how the
changes logged there are read back.

Row images are stored as JSON arrays of values (much smaller than objects);
``layouts`` names, per file taken, the columns of the old and of the new
images of the changes it logged.  States written by earlier versions hold
JSON objects, in ``rows`` and ``changes``; they are read as they are, and a
table's rows become arrays with the next file taken for it.
"""

from __future__ import annotations

import functools
import json
import sqlite3
from datetime import datetime
from typing import Any, Sequence

from exchange.contracts import changes as ch
from exchange.contracts.changes import TableSchema

STATE_SQL = (
    # The rows of every table as the last file taken held them: key is the JSON array of key values,
    # row the JSON array of all values in the order of the table's schema.
    "CREATE TABLE IF NOT EXISTS rows (tbl TEXT NOT NULL, key TEXT NOT NULL, row TEXT NOT NULL, "
    "digest TEXT NOT NULL, PRIMARY KEY (tbl, key)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS schemas (tbl TEXT PRIMARY KEY, schema TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS changes (id INTEGER PRIMARY KEY AUTOINCREMENT, tbl TEXT NOT NULL, "
    "op TEXT NOT NULL, old TEXT, new TEXT, at TEXT NOT NULL, drop_id INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS taken (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
    "tbl TEXT NOT NULL, size INTEGER NOT NULL, sha256 TEXT NOT NULL, rows INTEGER NOT NULL, "
    "changes INTEGER NOT NULL, at TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS refused (name TEXT PRIMARY KEY, size INTEGER NOT NULL, "
    "mtime_ns INTEGER NOT NULL, line INTEGER, reason TEXT NOT NULL, at TEXT NOT NULL)",
    # The columns (JSON arrays of names) of the old and new images of the changes a file logged.
    "CREATE TABLE IF NOT EXISTS layouts (drop_id INTEGER PRIMARY KEY, old TEXT, new TEXT)",
)


def columns_text(columns: Sequence[str]) -> str:
    """The JSON text ``layouts`` holds for ``columns``."""
    return json.dumps(list(columns), ensure_ascii=False, separators=(",", ":"))


def read_changes(db: sqlite3.Connection, after: int, limit: int) -> list[ch.Change]:
    """At most ``limit`` logged changes with position > ``after``, in order."""
    rows = db.execute(
        "SELECT c.id, c.tbl, c.op, c.old, c.new, c.at, c.drop_id, t.name, l.old, l.new FROM changes c "
        "LEFT JOIN taken t ON t.id = c.drop_id LEFT JOIN layouts l ON l.drop_id = c.drop_id "
        "WHERE c.id > ? ORDER BY c.id LIMIT ?", (after, limit))
    return [_change(*row) for row in rows]


def _change(position: int, table: str, op: str, old: str | None, new: str | None, at: str, taken: int,
            name: str | None, old_columns: str | None, new_columns: str | None) -> ch.Change:
    commit_time = datetime.fromisoformat(at)
    txid = f"{taken}:{name}" if name else str(taken)  # the drop file the change came from
    if op == ch.SCHEMA:
        return ch.Change(position, table, op, commit_time=commit_time, txid=txid,
                         schema=TableSchema.from_dict(json.loads(new)))
    return ch.Change(position, table, op, before=_image(old, old_columns), after=_image(new, new_columns),
                     commit_time=commit_time, txid=txid)


@functools.lru_cache(maxsize=64)
def _columns(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _image(text: str | None, columns: str | None) -> dict[str, Any] | None:
    """A row image stored as a JSON array of values in the order ``columns`` names (or as an object)."""
    if not text:
        return None
    value = json.loads(text)
    return value if isinstance(value, dict) else dict(zip(_columns(columns or "[]"), value))
