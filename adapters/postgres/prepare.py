"""Setting a PostgreSQL database up for capture: checks with what to change, bookkeeping, publication, slot.

Bookkeeping tables (schema ``exchange_capture``, keyed by slot name):
``chunks`` (snapshot passes, their progress and regions, snapshot.py),
``schemas`` (schemas emitted, schema_history.py), ``copies`` (copy counts
of keyless tables, keyless.py) and ``extents`` (positions of transactions
larger than their commit LSN's, extents.py).  Rows are tagged with the position they
belong to.  ``slots`` remembers the slots capture created, so that a slot
dropped later is reported as lost instead of silently created again.  A new
slot starts the bookkeeping afresh: every table is snapshotted again.

The publication publishes partitioned tables through their root
(``publish_via_partition_root``), so a partitioned table is captured as one
resource, whatever its partitions.
"""

from __future__ import annotations

from typing import Sequence

import psycopg2.errors
import psycopg2.extras

from adapters.postgres.catalog import Table, load_table, user_tables
from adapters.postgres.dialect import BOOKKEEPING, connect, qualified, quote, split
from adapters.selection import is_pattern, parts, select
from exchange.contracts.changes import PositionLost, SourceNotReady

BOOKKEEPING_TABLES = ("chunks", "schemas", "copies", "extents")


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


def resolve(cur, entries: Sequence[str], exclude: Sequence[str], keys: dict[str, tuple[str, ...]],
            database: str) -> tuple[list[Table], dict[str, str]]:
    """The tables ``entries`` and ``exclude`` select now, and why each table a
    pattern selects that cannot be captured is left out (it is snapshotted
    once it can be).  A table named without wildcards must exist and be
    capturable (SourceNotReady)."""
    names = select(user_tables(cur), entries, exclude)
    literal = {parts(e) for e in entries if not is_pattern(e)}
    tables = check_tables(cur, [n for n in names if parts(n) in literal], keys, database)
    problems = {}
    for name in names:
        if parts(name) in literal:
            continue
        table = load_table(cur, name, keys.get(name, ()))
        problem = "it no longer exists" if table is None else capturable(table)
        if problem:
            problems[name] = problem
        else:
            tables.append(table)
    return tables, problems


def capturable(table: Table) -> str | None:
    """Why ``table`` cannot be captured, or None."""
    names = {c.name for c in table.columns}
    unknown = [k for k in table.configured_key if k not in names]
    if unknown:
        return f"the key configured for table {table.resource!r} names unknown columns: {', '.join(unknown)}"
    name = qualified(table.resource)
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
    cur.execute(f"ALTER TABLE {BOOKKEEPING}.chunks ADD COLUMN IF NOT EXISTS pass integer NOT NULL DEFAULT 0, "
                "ADD COLUMN IF NOT EXISTS rows bigint NOT NULL DEFAULT 0")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.slots (slot text PRIMARY KEY, "
                "created timestamptz NOT NULL DEFAULT now())")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.schemas (slot text, resource text, position bigint, "
                "schema text NOT NULL, PRIMARY KEY (slot, resource, position))")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.copies (slot text, resource text, digest text, "
                "position bigint, n integer NOT NULL, PRIMARY KEY (slot, resource, digest, position))")
    cur.execute(f"CREATE INDEX IF NOT EXISTS copies_by_position ON {BOOKKEEPING}.copies (slot, position)")
    cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.extents (slot text, commit_lsn bigint, position bigint "
                "NOT NULL, last bigint, PRIMARY KEY (slot, commit_lsn))")


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
    cur.execute("SELECT puballtables, pg_get_userbyid(pubowner) = current_user, pubviaroot, "
                "pubinsert AND pubupdate AND pubdelete AND pubtruncate FROM pg_publication "
                "WHERE pubname = %s", (publication,))
    found = cur.fetchone()
    if found is None:
        listed = f"FOR TABLE {names}" if tables else ""
        command = f"CREATE PUBLICATION {quote(publication)} {listed} WITH (publish_via_partition_root = true)"
        try:
            cur.execute(command)
        except psycopg2.errors.InsufficientPrivilege as e:
            raise SourceNotReady(f"role {user!r} may not publish the tables: have their owner run {command}") from e
        return
    all_tables, ours, via_root, publishes_all = found
    if not publishes_all:  # a change kind left out would be lost (e.g. TRUNCATE)
        command = f"ALTER PUBLICATION {quote(publication)} SET (publish = 'insert, update, delete, truncate')"
        _alter(cur, command, ours, publication, user, "does not publish every kind of change")
    if not via_root and any(t.partitioned for t in tables):
        command = f"ALTER PUBLICATION {quote(publication)} SET (publish_via_partition_root = true)"
        _alter(cur, command, ours, publication, user, "does not publish partitioned tables through their root")
    missing = ", ".join(qualified(name) for name in unpublished(cur, publication, [t.resource for t in tables]))
    if not missing:
        return
    _alter(cur, f"ALTER PUBLICATION {quote(publication)} ADD TABLE {missing}", ours, publication, user,
           f"does not publish {missing}")


