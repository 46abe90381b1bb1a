"""SQLiteSource: trigger-based capture of a SQLite database.

Capture installs AFTER INSERT/UPDATE/DELETE triggers on each captured table.
They append the old and new row images to ``_exchange_changelog`` inside the
application's own transaction, so the log holds exactly the committed
changes, in commit order (SQLite has one writer at a time).  The initial
snapshot is written into the same log, chunk by chunk, each chunk in a write
transaction of its own: serialised with the application's writes and after
the triggers exist, it leaves no gap and needs no separate position.

Positions are the change log's ids.  Row images are JSON objects of
column -> value (adapters/sqlite/images.py).

A re-snapshot request writes SNAPSHOT_BEGIN into the log and restarts the
table's snapshot in the same transaction; the pass ends with SNAPSHOT_END
in the transaction of its last chunk.  So the request waits in the log
while no node reads, and the pass resumes from its last chunk.

Limits the application must know:

* ``INSERT OR REPLACE`` removes a conflicting row without firing the delete
  trigger unless the writing connection sets ``PRAGMA recursive_triggers=ON``
  (a replaced row with the same key still arrives as an insert, which the
  node turns into an update).
* ``ALTER TABLE ... DROP COLUMN`` fails while the capture triggers reference
  the column.
* A table rebuilt by hand (create new, copy, drop, rename), or dropped and
  created again, loses its triggers until the next ``read``.

After any change of a table's schema (once captured) the table is read again as a snapshot
pass (``SNAPSHOT_BEGIN``, its rows, ``SNAPSHOT_END``): the node deletes the
records the pass did not find, so rows deleted while the triggers were
missing are deleted too.  A column whose name alone changed (``ALTER TABLE
... RENAME COLUMN``) is reported as renamed, so replicas keep its values.
``DELETE FROM t`` without ``WHERE`` fires the delete trigger for every row.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

from adapters.sqlite.dialect import connect, has_table, key_sql, literal, quote, read_schema, transaction, user_tables
from adapters.sqlite.images import decode_image, image_sql
from exchange.common.urls import sqlite_path
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, SourceNotReady, TableSchema
from exchange.contracts.errors import InvalidInput

CHANGELOG = "_exchange_changelog"
CAPTURE = "_exchange_capture"
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
_TRIGGERS = ((ch.INSERT, "ins", "INSERT"), (ch.UPDATE, "upd", "UPDATE"), (ch.DELETE, "del", "DELETE"))


class SQLiteSource:
    """Trigger-based capture of ``tables`` of the SQLite database at ``url``.

    ``keys`` ({table: [column, ...]}) names the key of tables without a
    primary key (it must be unique; it overrides a declared primary key).  ``snapshot_chunk`` rows are snapshotted
    per ``read`` call.
    """

    def __init__(self, url: str, tables: Sequence[str], keys: dict[str, list[str]] | None = None,
                 snapshot_chunk: int = 1000):
        self.path = sqlite_path(url)
        self.tables = list(tables)
        self.keys = keys or {}
        self.snapshot_chunk = snapshot_chunk
        self._db: sqlite3.Connection | None = None
        self._schema_version: int | None = None  # last seen; None until prepared

    def prepare(self) -> None:
        """Check the tables, create the bookkeeping tables and install the triggers."""
        db = self._open()
        db.execute("PRAGMA journal_mode=WAL")
        self.schemas()  # every table must be capturable before anything is installed
        db.execute(f"CREATE TABLE IF NOT EXISTS {CHANGELOG} (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                   "tbl TEXT NOT NULL, op TEXT NOT NULL, old TEXT, new TEXT, at TEXT NOT NULL)")
        db.execute(f"CREATE TABLE IF NOT EXISTS {CAPTURE} (tbl TEXT PRIMARY KEY, schema TEXT NOT NULL, "
                   "snapshot_after TEXT, snapshot_done INTEGER NOT NULL)")
        if "resnapshot" not in {row[1] for row in db.execute(f"PRAGMA table_info({CAPTURE})")}:
            db.execute(f"ALTER TABLE {CAPTURE} ADD COLUMN resnapshot INTEGER NOT NULL DEFAULT 0")
        self._uninstall_unconfigured()
        self._sync_all()

    def schemas(self) -> dict[str, TableSchema]:
        """The captured tables as they are now."""
        return {table: self._schema(table) for table in self.tables}

    def read(self, after: Position, limit: int) -> list[ch.Change]:
        """Changes with position > ``after``; also follows schema changes and
        advances the snapshot by one chunk.  A source transaction larger than
        ``limit`` is split (SQLite gives no transaction ids)."""
        if self._schema_version is None:
            self.prepare()
        elif self._current_schema_version() != self._schema_version:
            self._sync_all()
        self._snapshot_chunk()
        rows = self._open().execute(
            f"SELECT id, tbl, op, old, new, at FROM {CHANGELOG} WHERE id > ? ORDER BY id LIMIT ?", (after, limit)
        )
        return [_change(*row) for row in rows]

    def pending(self, after: Position) -> int:
        """Change-log rows after ``after`` plus rows the snapshot has still to read."""
        db = self._open()
        if not has_table(db, CHANGELOG):
            raise SourceNotReady(f"capture is not set up in {self.path} yet: start the node")
        logged = db.execute(f"SELECT count(*) FROM {CHANGELOG} WHERE id > ?", (after,)).fetchone()[0]
        return logged + sum(self._unsnapshotted(*row) for row in db.execute(
            f"SELECT tbl, schema, snapshot_after FROM {CAPTURE} WHERE snapshot_done=0").fetchall())

    def acknowledge(self, position: Position) -> None:
        """Prune the change log up to ``position`` (durably stored at the node)."""
        self._open().execute(f"DELETE FROM {CHANGELOG} WHERE id <= ?", (position,))

    def request_resnapshot(self, tables: Sequence[str]) -> None:
        """Write SNAPSHOT_BEGIN of each of ``tables`` into the log and read them again from their first key."""
        unknown = [t for t in tables if t not in self.tables]
        if unknown:
            raise InvalidInput(f"not captured: {', '.join(unknown)}; the captured tables are: {', '.join(self.tables)}")
        db = self._open()
        if not has_table(db, CAPTURE):
            raise SourceNotReady(f"capture is not set up in {self.path} yet: start the node")
        if "resnapshot" not in {row[1] for row in db.execute(f"PRAGMA table_info({CAPTURE})")}:
            self.prepare()  # capture set up by an older version: add the column
        with transaction(db):
            for table in dict.fromkeys(tables):
                if db.execute(f"SELECT 1 FROM {CAPTURE} WHERE tbl=?", (table,)).fetchone() is None:
                    raise SourceNotReady(f"table {table!r} is not set up for capture yet: start the node")
                db.execute(f"INSERT INTO {CHANGELOG} (tbl, op, at) VALUES (?, ?, {_NOW})", (table, ch.SNAPSHOT_BEGIN))
                db.execute(f"UPDATE {CAPTURE} SET snapshot_after=NULL, snapshot_done=0, resnapshot=1 WHERE tbl=?",
                           (table,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            if not Path(self.path).is_file():
                raise SourceNotReady(f"source database {self.path} does not exist")
            self._db = connect(self.path)
        return self._db

    def _schema(self, table: str) -> TableSchema:
        db = self._open()
        schema = read_schema(db, table, self.keys.get(table))
        if schema is None:
            raise SourceNotReady(f"table {table!r} does not exist in {self.path}; "
                                 f"its tables are: {', '.join(user_tables(db)) or 'none'}")
        if not schema.primary_key:
            raise SourceNotReady(f"table {table!r} has no primary key: declare a PRIMARY KEY or set "
                                 f'`[source] keys = {{ {table} = ["col", ...] }}` in node config')
        unknown = set(schema.primary_key) - set(schema.column_names)
        if unknown:
            raise SourceNotReady(f"key of table {table!r} names unknown columns: {', '.join(sorted(unknown))}")
        return schema

    def _current_schema_version(self) -> int:
        return self._open().execute("PRAGMA schema_version").fetchone()[0]

    def _sync_all(self) -> None:
        # Remember the version before checking: our own trigger installation
        # bumps it, which only costs one more (empty) check next time, while a
        # change made during the check is never missed.
        self._schema_version = self._current_schema_version()
        for table in self.tables:
            self._sync(table)

    def _sync(self, table: str) -> None:
        """(Re)install the table's triggers when missing or built for another schema."""
        db = self._open()
        with transaction(db):
            schema = self._schema(table)
            installed = db.execute(f"SELECT schema FROM {CAPTURE} WHERE tbl=?", (table,)).fetchone()
            names = [_trigger_name(table, suffix) for _, suffix, _ in _TRIGGERS]
            present = db.execute(
                f"SELECT count(*) FROM sqlite_master WHERE type='trigger' AND tbl_name=? "
                f"AND name IN ({','.join('?' * len(names))})", (table, *names)).fetchone()[0]
            if installed and json.loads(installed[0]) == schema.to_dict() and present == len(names):
                return
            for statement in _trigger_sql(schema):
                db.execute(statement)
            schema_json = json.dumps(schema.to_dict(), ensure_ascii=False)
            renames = _renames(TableSchema.from_dict(json.loads(installed[0])), schema) if installed else {}
            db.execute(f"INSERT INTO {CHANGELOG} (tbl, op, old, new, at) VALUES (?, ?, ?, ?, {_NOW})",
                       (table, ch.SCHEMA, json.dumps(renames, ensure_ascii=False) if renames else None, schema_json))
            if installed:
                # The table is read again as a snapshot pass: what the node holds and the pass does not
                # find (rows deleted while the triggers were missing) is deleted at its end.
                db.execute(f"INSERT INTO {CHANGELOG} (tbl, op, at) VALUES (?, ?, {_NOW})", (table, ch.SNAPSHOT_BEGIN))
            db.execute(f"INSERT INTO {CAPTURE} (tbl, schema, snapshot_after, snapshot_done, resnapshot) "
                       "VALUES (?, ?, NULL, 0, ?) ON CONFLICT (tbl) DO UPDATE SET schema=excluded.schema, "
                       "snapshot_after=NULL, snapshot_done=0, resnapshot=excluded.resnapshot",
                       (table, schema_json, bool(installed)))

    def _uninstall_unconfigured(self) -> None:
        """Stop capturing tables that were removed from the configuration."""
        db = self._open()
        with transaction(db):
            for (table,) in db.execute(f"SELECT tbl FROM {CAPTURE}").fetchall():
                if table not in self.tables:
                    for _, suffix, _ in _TRIGGERS:
                        db.execute(f"DROP TRIGGER IF EXISTS {quote(_trigger_name(table, suffix))}")
                    db.execute(f"DELETE FROM {CAPTURE} WHERE tbl=?", (table,))
                    db.execute(f"DELETE FROM {CHANGELOG} WHERE tbl=?", (table,))

    def _snapshot_chunk(self) -> None:
        """Copy the next ``snapshot_chunk`` rows of a table being snapshotted into the change log
        (going on to the next table when one turns out to have no rows left)."""
        db = self._open()
        while db.execute(f"SELECT 1 FROM {CAPTURE} WHERE snapshot_done=0").fetchone():
            if self._copy_chunk(db):
                return

    def _copy_chunk(self, db: sqlite3.Connection) -> int:
        """Copy one chunk of the first table being snapshotted; the number of log rows written."""
        with transaction(db):
            pending = db.execute(f"SELECT tbl, schema, snapshot_after, resnapshot FROM {CAPTURE} "
                                 "WHERE snapshot_done=0 ORDER BY tbl LIMIT 1").fetchone()
            if pending is None:
                return 0
            table, schema_json, after_json, resnapshot = pending
            schema = TableSchema.from_dict(json.loads(schema_json))
            where, params = _after_key(schema, after_json)
            rows = db.execute(
                f"SELECT {image_sql(schema.column_names)}, {image_sql(schema.primary_key)} "
                f"FROM {quote(table)} {where} ORDER BY {key_sql(schema)} LIMIT ?", (*params, self.snapshot_chunk)
            ).fetchall()
            db.executemany(f"INSERT INTO {CHANGELOG} (tbl, op, new, at) VALUES (?, ?, ?, {_NOW})",
                           [(table, ch.SNAPSHOT, image) for image, _ in rows])
            done, written = len(rows) < self.snapshot_chunk, len(rows)
            if done and resnapshot:
                db.execute(f"INSERT INTO {CHANGELOG} (tbl, op, at) VALUES (?, ?, {_NOW})", (table, ch.SNAPSHOT_END))
                written += 1
            db.execute(f"UPDATE {CAPTURE} SET snapshot_after=?, snapshot_done=?, resnapshot=resnapshot AND NOT ? "
                       "WHERE tbl=?", (rows[-1][1] if rows else after_json, done, done, table))
            return written

    def _unsnapshotted(self, table: str, schema_json: str, after_json: str | None) -> int:
        schema = TableSchema.from_dict(json.loads(schema_json))
        where, params = _after_key(schema, after_json)
        return self._open().execute(f"SELECT count(*) FROM {quote(table)} {where}", params).fetchone()[0]


