"""Database drivers for the adapter contract suites: one class per kind of database.

A driver gives one test a fresh database (or drop directory) of its kind,
does there what an agency's application does (create a table, write rows,
add a column) and opens the adapters through the public factories.  The
contract modules (test_capture_source.py, test_apply_target.py,
test_table_reader.py) call only drivers, so a new kind of database gets
every suite that fits it by adding its driver to ``BACKENDS`` (suites.py
binds the contracts to the drivers).
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, Sequence

import psycopg2
import pymysql
import pytest

import adapters
from exchange.contracts.changes import ApplyTarget, CaptureSource, Column, TableReader

# One value of each logical type, as capture sources produce them.
VALUES: dict[str, Any] = {
    "text": '张三 🐉 "引号" \\ end',
    "integer": 9007199254740993,  # beyond a double's exact integers
    "decimal": Decimal("-1234567890.12"),
    "real": 0.1 + 0.2,  # needs all 17 digits
    "boolean": True,
    "date": date(2024, 2, 29),
    "timestamp": datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=timezone.utc),
    "bytes": b"\x00\xff\x10",
}


class Backend:
    """One database of a kind, for one test; ``close()`` closes what it opened."""

    name: ClassVar[str]  # the test class is called Test<name>
    kinds: ClassVar[frozenset[str]]  # the contracts it takes part in: capture, apply, read
    fixtures: ClassVar[tuple[str, ...]] = ()  # session fixtures it needs (servers)
    snapshot: ClassVar[bool] = True  # rows present at start arrive as SNAPSHOT changes, else as inserts
    catalog: ClassVar[bool] = True  # tables exist, with their columns, before any row
    types: ClassVar[dict[str, str]]  # logical type -> the type a table declares
    native: ClassVar[frozenset[str]]  # logical types whose values read back as written, type and all
    chunked: ClassVar[dict[str, Any]] = {}  # source options that make the snapshot read two rows at a time
    integrity_error: ClassVar[type[Exception]] = Exception  # what applying a duplicate key raises
    known_failures: ClassVar[dict[str, str]] = {}  # test name -> the adapter bug that fails it

    url: str

    def __init__(self, request: pytest.FixtureRequest):
        self._opened: list[Any] = []

    # -- adapters ---------------------------------------------------------------

    def source(self, tables: Sequence[str], keys: dict[str, list[str]] | None = None, url: str | None = None,
               **options: Any) -> CaptureSource:
        """An unprepared capture source of ``tables``, closed after the test."""
        return self._track(adapters.open_source(url or self.url, list(tables), keys, **options))

    def target(self) -> ApplyTarget:
        return self._track(adapters.open_target(self.url))

    def reader(self) -> TableReader:
        return self._track(adapters.open_reader(self.url))

    def missing_source(self) -> tuple[str, str]:
        """The URL of a source that does not exist, and the name an error must give."""
        raise NotImplementedError

    def close(self) -> None:
        for opened in reversed(self._opened):
            opened.close()

    def _track(self, opened: Any) -> Any:
        self._opened.append(opened)
        return opened

    # -- the application ----------------------------------------------------------

    def column(self, name: str, logical: str, notnull: bool = False, default: str | None = None) -> Column:
        """A column of a logical type (text, integer, decimal, ...) as this kind declares it."""
        return Column(name, self.types[logical], notnull, default)

    def create_table(self, table: str, columns: Sequence[tuple[str, str]], key: Sequence[str] = (),
                     unique: Sequence[str] = ()) -> None:
        """Create ``table`` with (name, logical type) ``columns``, primary ``key`` and a ``unique``
        key that capture may be configured to use instead (covered by its replica identity)."""
        raise NotImplementedError

    def insert(self, table: str, *rows: dict[str, Any]) -> None:
        """Insert ``rows`` in one transaction."""
        raise NotImplementedError

    def update(self, table: str, key: dict[str, Any], values: dict[str, Any]) -> None:
        raise NotImplementedError

    def delete(self, table: str, key: dict[str, Any]) -> None:
        raise NotImplementedError

    def add_column(self, table: str, name: str, logical: str) -> None:
        """ALTER TABLE ... ADD COLUMN (nullable, no default)."""
        raise NotImplementedError

    def abandon(self, table: str, row: dict[str, Any]) -> None:
        """Write ``row`` the way a failed writer does: a transaction rolled back, an export never finished."""
        raise NotImplementedError

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The table's rows now, in key order."""
        reader = adapters.open_reader(self.url)
        try:
            return list(reader.rows(table))
        finally:
            reader.close()


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _SQLBackend(Backend):
    """A SQL database written through a DB-API connection; ``placeholder`` is its parameter marker."""

    placeholder: ClassVar[str]

    def run(self, *statements: tuple[str, Sequence[Any]], commit: bool = True) -> None:
        """Run (sql, parameters) statements in one transaction, then commit it or roll it back."""
        raise NotImplementedError

    def create_table(self, table: str, columns: Sequence[tuple[str, str]], key: Sequence[str] = (),
                     unique: Sequence[str] = ()) -> None:
        keyed = set(key) | set(unique)
        definitions = [f"{_quote(n)} {self.types[t]}{' NOT NULL' if n in keyed else ''}" for n, t in columns]
        if key:
            definitions.append(f"PRIMARY KEY ({', '.join(map(_quote, key))})")
        statements = [(f"CREATE TABLE {_quote(table)} ({', '.join(definitions)})", ())]
        if unique:
            statements.append((f"CREATE UNIQUE INDEX {_quote(table + '_key')} ON {_quote(table)} "
                               f"({', '.join(map(_quote, unique))})", ()))
            statements += self._identity(table, table + "_key")
        self.run(*statements)

    def _identity(self, table: str, index: str) -> list[tuple[str, Sequence[Any]]]:
        """Statements that make the unique index what capture identifies rows by."""
        return []

    def insert(self, table: str, *rows: dict[str, Any]) -> None:
        self.run(*(self._insert(table, row) for row in rows))

    def _insert(self, table: str, row: dict[str, Any]) -> tuple[str, list[Any]]:
        return (f"INSERT INTO {_quote(table)} ({', '.join(map(_quote, row))}) "
                f"VALUES ({', '.join([self.placeholder] * len(row))})", list(row.values()))

    def update(self, table: str, key: dict[str, Any], values: dict[str, Any]) -> None:
        assignments = ", ".join(f"{_quote(c)} = {self.placeholder}" for c in values)
        self.run((f"UPDATE {_quote(table)} SET {assignments} WHERE {self._where(key)}",
                  [*values.values(), *key.values()]))

    def delete(self, table: str, key: dict[str, Any]) -> None:
        self.run((f"DELETE FROM {_quote(table)} WHERE {self._where(key)}", list(key.values())))

    def add_column(self, table: str, name: str, logical: str) -> None:
        self.run((f"ALTER TABLE {_quote(table)} ADD COLUMN {_quote(name)} {self.types[logical]}", ()))

    def abandon(self, table: str, row: dict[str, Any]) -> None:
        self.run(self._insert(table, row), commit=False)

    def _where(self, key: dict[str, Any]) -> str:
        return " AND ".join(f"{_quote(c)} = {self.placeholder}" for c in key)


