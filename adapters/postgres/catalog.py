"""Tables as PostgreSQL's catalog describes them: what capture, apply and reading need to know."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Sequence

from adapters.postgres.dialect import BOOKKEEPING, COPY_COLUMN, split
from exchange.contracts.changes import Column, TableSchema


@dataclass(frozen=True)
class CatalogColumn:
    name: str
    type: str  # format_type(), e.g. "numeric(12,2)"
    type_oid: int
    notnull: bool = False
    default: str | None = None
    collation: str | None = None  # qualified collation name of collatable columns


@dataclass(frozen=True)
class Table:
    """What capture and reading need to know about one table."""

    resource: str
    oid: int
    identity: str  # relreplident: d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[CatalogColumn, ...]
    primary_key: tuple[str, ...]
    identity_key: tuple[str, ...]  # columns of the replica identity index (DEFAULT: the primary key)
    configured_key: tuple[str, ...] = ()
    partitioned: bool = False

    @property
    def keyless(self) -> bool:
        """Captured without a key: rows are keyed by all their columns plus a copy number."""
        return self.identity == "f" and not (self.configured_key or self.primary_key)

    @property
    def key(self) -> tuple[str, ...]:
        return self.configured_key or self.primary_key or self.identity_key

    def column(self, name: str) -> CatalogColumn | None:
        return next((c for c in self.columns if c.name == name), None)

    @cached_property
    def schema(self) -> TableSchema:
        columns = tuple(Column(c.name, c.type, c.notnull, c.default) for c in self.columns)
        if self.keyless:
            columns += (Column(COPY_COLUMN, "integer", True),)
            return TableSchema(self.resource, columns, tuple(c.name for c in columns))
        return TableSchema(self.resource, columns, self.key)

    def with_columns(self, columns: Sequence[CatalogColumn]) -> "Table":
        return Table(self.resource, self.oid, self.identity, tuple(columns), self.primary_key, self.identity_key,
                     self.configured_key, self.partitioned)


def user_tables(cur) -> list[str]:
    """User tables (``table`` in schema public, else ``schema.table``), sorted; capture bookkeeping excluded."""
    cur.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s) AND n.nspname NOT LIKE 'pg\\_%%'",
        (BOOKKEEPING,))
    return sorted(name if schema == "public" else f"{schema}.{name}" for schema, name in cur.fetchall())


def load_table(cur, resource: str, configured_key: Sequence[str] = ()) -> Table | None:
    """The table ``resource`` as the catalog (in ``cur``'s snapshot) describes it; None when missing."""
    cur.execute("SELECT c.oid, c.relreplident, c.relkind = 'p' FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", split(resource))
    found = cur.fetchone()
    if found is None:
        return None
    oid, identity, partitioned = found
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.attnotnull, "
        "pg_get_expr(d.adbin, d.adrelid), "
        "CASE WHEN a.attcollation <> 0 THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) END "
        "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
        "LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = '' ORDER BY a.attnum",
        (oid,))
    columns = tuple(CatalogColumn(*row) for row in cur.fetchall())
    cur.execute(
        "SELECT i.indisprimary, array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(num, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord) "
        "FROM pg_index i WHERE i.indrelid = %s AND (i.indisprimary OR i.indisreplident)", (oid,))
    indexes = cur.fetchall()
    primary = next((tuple(names) for is_primary, names in indexes if is_primary), ())
    replident = next((tuple(names) for is_primary, names in indexes if not is_primary), ())
    identity_key = {"d": primary, "i": replident}.get(identity, ())
    return Table(resource, oid, identity, columns, primary, identity_key, tuple(configured_key), partitioned)


def estimated_rows(cur, resource: str) -> int:
    """The planner's row count of a table (at least 1: it is still to be snapshotted)."""
    cur.execute("SELECT reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", split(resource))
    found = cur.fetchone()
    return max(1, int(found[0]) if found else 1)