def _after_key(schema: TableSchema, after_json: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for the rows after a snapshot's last key."""
    if after_json is None:
        return "", []
    last = decode_image(after_json)
    return (f"WHERE ({key_sql(schema)}) > ({', '.join('?' * len(schema.primary_key))})",
            [last[k] for k in schema.primary_key])


def _renames(before: TableSchema, after: TableSchema) -> dict[str, str]:
    """Columns renamed from ``before`` to ``after`` (old -> new): SQLite keeps a renamed column in its
    place, so a column whose name alone changed, the others staying, is taken as renamed."""
    if len(before.columns) != len(after.columns):
        return {}
    old_names, new_names = set(before.column_names), set(after.column_names)
    return {old.name: new.name for old, new in zip(before.columns, after.columns)
            if old.name != new.name and old.type == new.type and old.name not in new_names
            and new.name not in old_names}


def _trigger_name(table: str, suffix: str) -> str:
    return f"_exchange_{table}_{suffix}"


def _trigger_sql(schema: TableSchema) -> list[str]:
    """Statements that (re)create the three capture triggers of a table."""
    table, columns = schema.name, schema.column_names
    statements = []
    for op, suffix, event in _TRIGGERS:
        old = image_sql(columns, "OLD.") if op != ch.INSERT else "NULL"
        new = image_sql(columns, "NEW.") if op != ch.DELETE else "NULL"
        name = quote(_trigger_name(table, suffix))
        statements.append(f"DROP TRIGGER IF EXISTS {name}")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {quote(table)} BEGIN "
            f"INSERT INTO {CHANGELOG} (tbl, op, old, new, at) "
            f"VALUES ({literal(table)}, {literal(op)}, {old}, {new}, {_NOW}); END"
        )
    return statements


def _change(change_id: int, table: str, op: str, old: str | None, new: str | None, at: str) -> ch.Change:
    position, commit_time = Position(change_id), datetime.fromisoformat(at)
    if op == ch.SCHEMA:
        return ch.Change(position, table, op, commit_time=commit_time, schema=TableSchema.from_dict(json.loads(new)),
                         renames=json.loads(old) if old else None)
    return ch.Change(position, table, op, before=decode_image(old), after=decode_image(new), commit_time=commit_time)