class SQLiteBackend(_SQLBackend):
    """A SQLite database file in the test's temporary directory."""

    name = "SQLite"
    kinds = frozenset({"capture", "apply", "read"})
    types = {"integer": "INTEGER", "text": "TEXT", "decimal": "NUMERIC", "real": "REAL", "boolean": "BOOLEAN",
             "date": "DATE", "timestamp": "TIMESTAMP", "bytes": "BLOB"}
    native = frozenset({"integer", "text", "real", "bytes"})  # SQLite's storage classes
    chunked = {"snapshot_chunk": 2}
    placeholder = "?"
    integrity_error = sqlite3.IntegrityError

    def __init__(self, request: pytest.FixtureRequest):
        super().__init__(request)
        self.directory: Path = request.getfixturevalue("tmp_path")
        self.url = f"sqlite:///{self.directory / 'agency.db'}"
        self._db = sqlite3.connect(self.directory / "agency.db", isolation_level=None)

    def run(self, *statements: tuple[str, Sequence[Any]], commit: bool = True) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for sql, params in statements:
                self._db.execute(sql, params)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT" if commit else "ROLLBACK")

    def missing_source(self) -> tuple[str, str]:
        return f"sqlite:///{self.directory / 'nowhere.db'}", "nowhere.db"

    def close(self) -> None:
        super().close()
        self._db.close()


class _ServerBackend(_SQLBackend):
    """A database of a server, written through the DB-API connection ``_conn``."""

    _conn: Any

    def run(self, *statements: tuple[str, Sequence[Any]], commit: bool = True) -> None:
        try:
            with self._conn.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, self._params(params))
        except BaseException:
            self._conn.rollback()
            raise
        if commit:
            self._conn.commit()
        else:
            self._conn.rollback()

    def _params(self, params: Sequence[Any]) -> Any:
        """The parameters as the driver takes them."""
        return params


