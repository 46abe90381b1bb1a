"""SQLite: trigger-based capture source, apply target and table reader.

Capture installs AFTER INSERT/UPDATE/DELETE triggers on each captured table.
They append the old and new row images to ``_exchange_changelog`` inside the
application's own transaction, so the log holds exactly the committed
changes, in commit order (SQLite has one writer at a time).  The initial
snapshot is written into the same log, chunk by chunk, each chunk in a write
transaction of its own: serialised with the application's writes and after
the triggers exist, it leaves no gap and needs no separate position.

Row images are JSON objects of column -> value.  Integers, text and NULL are
plain JSON values; REAL and BLOB values are tagged objects
(``{"real": "1.5e+00"}``, ``{"blob": "C0FFEE"}``) because SQLite's JSON
renders reals with 15 digits only and cannot hold blobs.  Decoding gives back
exactly what the sqlite3 module returns for the row.

Limits the application must know:

* ``INSERT OR REPLACE`` removes a conflicting row without firing the delete
  trigger unless the writing connection sets ``PRAGMA recursive_triggers=ON``
  (a replaced row with the same key still arrives as an insert, which the
  node turns into an update).
* ``ALTER TABLE ... DROP COLUMN`` fails while the capture triggers reference
  the column.
* A table rebuilt by hand (create new, copy, drop, rename) loses its
  triggers until the next ``read``; rows deleted in between are not seen
  (the re-snapshot only re-reads the rows that exist).
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any, Iterator, Sequence

from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, RowOp, SourceNotReady, TableSchema
from exchange.store import sqlite_path

CHANGELOG = "_exchange_changelog"
CAPTURE = "_exchange_capture"
CHECKPOINTS = "_exchange_checkpoints"  # replay progress in a target
_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')"
_COLUMNS_PER_OBJECT = 60  # json_object() takes at most 127 arguments, two per column
_FETCH = 500
_TRIGGERS = ((ch.INSERT, "ins", "INSERT"), (ch.UPDATE, "upd", "UPDATE"), (ch.DELETE, "del", "DELETE"))


def _connect(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, timeout=30)
    db.execute("PRAGMA busy_timeout=30000")
    return db


@contextmanager
def _transaction(db: sqlite3.Connection, mode: str = "IMMEDIATE") -> Iterator[None]:
    db.execute(f"BEGIN {mode}")
    try:
        yield
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    return db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def _user_tables(db: sqlite3.Connection) -> list[str]:
    rows = db.execute(
        "SELECT name FROM sqlite_master WHERE type='table' "
        "AND name NOT LIKE '\\_exchange\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    )
    return [r[0] for r in rows]


def _read_schema(db: sqlite3.Connection, table: str, key: Sequence[str] | None = None) -> TableSchema | None:
    """The table's schema (None when it does not exist); ``key`` overrides the declared primary key."""
    if not _has_table(db, table):
        return None
    info = db.execute(f"PRAGMA table_info({_quote(table)})").fetchall()
    columns = tuple(Column(name, type_, bool(notnull), default) for _, name, type_, notnull, default, _ in info)
    declared = tuple(row[1] for row in sorted(info, key=lambda row: row[5]) if row[5])  # row[5]: position in the key
    return TableSchema(table, columns, tuple(key) if key else declared)


# -- row images ---------------------------------------------------------------

def _value_sql(ref: str) -> str:
    # ``|| ''`` drops a JSON subtype the writer's value may carry (e.g. from
    # json_array()), so text is always stored as a JSON string.
    return (f"CASE typeof({ref}) WHEN 'text' THEN {ref} || '' "
            f"WHEN 'real' THEN json_object('real', printf('%!.17e', {ref})) "
            f"WHEN 'blob' THEN json_object('blob', hex({ref})) ELSE {ref} END")


def _image_sql(columns: Sequence[str], prefix: str = "") -> str:
    """SQL for the JSON image of a row; wide tables become an array of objects."""
    objects = [
        "json_object(" + ", ".join(f"{_literal(c)}, {_value_sql(prefix + _quote(c))}" for c in chunk) + ")"
        for chunk in (columns[i:i + _COLUMNS_PER_OBJECT] for i in range(0, len(columns), _COLUMNS_PER_OBJECT))
    ]
    return objects[0] if len(objects) == 1 else "json_array(" + ", ".join(objects) + ")"


