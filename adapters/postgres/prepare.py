"""Setting a PostgreSQL database up for capture: checks with what to change, bookkeeping, publication, slot.

Bookkeeping tables (schema ``exchange_capture``, keyed by slot name):
``chunks`` (snapshot progress and regions, snapshot.py), ``schemas``
(schemas emitted, schema_history.py) and ``copies`` (copy counts of keyless
tables, keyless.py).  Rows are tagged with the position they belong to.  A
new slot starts them afresh: every table is snapshotted again.
"""

from __future__ import annotations

from typing import Sequence

import psycopg2.errors
import psycopg2.extras

from adapters.postgres.catalog import Table, load_table, user_tables
from adapters.postgres.dialect import BOOKKEEPING, connect, qualified, quote, split
from exchange.contracts.changes import SourceNotReady

BOOKKEEPING_TABLES = ("chunks", "schemas", "copies")


def check_server(cur) -> str:
    """Check that logical decoding is on and the role may replicate; the role's name."""
    cur.execute("SHOW wal_level")
    if cur.fetchone()[0] != "logical":
        raise SourceNotReady("logical decoding is off: set wal_level = logical in postgresql.conf "
                             "and restart PostgreSQL")
    cur.execute("SELECT current_user, rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user")
    user, allowed = cur.fetchone()
    if not allowed:
        raise SourceNotReady(f"role {user!r} may not use replication: run ALTER ROLE {quote(user)} "
                             "REPLICATION as a superuser")
    return user


def check_tables(cur, resources: Sequence[str], keys: dict[str, tuple[str, ...]], database: str) -> list[Table]:
    """The tables ``resources`` as they are now; SourceNotReady when one cannot be captured."""
    tables = []
    for resource in resources:
        table = load_table(cur, resource, keys.get(resource, ()))
        if table is None:
            raise SourceNotReady(f"table {resource!r} does not exist in database {database!r}; "
                                 f"its tables are: {', '.join(user_tables(cur)) or 'none'}")
        problem = capturable(table)
        if problem:
            raise SourceNotReady(problem)
        tables.append(table)
    return tables


def capturable(table: Table) -> str | None:
    """Why ``table`` cannot be captured, or None."""
    names = {c.name for c in table.columns}
    unknown = [k for k in table.configured_key if k not in names]
    if unknown:
        return f"the key configured for table {table.resource!r} names unknown columns: {', '.join(unknown)}"
    name = qualified(table.resource)
    if table.partitioned:
        return f"table {table.resource!r} is partitioned: capture its partitions instead"
    if table.identity == "n":
        return (f"table {table.resource!r} has REPLICA IDENTITY NOTHING, so its updates and deletes are not "
                f"published: run ALTER TABLE {name} REPLICA IDENTITY DEFAULT (with a primary key) or FULL")
    if table.identity == "f" or (table.identity_key and set(table.configured_key) <= set(table.identity_key)):
        return None
    if table.configured_key:
        return (f"the key configured for table {table.resource!r} is not its replica identity, so updates and "
                f"deletes would not say which row they change: run ALTER TABLE {name} REPLICA IDENTITY FULL, "
                f"or REPLICA IDENTITY USING INDEX on a unique index over "
                f"({', '.join(table.configured_key)})")
    return (f"table {table.resource!r} has no primary key, so its updates and deletes cannot be captured (and "
            f"PostgreSQL refuses them once it is published). Either declare a PRIMARY KEY; or run ALTER TABLE "
            f"{name} REPLICA IDENTITY FULL (rows are then keyed by all their columns); or create a unique "
            f"index on the key columns, run ALTER TABLE {name} REPLICA IDENTITY USING INDEX <index> and set "
            f'`[source] keys = {{ "{table.resource}" = ["col", ...] }}` in the node config')


def install_bookkeeping(cur, database: str) -> None:
    """Create the bookkeeping schema and tables when missing."""
    try:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING}")
    except psycopg2.errors.InsufficientPrivilege as e:
        raise SourceNotReady(f"capture keeps its state in schema {BOOKKEEPING}: run GRANT CREATE ON DATABASE "
                             f"{quote(database)} TO the capture role, or create the schema for it") from e
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.chunks (slot text, resource text, position bigint, "
                "point bigint NOT NULL, last_key text, done boolean NOT NULL, "
                "PRIMARY KEY (slot, resource, position))")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.schemas (slot text, resource text, position bigint, "
                "schema text NOT NULL, PRIMARY KEY (slot, resource, position))")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.copies (slot text, resource text, digest text, "
                "position bigint, n integer NOT NULL, PRIMARY KEY (slot, resource, digest, position))")
    cur.execute(f"CREATE INDEX IF NOT EXISTS copies_by_position ON {BOOKKEEPING}.copies (slot, position)")


def forget(cur, slot: str, after: int | None = None) -> None:
    """Delete the slot's bookkeeping rows tagged after position ``after`` (all of them without)."""
    for name in BOOKKEEPING_TABLES:
        if after is None:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE slot = %s", (slot,))
        else:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE slot = %s AND position > %s", (slot, after))


def ensure_publication(cur, publication: str, user: str, tables: list[Table]) -> None:
    """Create the publication of ``tables``, or add those it misses (refusing when ``user`` may not)."""
    names = ", ".join(qualified(t.resource) for t in tables)
    cur.execute("SELECT puballtables, pg_get_userbyid(pubowner) = current_user, "
                "pubinsert AND pubupdate AND pubdelete AND pubtruncate FROM pg_publication "
                "WHERE pubname = %s", (publication,))
    found = cur.fetchone()
    if found is None:
        try:
            cur.execute(f"CREATE PUBLICATION {quote(publication)} FOR TABLE {names}")
        except psycopg2.errors.InsufficientPrivilege as e:
            raise SourceNotReady(f"role {user!r} may not publish the tables: have their owner run "
                                 f"CREATE PUBLICATION {quote(publication)} FOR TABLE {names}") from e
        return
    all_tables, ours, publishes_all = found
    if not publishes_all:  # a change kind left out would be lost (e.g. TRUNCATE)
        command = f"ALTER PUBLICATION {quote(publication)} SET (publish = 'insert, update, delete, truncate')"
        if not ours:
            raise SourceNotReady(f"publication {publication!r} does not publish every kind of change and role "
                                 f"{user!r} does not own it: have its owner run {command}")
        cur.execute(command)
    if all_tables:
        return
    cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))
    published = set(cur.fetchall())
    missing = ", ".join(qualified(t.resource) for t in tables if split(t.resource) not in published)
    if not missing:
        return
    command = f"ALTER PUBLICATION {quote(publication)} ADD TABLE {missing}"
    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if not (ours or cur.fetchone()[0]):
        raise SourceNotReady(f"publication {publication!r} does not publish {missing} and role {user!r} "
                             f"does not own it: have its owner run {command}")
    cur.execute(command)


def ensure_slot(cur, url: str, slot: str, database: str) -> None:
    """Create the replication slot when missing (starting the bookkeeping afresh); refuse another's slot."""
    cur.execute("SELECT database, plugin FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    found = cur.fetchone()
    if found is not None:
        if found != (database, "pgoutput"):
            raise SourceNotReady(f"replication slot {slot!r} belongs to database {found[0]!r} with plugin "
                                 f"{found[1]!r}: configure another slot name for this source")
        return
    conn = connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        conn.cursor().execute(f"CREATE_REPLICATION_SLOT {quote(slot)} LOGICAL pgoutput NOEXPORT_SNAPSHOT")
    finally:
        conn.close()
    forget(cur, slot)  # a new slot continues no earlier stream: every table is snapshotted afresh