class PostgresBackend(_ServerBackend):
    """A database of its own in the session's PostgreSQL cluster, dropped (with its slot) afterwards."""

    name = "Postgres"
    kinds = frozenset({"capture", "apply", "read"})
    fixtures = ("postgres",)
    types = {"integer": "bigint", "text": "text", "decimal": "numeric(14,2)", "real": "double precision",
             "boolean": "boolean", "date": "date", "timestamp": "timestamp with time zone", "bytes": "bytea"}
    native = frozenset(types)
    chunked = {"snapshot_chunk": 2}
    placeholder = "%s"
    integrity_error = psycopg2.IntegrityError

    def __init__(self, request: pytest.FixtureRequest):
        super().__init__(request)
        self.cluster = request.getfixturevalue("postgres")
        # Unique per test (one name may be in several modules); short enough for the slot name made from it.
        digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
        self.database = self.cluster.create_database(
            f"ct_{re.sub(r'[^a-z0-9_]', '_', request.node.name.lower())[:36]}_{digest}")
        self.url = self.cluster.url(self.database)
        self._conn = self.cluster.connect(self.database, autocommit=False)

    def _identity(self, table: str, index: str) -> list[tuple[str, Sequence[Any]]]:
        return [(f"ALTER TABLE {_quote(table)} REPLICA IDENTITY USING INDEX {_quote(index)}", ())]

    def missing_source(self) -> tuple[str, str]:
        return self.cluster.url(self.database + "_missing"), self.database + "_missing"

    def close(self) -> None:
        super().close()
        self._conn.close()
        # The database's slots go with it (the cluster has few), once the walsenders of
        # the closed sources have exited: DROP DATABASE refuses a database with an active slot.
        deadline = time.monotonic() + 30
        while self.cluster.execute("SELECT count(*) FROM pg_replication_slots WHERE database = %s AND active",
                                   (self.database,))[0][0]:
            assert time.monotonic() < deadline, f"a replication slot of {self.database} stays active"
            time.sleep(0.02)
        self.cluster.execute(f'DROP DATABASE "{self.database}" WITH (FORCE)')


class FileDropBackend(Backend):
    """A drop directory; every write drops a complete export of the table as a new JSON file."""

    name = "FileDrop"
    kinds = frozenset({"capture"})
    snapshot = False  # the first file's rows arrive as inserts
    catalog = False  # a table's columns come with its first file
    types = dict.fromkeys(VALUES, "")  # JSON values carry their own type
    native = frozenset({"integer", "text", "real", "boolean"})

    def __init__(self, request: pytest.FixtureRequest):
        super().__init__(request)
        self.directory: Path = request.getfixturevalue("tmp_path") / "drops"
        self.directory.mkdir()
        self.url = f"files://{self.directory}"
        self._tables: dict[str, tuple[list[str], tuple[str, ...], dict[tuple, dict[str, Any]]]] = {}
        self._dropped = 0

    def source(self, tables: Sequence[str], keys: dict[str, list[str]] | None = None, url: str | None = None,
               **options: Any) -> CaptureSource:
        """A file-drop table's key is always configured: its declared key, unless ``keys`` says otherwise."""
        declared = {t: list(self._tables[t][1]) for t in tables if t in self._tables and self._tables[t][1]}
        return super().source(tables, {**declared, **(keys or {})}, url, **{"settle_seconds": 0, **options})

    def missing_source(self) -> tuple[str, str]:
        return f"files://{self.directory.parent / 'nowhere'}", "nowhere"

    def create_table(self, table: str, columns: Sequence[tuple[str, str]], key: Sequence[str] = (),
                     unique: Sequence[str] = ()) -> None:
        self._tables[table] = ([name for name, _ in columns], tuple(key or unique), {})

    def insert(self, table: str, *rows: dict[str, Any]) -> None:
        columns, key, held = self._tables[table]
        for row in rows:
            held[tuple(row[k] for k in key)] = {c: row.get(c) for c in columns}
        self._drop(table)

    def update(self, table: str, key: dict[str, Any], values: dict[str, Any]) -> None:
        _, key_columns, held = self._tables[table]
        row = {**held.pop(tuple(key[k] for k in key_columns)), **values}
        held[tuple(row[k] for k in key_columns)] = row
        self._drop(table)

    def delete(self, table: str, key: dict[str, Any]) -> None:
        _, key_columns, held = self._tables[table]
        del held[tuple(key[k] for k in key_columns)]
        self._drop(table)

    def add_column(self, table: str, name: str, logical: str) -> None:
        columns, _, held = self._tables[table]
        columns.append(name)
        for row in held.values():
            row[name] = None
        self._drop(table)

    def abandon(self, table: str, row: dict[str, Any]) -> None:
        """An export left under the name a writer uses until the file is complete."""
        self._write(table, [*self.rows(table), {c: row.get(c) for c in self._tables[table][0]}], ".part")

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [dict(row) for _, row in sorted(self._tables[table][2].items())]

    def _drop(self, table: str) -> None:
        self._write(table, self.rows(table))

    def _write(self, table: str, rows: list[dict[str, Any]], suffix: str = "") -> None:
        """Write an export of ``table`` under a new name (files of one table are taken in name order)."""
        self._dropped += 1
        text = json.dumps(rows, ensure_ascii=False)
        (self.directory / f"{table}-{self._dropped:06d}.json{suffix}").write_text(text, encoding="utf-8")


