"""PostgreSQL's side of the SQL both capture and apply write: connections, names, DDL."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions

from adapters import sql
from adapters.keyless import COPY_COLUMN
from adapters.postgres.types import SESSION_OPTIONS
from adapters.sql import quote
from exchange.common.urls import redact_url
from exchange.contracts.changes import Column, DatabaseUnavailable, TableSchema

BOOKKEEPING = "exchange_capture"  # the schema of capture's (and replay's) own tables
CHECKPOINTS = f"{BOOKKEEPING}.replay_checkpoints"  # replay progress in a target
PLACEHOLDER = "%s"

_SQLITE_AFFINITIES = (("INT", "bigint"), ("CHAR", "text"), ("CLOB", "text"), ("TEXT", "text"), ("BLOB", "bytea"),
                      ("REAL", "double precision"), ("FLOA", "double precision"), ("DOUB", "double precision"))


def connect(url: str, **kwargs: Any):
    """A psycopg2 connection with the session settings text values assume."""
    return psycopg2.connect(url, options=SESSION_OPTIONS, **kwargs)


def open_database(url: str):
    """``connect`` for a target or reader: a database that cannot be opened is a DatabaseUnavailable naming it."""
    try:
        return connect(url)
    except psycopg2.OperationalError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise DatabaseUnavailable(f"cannot open the database {redact_url(url)}: {reason}") from None


def raw_text(cursor) -> None:
    """Make ``cursor`` return every value as PostgreSQL's text output."""
    oids = tuple(psycopg2.extensions.string_types)
    psycopg2.extensions.register_type(psycopg2.extensions.new_type(oids, "EXCHANGE_TEXT", lambda v, c: v), cursor)


def split(resource: str) -> tuple[str, str]:
    """(schema, table) of ``table`` or ``schema.table``."""
    schema, dot, table = resource.partition(".")
    return (schema, table) if dot else ("public", resource)


def qualified(resource: str) -> str:
    """The quoted ``schema.table`` of a resource."""
    return ".".join(quote(part) for part in split(resource))


def target_type(declared: str) -> str:
    """PostgreSQL's type for a declared column type.  PostgreSQL reports types
    in lower case; upper-case (or empty) ones come from SQLite and map by its
    affinity rules (numeric affinity and untyped columns become text)."""
    if declared.startswith('"') or declared != declared.upper():
        return declared
    upper = declared.upper()
    return next((pg for marker, pg in _SQLITE_AFFINITIES if marker in upper), "text")


def _default(column: Column) -> str | None:
    """The default to declare: PostgreSQL's own, except sequences (replay writes every value)."""
    native = target_type(column.type) == column.type
    if column.default is None or not native or "nextval(" in column.default:
        return None
    return column.default


def _primary_key(schema: TableSchema) -> tuple[str, ...]:
    """The key to declare (none for keyless tables, whose columns may be null)."""
    return () if COPY_COLUMN in schema.primary_key else schema.primary_key


def column_sql(column: Column) -> str:
    return sql.column_sql(column.name, target_type(column.type), column.notnull, _default(column))


def create_sql(schema: TableSchema) -> str:
    """CREATE TABLE for ``schema``."""
    return sql.create_sql(qualified(schema.name), map(column_sql, schema.columns), _primary_key(schema))


def alter_sql(current: Any, schema: TableSchema) -> list[str]:
    """ALTER TABLE statements that turn ``current`` (the table as adapters.postgres.catalog reads it, which
    imports this module) into ``schema``."""
    table = qualified(schema.name)
    wanted = {c.name: c for c in schema.columns}
    key = _primary_key(schema)
    statements = [f"ALTER TABLE {table} DROP COLUMN {quote(c.name)}" for c in current.columns if c.name not in wanted]
    if current.primary_key != key and current.primary_key:
        statements.append(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "
                          f"{quote(split(schema.name)[1] + '_pkey')}")
    for column in schema.columns:
        have = current.column(column.name)
        if have is None:
            statements.append(f"ALTER TABLE {table} ADD COLUMN {column_sql(column)}")
            continue
        name, new_type = quote(column.name), target_type(column.type)
        if have.type != new_type:
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {new_type} USING {name}::{new_type}")
        if have.notnull != (column.notnull or column.name in key):
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {name} {'SET' if column.notnull else 'DROP'} NOT NULL")
        if have.default != _default(column):
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {name} " +
                              (f"SET DEFAULT {_default(column)}" if _default(column) else "DROP DEFAULT"))
    if current.primary_key != key and key:
        statements.append(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(quote(k) for k in key)})")
    return statements