def unpublished(cur, publication: str, names: Sequence[str]) -> list[str]:
    """Those of the tables ``names`` the publication does not publish (a table dropped and created again
    has left it)."""
    cur.execute("SELECT puballtables FROM pg_publication WHERE pubname = %s", (publication,))
    found = cur.fetchone()
    if found is not None and found[0]:
        return []
    cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))
    published = set(cur.fetchall())
    return [name for name in names if split(name) not in published]


def _alter(cur, command: str, ours: bool, publication: str, user: str, state: str) -> None:
    """Run ``command`` on the publication (which ``state``), or say who must when ``user`` may not."""
    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    if not (ours or cur.fetchone()[0]):
        raise SourceNotReady(f"publication {publication!r} {state} and role {user!r} does not own it: "
                             f"have its owner run {command}")
    try:
        cur.execute(command)
    except psycopg2.errors.InsufficientPrivilege as e:
        raise SourceNotReady(f"publication {publication!r} {state} and role {user!r} may not change that: "
                             f"have the tables' owner run {command}") from e


def ensure_slot(cur, url: str, slot: str, database: str) -> None:
    """Create the replication slot when missing (starting the bookkeeping afresh); refuse another's slot,
    and raise PositionLost when the slot capture created was dropped or invalidated."""
    lost = slot_lost(cur, slot, database)
    if lost is not None:
        raise lost
    cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    if cur.fetchone() is None:
        create_slot(url, slot)
        forget(cur, slot)  # a new slot continues no earlier stream: every table is snapshotted afresh
    cur.execute(f"INSERT INTO {BOOKKEEPING}.slots (slot) VALUES (%s) ON CONFLICT DO NOTHING", (slot,))


def slot_lost(cur, slot: str, database: str) -> PositionLost | None:
    """PositionLost naming the repair when the slot capture created is gone or
    invalidated; None while it holds the stream (or was never created)."""
    cur.execute("SELECT database, plugin, wal_status FROM pg_replication_slots WHERE slot_name = %s", (slot,))
    found = cur.fetchone()
    if found is not None:
        if found[:2] != (database, "pgoutput"):
            raise SourceNotReady(f"replication slot {slot!r} belongs to database {found[0]!r} with plugin "
                                 f"{found[1]!r}: configure another slot name for this source")
        if found[2] != "lost":
            return None
        why = ("was invalidated: it kept more WAL than max_slot_wal_keep_size allows, so the server removed "
               "WAL the node had not read")
    else:
        cur.execute(f"SELECT to_regclass('{BOOKKEEPING}.slots') IS NOT NULL")
        if not cur.fetchone()[0]:
            return None
        cur.execute(f"SELECT EXISTS (SELECT 1 FROM {BOOKKEEPING}.slots WHERE slot = %s) "
                    f"OR EXISTS (SELECT 1 FROM {BOOKKEEPING}.chunks WHERE slot = %s)", (slot, slot))
        if not cur.fetchone()[0]:
            return None
        why = "was dropped"
    return PositionLost(f"replication slot {slot!r} of database {database!r} {why}; the changes made since the "
                        "node last read are gone from the source. Repair: exchange node resnapshot --config "
                        "NODE.toml --all (captures again from now and re-reads every captured table into the "
                        "node's store: unchanged rows make no events, rows gone since are deleted)")


def create_slot(url: str, slot: str) -> None:
    """Create the logical replication slot at the server's current position."""
    conn = connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
    try:
        conn.cursor().execute(f"CREATE_REPLICATION_SLOT {quote(slot)} LOGICAL pgoutput NOEXPORT_SNAPSHOT")
    finally:
        conn.close()