def _decode_value(value: Any) -> Any:
    if isinstance(value, dict):
        return bytes.fromhex(value["blob"]) if "blob" in value else float(value["real"])
    return value


def _decode_image(text: str | None) -> dict[str, Any] | None:
    """The row dict of a JSON image written by ``_image_sql``."""
    if text is None:
        return None
    data = json.loads(text)
    row: dict[str, Any] = {}
    for part in data if isinstance(data, list) else [data]:
        row.update((name, _decode_value(value)) for name, value in part.items())
    return row


# -- capture ------------------------------------------------------------------

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
        self._uninstall_unconfigured()
        self._sync_all()

    def schemas(self) -> dict[str, TableSchema]:
        """The captured tables as they are now."""
        return {table: self._schema(table) for table in self.tables}

    def read(self, after: int, limit: int) -> list[ch.Change]:
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

    def pending(self, after: int) -> int:
        """Change-log rows after ``after`` plus rows the snapshot has still to read."""
        db = self._open()
        if not _has_table(db, CHANGELOG):
            raise SourceNotReady(f"capture is not set up in {self.path} yet: start the node")
        logged = db.execute(f"SELECT count(*) FROM {CHANGELOG} WHERE id > ?", (after,)).fetchone()[0]
        return logged + sum(self._unsnapshotted(*row) for row in db.execute(
            f"SELECT tbl, schema, snapshot_after FROM {CAPTURE} WHERE snapshot_done=0").fetchall())

    def acknowledge(self, position: int) -> None:
        """Prune the change log up to ``position`` (durably stored at the node)."""
        self._open().execute(f"DELETE FROM {CHANGELOG} WHERE id <= ?", (position,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            if not Path(self.path).is_file():
                raise SourceNotReady(f"source database {self.path} does not exist")
            self._db = _connect(self.path)
        return self._db

    def _schema(self, table: str) -> TableSchema:
        db = self._open()
        schema = _read_schema(db, table, self.keys.get(table))
        if schema is None:
            raise SourceNotReady(f"table {table!r} does not exist in {self.path}; "
                                 f"its tables are: {', '.join(_user_tables(db)) or 'none'}")
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
        with _transaction(db):
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
            db.execute(f"INSERT INTO {CHANGELOG} (tbl, op, new, at) VALUES (?, ?, ?, {_NOW})",
                       (table, ch.SCHEMA, schema_json))
            db.execute(f"INSERT OR REPLACE INTO {CAPTURE} VALUES (?, ?, NULL, 0)", (table, schema_json))

    def _uninstall_unconfigured(self) -> None:
        """Stop capturing tables that were removed from the configuration."""
        db = self._open()
        with _transaction(db):
            for (table,) in db.execute(f"SELECT tbl FROM {CAPTURE}").fetchall():
                if table not in self.tables:
                    for _, suffix, _ in _TRIGGERS:
                        db.execute(f"DROP TRIGGER IF EXISTS {_quote(_trigger_name(table, suffix))}")
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
        """Copy one chunk of the first table being snapshotted; the number of rows copied."""
        with _transaction(db):
            pending = db.execute(
                f"SELECT tbl, schema, snapshot_after FROM {CAPTURE} WHERE snapshot_done=0 ORDER BY tbl LIMIT 1"
            ).fetchone()
            if pending is None:
                return 0
            table, schema_json, after_json = pending
            schema = TableSchema.from_dict(json.loads(schema_json))
            where, params = _after_key(schema, after_json)
            rows = db.execute(
                f"SELECT {_image_sql(schema.column_names)}, {_image_sql(schema.primary_key)} "
                f"FROM {_quote(table)} {where} ORDER BY {_key_sql(schema)} LIMIT ?", (*params, self.snapshot_chunk)
            ).fetchall()
            db.executemany(f"INSERT INTO {CHANGELOG} (tbl, op, new, at) VALUES (?, ?, ?, {_NOW})",
                           [(table, ch.SNAPSHOT, image) for image, _ in rows])
            db.execute(f"UPDATE {CAPTURE} SET snapshot_after=?, snapshot_done=? WHERE tbl=?",
                       (rows[-1][1] if rows else after_json, len(rows) < self.snapshot_chunk, table))
            return len(rows)

    def _unsnapshotted(self, table: str, schema_json: str, after_json: str | None) -> int:
        schema = TableSchema.from_dict(json.loads(schema_json))
        where, params = _after_key(schema, after_json)
        return self._open().execute(f"SELECT count(*) FROM {_quote(table)} {where}", params).fetchone()[0]


def _key_sql(schema: TableSchema) -> str:
    return ", ".join(_quote(k) for k in schema.primary_key)


def _after_key(schema: TableSchema, after_json: str | None) -> tuple[str, list[Any]]:
    """A WHERE clause (and its parameters) for the rows after a snapshot's last key."""
    if after_json is None:
        return "", []
    last = _decode_image(after_json)
    return (f"WHERE ({_key_sql(schema)}) > ({', '.join('?' * len(schema.primary_key))})",
            [last[k] for k in schema.primary_key])


def _trigger_name(table: str, suffix: str) -> str:
    return f"_exchange_{table}_{suffix}"


def _trigger_sql(schema: TableSchema) -> list[str]:
    """Statements that (re)create the three capture triggers of a table."""
    table, columns = schema.name, schema.column_names
    statements = []
    for op, suffix, event in _TRIGGERS:
        old = _image_sql(columns, "OLD.") if op != ch.INSERT else "NULL"
        new = _image_sql(columns, "NEW.") if op != ch.DELETE else "NULL"
        name = _quote(_trigger_name(table, suffix))
        statements.append(f"DROP TRIGGER IF EXISTS {name}")
        statements.append(
            f"CREATE TRIGGER {name} AFTER {event} ON {_quote(table)} BEGIN "
            f"INSERT INTO {CHANGELOG} (tbl, op, old, new, at) "
            f"VALUES ({_literal(table)}, {_literal(op)}, {old}, {new}, {_NOW}); END"
        )
    return statements


def _change(position: int, table: str, op: str, old: str | None, new: str | None, at: str) -> ch.Change:
    commit_time = datetime.fromisoformat(at)
    if op == ch.SCHEMA:
        return ch.Change(position, table, op, commit_time=commit_time, schema=TableSchema.from_dict(json.loads(new)))
    return ch.Change(position, table, op, before=_decode_image(old), after=_decode_image(new), commit_time=commit_time)


# -- apply target -------------------------------------------------------------

class SQLiteTarget:
    """Rebuilds tables from replayed row operations (the file is created if missing)."""

    def __init__(self, url: str):
        path = sqlite_path(url)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = _connect(path)

    def apply_schema(self, schema: TableSchema) -> None:
        """Create the table, or alter it to match ``schema``."""
        current = _read_schema(self._db, schema.name)
        if current == schema:
            return
        with _transaction(self._db):
            if current is None:
                self._db.execute(_create_sql(schema))
            elif not self._alter(current, schema):
                self._rebuild(current, schema)

    def apply(self, ops: Sequence[RowOp], checkpoint: tuple[str, int] | None = None) -> None:
        """Apply row operations in order, in one transaction; a ``checkpoint``
        (name, position) is recorded in the same transaction."""
        with _transaction(self._db):
            for (table, op, columns, key), run in groupby(ops, key=_shape):
                sql = _row_sql(table, op, columns, key)
                if sql:
                    self._db.executemany(sql, map(_params, run))
            if checkpoint is not None:
                self._db.execute(f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name TEXT PRIMARY KEY, position INTEGER)")
                self._db.execute(f"INSERT OR REPLACE INTO {CHECKPOINTS} VALUES (?, ?)", checkpoint)

    def checkpoint(self, name: str) -> int | None:
        """The position last recorded under ``name`` (None when there is none)."""
        if not _has_table(self._db, CHECKPOINTS):
            return None
        row = self._db.execute(f"SELECT position FROM {CHECKPOINTS} WHERE name = ?", (name,)).fetchone()
        return row[0] if row else None

    def close(self) -> None:
        self._db.close()

    def _alter(self, current: TableSchema, schema: TableSchema) -> bool:
        """ADD/DROP COLUMN to reach ``schema``; False (nothing changed) when that cannot."""
        names = set(schema.column_names)
        kept = [c for c in current.columns if c.name in names]
        added = [c for c in schema.columns if c.name not in set(current.column_names)]
        if tuple(kept + added) != schema.columns or current.primary_key != schema.primary_key:
            return False
        table = _quote(schema.name)
        self._db.execute("SAVEPOINT alter_columns")
        try:
            for column in added:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {_column_sql(column)}")
            for column in current.columns:
                if column.name not in names:
                    self._db.execute(f"ALTER TABLE {table} DROP COLUMN {_quote(column.name)}")
            done = True
        except sqlite3.OperationalError:  # e.g. NOT NULL without a default, a non-constant default
            self._db.execute("ROLLBACK TO alter_columns")
            done = False
        self._db.execute("RELEASE alter_columns")
        return done

    def _rebuild(self, current: TableSchema, schema: TableSchema) -> None:
        temporary = "_exchange_rebuild"
        common = ", ".join(_quote(c) for c in schema.column_names if c in current.column_names)
        self._db.execute(_create_sql(schema, temporary))
        self._db.execute(f"INSERT INTO {temporary} ({common}) SELECT {common} FROM {_quote(schema.name)}")
        self._db.execute(f"DROP TABLE {_quote(schema.name)}")
        self._db.execute(f"ALTER TABLE {temporary} RENAME TO {_quote(schema.name)}")


def _column_sql(column: Column) -> str:
    parts = [_quote(column.name)]
    if column.type:
        parts.append(column.type)
    if column.notnull:
        parts.append("NOT NULL")
    if column.default is not None:
        parts.append(f"DEFAULT ({column.default})")  # table_info reports defaults without their parentheses
    return " ".join(parts)


def _create_sql(schema: TableSchema, name: str | None = None) -> str:
    definitions = [_column_sql(c) for c in schema.columns]
    if schema.primary_key:
        definitions.append(f"PRIMARY KEY ({', '.join(_quote(k) for k in schema.primary_key)})")
    return f"CREATE TABLE {_quote(name or schema.name)} ({', '.join(definitions)})"


def _shape(op: RowOp) -> tuple[str, str, tuple[str, ...], tuple[str, ...]]:
    """Consecutive operations of one shape share one executemany."""
    return op.table, op.op, tuple(op.values), tuple(op.key)


def _params(op: RowOp) -> list[Any]:
    if op.op == ch.INSERT:
        return list(op.values.values())
    if op.op == ch.UPDATE:
        return [*op.values.values(), *op.key.values()]
    return list(op.key.values())


@lru_cache(maxsize=1024)
def _row_sql(table: str, op: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str | None:
    where = " AND ".join(f"{_quote(k)} IS ?" for k in key)  # IS: a key column may hold NULL
    if op == ch.INSERT:
        return (f"INSERT INTO {_quote(table)} ({', '.join(_quote(c) for c in columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})")
    if op == ch.UPDATE:
        if not columns:
            return None
        return f"UPDATE {_quote(table)} SET {', '.join(f'{_quote(c)} = ?' for c in columns)} WHERE {where}"
    if op == ch.DELETE:
        return f"DELETE FROM {_quote(table)} WHERE {where}"
    raise ValueError(f"unknown row operation {op!r}")


# -- table reader -------------------------------------------------------------

class SQLiteReader:
    """Reads the tables of a SQLite database; a missing file reads as an empty database."""

    def __init__(self, url: str):
        path = sqlite_path(url)
        self._db = _connect(path if Path(path).exists() else ":memory:")  # never create the file
        self._db.execute("PRAGMA query_only=ON")

    def tables(self) -> list[str]:
        """User tables, sorted (capture bookkeeping and SQLite's own tables excluded)."""
        return _user_tables(self._db)

    def table_schema(self, table: str) -> TableSchema:
        schema = _read_schema(self._db, table)
        if schema is None:
            raise LookupError(f"table {table!r} does not exist")
        return schema

    def rows(self, table: str, order_by: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` as dicts, streamed, ordered by ``order_by``, else
        by the primary key, else by rowid."""
        schema = self.table_schema(table)
        order = [_quote(c) for c in order_by or schema.primary_key] or ["rowid"]
        columns = schema.column_names
        cursor = self._db.execute(
            f"SELECT {', '.join(_quote(c) for c in columns)} FROM {_quote(table)} ORDER BY {', '.join(order)}"
        )
        while batch := cursor.fetchmany(_FETCH):
            for values in batch:
                yield dict(zip(columns, values))

    def close(self) -> None:
        self._db.close()