class MariaDB(_ServerBackend):
    """A database of its own in the session's MariaDB server (text in the binary collation), dropped
    afterwards; written with ANSI_QUOTES so the shared SQL's double-quoted names work."""

    name = "MariaDB"
    kinds = frozenset({"apply", "read"})
    fixtures = ("mariadb",)
    types = {"integer": "bigint", "text": "varchar(255)", "decimal": "decimal(14,2)", "real": "double",
             "boolean": "tinyint(1)", "date": "date", "timestamp": "datetime(6)", "bytes": "longblob"}
    native = frozenset(types)
    placeholder = "%s"
    integrity_error = pymysql.err.IntegrityError

    def __init__(self, request: pytest.FixtureRequest):
        super().__init__(request)
        self.server = request.getfixturevalue("mariadb")
        digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
        self.database = self.server.create_database(
            f"ct_{re.sub(r'[^a-z0-9_]', '_', request.node.name.lower())[:40]}_{digest}")
        # Keys that differ in case only are different keys, as in the other kinds.
        self.server.execute(f"ALTER DATABASE `{self.database}` COLLATE utf8mb4_nopad_bin")
        self.url = self.server.url(self.database)
        self._conn = self.server.connect(self.database, autocommit=False)
        with self._conn.cursor() as cur:
            cur.execute("SET SESSION sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES'), time_zone = '+00:00'")

    def close(self) -> None:
        super().close()
        self._conn.close()
        self.server.execute(f"DROP DATABASE `{self.database}`")


class MariaDBCapture(_ServerBackend):
    """A database of its own in the session's MariaDB server (names quoted ANSI-style), dropped afterwards
    with the capture bookkeeping of its source."""

    name = "MariaDBCapture"
    kinds = frozenset({"capture"})
    fixtures = ("mariadb",)
    types = {"integer": "bigint", "text": "varchar(191)", "decimal": "decimal(14,2)", "real": "double",
             "boolean": "tinyint(1)", "date": "date", "timestamp": "timestamp(6) NULL", "bytes": "varbinary(64)"}
    native = frozenset(types) - {"boolean"}  # BOOLEAN is TINYINT(1): 0 and 1
    chunked = {"snapshot_chunk": 2}
    placeholder = "%s"

    def __init__(self, request: pytest.FixtureRequest):
        import pymysql

        super().__init__(request)
        self.server = request.getfixturevalue("mariadb")
        digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
        self.database = self.server.create_database(
            f"ct_{re.sub(r'[^a-z0-9_]', '_', request.node.name.lower())[:40]}_{digest}")
        self.url = self.server.url(self.database)
        self._conn = pymysql.connect(host="127.0.0.1", port=self.server.port, user="root", database=self.database,
                                     charset="utf8mb4", autocommit=False,
                                     init_command="SET time_zone = '+00:00', sql_mode = CONCAT(@@sql_mode, ',ANSI_QUOTES')")

    def _params(self, params: Sequence[Any]) -> Any:
        return [_naive_utc(v) for v in params] if params else None

    def rows(self, table: str) -> list[dict[str, Any]]:
        """The table's rows in key order, each value as capture emits it (adapters/mysql/types.py)."""
        from adapters.mysql.catalog import load_table
        from adapters.mysql.types import convert_row, converters

        with self._conn.cursor() as cur:
            found = load_table(cur, self.database, table)
            names = [c.name for c in found.columns]
            key = ", ".join(_quote(k) for k in found.primary_key or names)
            cur.execute(f"SELECT {', '.join(map(_quote, names))} FROM {_quote(table)} ORDER BY {key}")
            convert = converters(found.columns, binlog=False)
            rows = [convert_row(convert, dict(zip(names, values))) for values in cur.fetchall()]
        self._conn.commit()
        return rows

    def missing_source(self) -> tuple[str, str]:
        return self.server.url(self.database + "_missing"), self.database + "_missing"

    def close(self) -> None:
        super().close()
        self._conn.close()
        self.server.execute(f"DROP DATABASE IF EXISTS `{self.database}`")
        source = "exchange_" + self.database
        for table in ("origins", "chunks", "schemas", "markers", "requests", "progress"):
            try:
                self.server.execute(f"DELETE FROM exchange_capture.{table} WHERE source = %s", (source,))
            except Exception:  # noqa: BLE001 - no bookkeeping yet
                break


def _naive_utc(value: Any) -> Any:
    """An aware datetime as the naive UTC value a session in time zone UTC writes."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


BACKENDS: tuple[type[Backend], ...] = (SQLiteBackend, PostgresBackend, FileDropBackend, MariaDB,
                                        MariaDBCapture)
