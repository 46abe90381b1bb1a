"""MariaDB/MySQL's side of the SQL apply writes: checked names, connections, DDL.

A resource is one table of the URL's database, named as the resource
(``records.cases`` too).  Text columns are ``utf8mb4`` with the binary
no-pad collation: values are kept exactly and keys compare and sort by code
point (``a``, ``A`` and ``a `` are three keys).  DDL commits by itself in
MariaDB, so a schema change is one ALTER TABLE statement (renames
included), applied whole or not at all.
"""

from __future__ import annotations

import re
from typing import Any, Callable, TypeVar

import pymysql

from adapters import sql
from adapters.mysql.connection import MySQLAddress
from adapters.mysql.target_types import (
    KEY_BYTES,
    MAX_KEY_CHARS,
    OTHER,
    TEXT,
    canonical,
    column_type,
    kind,
    row_bytes,
)
from adapters.postgres.dialect import COPY_COLUMN
from exchange.common.urls import redact_url
from exchange.contracts.changes import Column, DatabaseUnavailable, TableSchema
from exchange.contracts.errors import InvalidInput

BOOKKEEPING = "_exchange_"  # the prefix of replay's own tables, which readers leave out
CHECKPOINTS = "`_exchange_checkpoints`"  # replay progress in a target
DROPS = "`_exchange_drops`"  # tables whose checkpoint is gone and that are still to be dropped
PLACEHOLDER = "%s"
COLLATION = "utf8mb4_nopad_bin"
MAX_NAME = 64
ROW_BYTES = 60000  # columns kept in the row, below MariaDB's 65535 bytes a row with room for the rest
T = TypeVar("T")

_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_STRING = re.compile(r"('(?:[^']|'')*')(::[a-z ]+)?")


def checked(name: str) -> str:
    """``name`` when MariaDB can name a table or column so; an InvalidInput saying why otherwise."""
    reason = ("it is empty" if not name else f"it is longer than {MAX_NAME} characters" if len(name) > MAX_NAME
              else "it ends with a space" if name.endswith(" ") else "it holds a NUL character" if "\0" in name
              else "it holds a character outside Unicode's basic plane" if any(ord(c) > 0xFFFF for c in name)
              else None)
    if reason:
        raise InvalidInput(f"MariaDB/MySQL cannot name a table or column {name!r}: {reason}")
    return name


def quote(name: str) -> str:
    """``name`` checked and quoted with backticks, for statements run with parameters (``%`` doubled)."""
    return "`" + checked(name).replace("`", "``").replace("%", "%%") + "`"


def open_database(url: str, **options: Any) -> pymysql.connections.Connection:
    """A connection in a transaction of its own (no autocommit), in strict mode; a database that
    cannot be opened is a DatabaseUnavailable naming it and the server's host:port."""
    address = MySQLAddress.parse(url)
    try:
        db = address.connect(autocommit=False, connect_timeout=10, **options)
        try:
            with db.cursor() as cur:  # values that do not fit are refused, never cut
                cur.execute("SET SESSION sql_mode = CONCAT_WS(',', @@sql_mode, 'STRICT_ALL_TABLES')")
        except BaseException:
            db.close()
            raise
        return db
    except pymysql.err.MySQLError as e:
        raise DatabaseUnavailable(f"cannot open the database {redact_url(url)} "
                                  f"(server {address.host}:{address.port}): {reason(e)}") from None


def reason(error: pymysql.err.MySQLError) -> str:
    """The server's (or PyMySQL's) message of ``error``, without its number."""
    return str(error.args[1]) if len(error.args) > 1 else str(error) or type(error).__name__


def reading(db: pymysql.connections.Connection, work: Callable[[Any], T]) -> T:
    """What ``work`` reads with a cursor of ``db``; the transaction it read in ended after it."""
    try:
        with db.cursor() as cur:
            return work(cur)
    finally:
        db.rollback()


def primary_key(schema: TableSchema) -> tuple[str, ...]:
    """The key to declare (none for keyless tables, whose columns may be null)."""
    return () if COPY_COLUMN in schema.primary_key else schema.primary_key


def key_length(schema: TableSchema) -> int:
    """The characters each text column of the key gets: the key's 3072 bytes shared between them."""
    key = primary_key(schema)
    types = {c.name: column_type(c.type) for c in schema.columns if c.name in key}
    texts = sum(1 for t in types.values() if kind(t) != OTHER or t == "json")
    fixed = 32 * (len(types) - texts)  # the widest decimal; most other types take 8 bytes
    return min(MAX_KEY_CHARS, (KEY_BYTES - fixed) // (4 * texts)) if texts else MAX_KEY_CHARS


def target_types(schema: TableSchema) -> dict[str, str]:
    """Each column's MariaDB type, as ``information_schema`` reports it (see ``canonical``); where
    ``varchar`` columns would make rows too long for MariaDB, the longest ones outside the key are
    ``longtext`` (``varbinary``: ``longblob``)."""
    key, length = primary_key(schema), key_length(schema)
    types = {c.name: column_type(c.type, length if c.name in key else None) for c in schema.columns}
    longest = sorted((n for n in types if n not in key and row_bytes(types[n])), key=lambda n: -row_bytes(types[n]))
    for name in longest:
        if sum(map(row_bytes, types.values())) <= ROW_BYTES:
            break
        types[name] = "longtext" if kind(types[name]) == TEXT else "longblob"
    return types


def default(column: Column, type_: str) -> str | None:
    """The default to declare: a number or a string literal the source declared (a PostgreSQL cast
    dropped), as MariaDB reports it for ``type_``; none for expressions."""
    given = (column.default or "").strip()
    if type_ == "tinyint(1)" and given.lower() in ("true", "false"):
        return "1" if given.lower() == "true" else "0"
    literal = _STRING.fullmatch(given)
    if literal:
        return literal.group(1)
    if _NUMBER.fullmatch(given):
        return f"'{given}'" if kind(type_) != OTHER else given
    return None


def column_sql(column: Column, type_: str, key: tuple[str, ...] = ()) -> str:
    """A column definition of ``type_`` (text columns in the binary collation), for a statement run
    with parameters, as every statement here is (``%`` doubled)."""
    declared = type_ + (f" CHARACTER SET utf8mb4 COLLATE {COLLATION}" if kind(type_) == TEXT else "")
    literal = default(column, type_)
    return sql.column_sql(column.name, declared, column.notnull or column.name in key,
                          literal and literal.replace("%", "%%"), quote)


def create_sql(schema: TableSchema) -> str:
    """CREATE TABLE for ``schema``."""
    types, key = target_types(schema), primary_key(schema)
    definitions = [column_sql(c, types[c.name], key) for c in schema.columns]
    return sql.create_sql(quote(schema.name), definitions, key, quote) + f" DEFAULT CHARSET=utf8mb4 COLLATE={COLLATION}"


def alter_sql(current: TableSchema, schema: TableSchema, renames: dict[str, str] | None) -> str | None:
    """The one ALTER TABLE statement turning ``current`` (as ``adapters.mysql.tables`` reads it) into
    ``schema``, first renaming the columns ``renames`` names; None when there is nothing to change."""
    pending = sql.pending_renames(current.column_names, renames, schema.column_names)
    sources = {new: old for old, new in pending.items()}
    sources.update({n: n for n in current.column_names if n not in pending and n not in sources})
    have = {c.name: c for c in current.columns}
    types, key = target_types(schema), primary_key(schema)
    clauses = [f"DROP COLUMN {quote(c.name)}" for c in current.columns
               if c.name not in pending and c.name not in types]
    for column in schema.columns:
        definition = column_sql(column, types[column.name], key)
        old = have.get(sources.get(column.name, ""))
        if old is None:
            clauses.append(f"ADD COLUMN {definition}")
        elif old.name != column.name:
            clauses.append(f"CHANGE COLUMN {quote(old.name)} {definition}")
        elif (canonical(old.type), old.notnull, old.default) != (
                types[column.name], column.notnull or column.name in key, default(column, types[column.name])):
            clauses.append(f"MODIFY COLUMN {definition}")
    if current.primary_key != key:
        clauses += ["DROP PRIMARY KEY"] if current.primary_key else []
        clauses += [f"ADD PRIMARY KEY ({', '.join(map(quote, key))})"] if key else []
    return f"ALTER TABLE {quote(schema.name)} {', '.join(clauses)}" if clauses else None
