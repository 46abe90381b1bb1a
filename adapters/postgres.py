"""PostgreSQL: logical-decoding capture source, apply target and table reader.

Capture reads a logical replication slot (``exchange_<db>`` by default) with
the built-in ``pgoutput`` plugin through a publication of the captured
tables, and decodes the messages itself (adapters/pgoutput.py).  The node
only ever tells the source a position (``read(after)``, ``acknowledge``);
everything else needed to resume is kept in the source database, schema
``exchange_capture``, rows tagged with the position they belong to.  A read
after any position other than the last one returned (a new source object, a
node retrying a failed store) first deletes the rows tagged after it and
restarts the stream from the slot's confirmed position: what the node never
stored is produced again, what it stored is skipped by position.

Positions (all below 2**63, as the node stores them in a 64-bit integer):

* A streamed transaction whose commit record starts at LSN ``L`` and ends at
  ``E`` gives its changes positions ``(L << 16) + 1, + 2, ...``; no other
  commit record starts inside ``[L, E)``, so a transaction may hold
  ``(E - L) << 16`` changes (at least 2.6 million: a commit record is at
  least 40 bytes).  LSNs must stay below 2**47 (128 TiB of WAL).
* Snapshot rows get positions inside a *gap*: before each snapshot session
  the source writes a 4 KiB non-transactional logical message (the marker).
  No commit record starts inside the marker's WAL span ``[M, M_end)``, so
  ``(M_end - 4096) << 16 ...`` (268 million positions) belong to no
  transaction: the stream's commits before the marker come before the
  session's rows, commits after it come after them.  A session that fills
  its gap ends early and the next session goes on.

Acknowledging a position confirms its transaction's commit LSN to the slot
(an LSN inside the marker for snapshot rows): after a restart the server
sends that one transaction again and its changes are skipped by position.
When a read finds nothing new and everything read is acknowledged, the
source confirms all the WAL the server has sent (a heartbeat), so the slot
follows a quiet database instead of holding WAL written for other tables.

Snapshot sessions (gap-free and duplicate-free):

* A session writes its marker, then creates a temporary slot with an
  exported snapshot, imports it into a REPEATABLE READ transaction and reads
  the tables that are not done yet, each from the key after its last stored
  chunk, in key order, ``snapshot_chunk`` rows per chunk.  The temporary
  slot's consistent point ``P`` splits the WAL exactly: commits starting
  before ``P`` are visible in the snapshot, later ones are not.
* Each chunk is recorded (position of its last row, ``P``, its last key,
  done flag).  The key ranges read at one snapshot form a *region*; a
  streamed change to a row is emitted only when its key lies in a region
  whose ``P`` is at or before the change's commit LSN.  Older changes are
  already in the rows the region's snapshot read; rows not in any region
  yet will be read by a later session, which sees them.  This is the rule
  PostgreSQL's own table synchronisation uses, per key range instead of per
  table.
* So when the source stops mid-snapshot, the rows the node stored keep
  their region, and the next session reads only the rest, at a new
  snapshot, with its own ``P``: nothing is read twice, nothing is missed,
  including rows deleted or changed in between.  Whether a key lies in a
  region is decided by PostgreSQL (row comparison with the columns' types
  and collations), only for tables whose snapshot was split.

Row images (``Change.before``/``after``), in changes.py terms:

* INSERT: ``after`` is the whole row.  DELETE: ``before`` is the replica
  identity: the key columns (DEFAULT, USING INDEX) or the whole row (FULL).
* UPDATE: ``after`` holds every column that arrived.  An unchanged TOASTed
  value is not sent by PostgreSQL; with REPLICA IDENTITY FULL it is taken
  from the old row, otherwise the column is left out of ``after`` (never
  None or a placeholder), so the node's Updated event does not carry it.
  ``before`` is the old row under FULL, the old key when the key changed,
  else the key taken from the new row.  A key change under DEFAULT identity
  of a row with an unchanged TOASTed value therefore creates the new record
  without that column: use REPLICA IDENTITY FULL for such tables.
* Tables without a key (REPLICA IDENTITY FULL, no primary key, no
  configured key) get a synthetic column ``_exchange_copy``: identical rows
  are copies 0, 1, 2 ... and the key is every column plus the copy number.
  pgoutput cannot say which of two identical rows an update or delete hit
  (and it does not matter), so the source counts the copies of each row
  content (table ``exchange_capture.copies``): an insert adds the next
  copy, a delete removes the last one.  ``PostgresReader`` shows the same
  column for such tables, so ``exchange verify`` compares like with like.
* Schema: a SCHEMA change comes before a table's snapshot rows and before
  the first change whose relation (columns, types) differs from the last
  schema emitted.  Column types, NOT NULL and defaults are as reported by
  the catalog (NOT NULL and defaults as they are when the change is read).
  Generated columns are not published by pgoutput and are left out.

Bookkeeping tables (schema ``exchange_capture``, keyed by slot name):
``chunks`` (snapshot progress and regions), ``schemas`` (schemas emitted)
and ``copies`` (copy counts of keyless tables).  A new slot starts them
afresh: every table is snapshotted again.

Limits: PostgreSQL 14 or later (pgoutput's ``messages`` option); one
transaction is held in memory while it is read (no spilling); TRUNCATE of a
captured table stops capture with an error saying how to go on; reading
again before an acknowledged position is not possible (the slot has moved
on); a snapshot waits for the transactions running when it starts; only
ordinary tables are captured (no partitioned tables); a read waits at most
``READ_WAIT`` seconds for WAL the server has written but not yet decoded.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import select
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cached_property
from itertools import groupby
from typing import Any, Iterator, Sequence

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from adapters import pgoutput
from adapters.pgoutput import SESSION_OPTIONS, UNCHANGED, lsn_int, lsn_text, to_text
from exchange.contracts import changes as ch
from exchange.contracts.changes import Column, RowOp, SourceNotReady, TableSchema
from exchange.contracts.events import canonical_json

BOOKKEEPING = "exchange_capture"
CHECKPOINTS = f"{BOOKKEEPING}.replay_checkpoints"  # replay progress in a target
COPY_COLUMN = "_exchange_copy"
SHIFT = 16  # position = LSN << SHIFT + index
MAX_LSN = 1 << 47
MARKER_PREFIX = "exchange_snapshot"
MARKER_PAD = 4096  # bytes of WAL per marker: its gap holds MARKER_PAD << SHIFT positions
READ_WAIT = 5.0  # seconds a read waits at most for WAL the server has already written
COPY_MIN = 500  # runs of at least this many inserts are written with COPY
_FETCH = 1000


class UnsupportedChange(Exception):
    """The stream holds a change capture cannot represent (TRUNCATE)."""


# -- connections and catalog --------------------------------------------------

def _connect(url: str, **kwargs: Any):
    return psycopg2.connect(url, options=SESSION_OPTIONS, **kwargs)


def _raw_text(cursor) -> None:
    """Make ``cursor`` return every value as PostgreSQL's text output."""
    oids = tuple(psycopg2.extensions.string_types)
    psycopg2.extensions.register_type(psycopg2.extensions.new_type(oids, "EXCHANGE_TEXT", lambda v, c: v), cursor)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _split(resource: str) -> tuple[str, str]:
    """(schema, table) of ``table`` or ``schema.table``."""
    schema, dot, table = resource.partition(".")
    return (schema, table) if dot else ("public", resource)


def _qualified(resource: str) -> str:
    return ".".join(_quote(part) for part in _split(resource))


def _user_tables(cur) -> list[str]:
    cur.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition "
        "AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s) AND n.nspname NOT LIKE 'pg\\_%%'",
        (BOOKKEEPING,))
    return sorted(name if schema == "public" else f"{schema}.{name}" for schema, name in cur.fetchall())


@dataclass(frozen=True)
class _Column:
    name: str
    type: str  # format_type(), e.g. "numeric(12,2)"
    type_oid: int
    notnull: bool = False
    default: str | None = None
    collation: str | None = None  # qualified collation name of collatable columns


@dataclass(frozen=True)
class _Table:
    """What capture and reading need to know about one table."""

    resource: str
    oid: int
    identity: str  # relreplident: d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[_Column, ...]
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

    def column(self, name: str) -> _Column | None:
        return next((c for c in self.columns if c.name == name), None)

    @cached_property
    def schema(self) -> TableSchema:
        columns = tuple(Column(c.name, c.type, c.notnull, c.default) for c in self.columns)
        if self.keyless:
            columns += (Column(COPY_COLUMN, "integer", True),)
            return TableSchema(self.resource, columns, tuple(c.name for c in columns))
        return TableSchema(self.resource, columns, self.key)

    def with_columns(self, columns: Sequence[_Column]) -> "_Table":
        return _Table(self.resource, self.oid, self.identity, tuple(columns), self.primary_key, self.identity_key,
                      self.configured_key, self.partitioned)


def _load_table(cur, resource: str, configured_key: Sequence[str] = ()) -> _Table | None:
    """The table ``resource`` as the catalog (in ``cur``'s snapshot) describes it; None when missing."""
    cur.execute("SELECT c.oid, c.relreplident, c.relkind = 'p' FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p')", _split(resource))
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
    columns = tuple(_Column(*row) for row in cur.fetchall())
    cur.execute(
        "SELECT i.indisprimary, array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(num, ord) "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.num ORDER BY k.ord) "
        "FROM pg_index i WHERE i.indrelid = %s AND (i.indisprimary OR i.indisreplident)", (oid,))
    indexes = cur.fetchall()
    primary = next((tuple(names) for is_primary, names in indexes if is_primary), ())
    replident = next((tuple(names) for is_primary, names in indexes if not is_primary), ())
    identity_key = {"d": primary, "i": replident}.get(identity, ())
    return _Table(resource, oid, identity, columns, primary, identity_key, tuple(configured_key), partitioned)


def _capturable(table: _Table) -> str | None:
    """Why ``table`` cannot be captured, or None."""
    names = {c.name for c in table.columns}
    unknown = [k for k in table.configured_key if k not in names]
    if unknown:
        return f"the key configured for table {table.resource!r} names unknown columns: {', '.join(unknown)}"
    qualified = _qualified(table.resource)
    if table.partitioned:
        return f"table {table.resource!r} is partitioned: capture its partitions instead"
    if table.identity == "n":
        return (f"table {table.resource!r} has REPLICA IDENTITY NOTHING, so its updates and deletes are not "
                f"published: run ALTER TABLE {qualified} REPLICA IDENTITY DEFAULT (with a primary key) or FULL")
    if table.identity == "f" or (table.identity_key and set(table.configured_key) <= set(table.identity_key)):
        return None
    if table.configured_key:
        return (f"the key configured for table {table.resource!r} is not its replica identity, so updates and "
                f"deletes would not say which row they change: run ALTER TABLE {qualified} REPLICA IDENTITY FULL, "
                f"or REPLICA IDENTITY USING INDEX on a unique index over "
                f"({', '.join(table.configured_key)})")
    return (f"table {table.resource!r} has no primary key, so its updates and deletes cannot be captured (and "
            f"PostgreSQL refuses them once it is published). Either declare a PRIMARY KEY; or run ALTER TABLE "
            f"{qualified} REPLICA IDENTITY FULL (rows are then keyed by all their columns); or create a unique "
            f"index on the key columns, run ALTER TABLE {qualified} REPLICA IDENTITY USING INDEX <index> and set "
            f'`[source] keys = {{ "{table.resource}" = ["col", ...] }}` in the node config')


class _Types:
    """Parsers of text values by type OID, and type names, looked up once."""

    def __init__(self, conn):
        self.conn = conn
        self._parsers: dict[int, pgoutput.Parser] = dict(pgoutput.SCALARS)
        self._names: dict[tuple[int, int], str] = {}

    def parser(self, oid: int) -> pgoutput.Parser:
        if oid not in self._parsers:
            with self.conn.cursor() as cur:
                cur.execute("SELECT typtype, typbasetype, typelem, typdelim, typcategory FROM pg_type WHERE oid = %s",
                            (oid,))
                typtype, base, element, delimiter, category = cur.fetchone() or ("b", 0, 0, ",", "U")
            if typtype == "d":
                self._parsers[oid] = self.parser(base)
            elif category == "A" and element:
                self._parsers[oid] = pgoutput.array_parser(self.parser(element), delimiter)
            else:
                self._parsers[oid] = pgoutput.text
        return self._parsers[oid]

    def name(self, oid: int, typmod: int) -> str:
        if (oid, typmod) not in self._names:
            with self.conn.cursor() as cur:
                cur.execute("SELECT format_type(%s, %s)", (oid, None if typmod < 0 else typmod))
                self._names[(oid, typmod)] = cur.fetchone()[0]
        return self._names[(oid, typmod)]

    def row(self, table: _Table, values: Sequence[str | None]) -> dict[str, Any]:
        """The row dict of text values in ``table``'s column order."""
        return {c.name: None if v is None else self.parser(c.type_oid)(v) for c, v in zip(table.columns, values)}


def _snapshot_sql(table: _Table) -> tuple[str, str]:
    """A query of the table's rows, and the key expression to order it by.  A
    table without key gives one row per distinct content, then its count and
    its text (the sort key, in collation C)."""
    if table.keyless:
        columns = ", ".join(f"(g.r).{_quote(c.name)}" for c in table.columns)
        return (f"SELECT {columns}, g.n, g.k FROM (SELECT (array_agg(t))[1] AS r, count(*) AS n, "
                f't::text COLLATE "C" AS k FROM {_qualified(table.resource)} t GROUP BY 3) g', "g.k")
    columns = ", ".join(f"t.{_quote(c.name)}" for c in table.columns)
    return f"SELECT {columns} FROM {_qualified(table.resource)} t", ", ".join(f"t.{_quote(k)}" for k in table.key)


def _estimated_rows(cur, resource: str) -> int:
    """The planner's row count of a table (at least 1: it is still to be snapshotted)."""
    cur.execute("SELECT reltuples FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = %s", _split(resource))
    found = cur.fetchone()
    return max(1, int(found[0]) if found else 1)


def _check_lsn(lsn: int) -> None:
    if lsn >= MAX_LSN:
        raise UnsupportedChange(f"LSN {lsn_text(lsn)} is beyond what positions can encode (2**47)")


def _digest(row: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(row).encode()).hexdigest()


# -- capture --------------------------------------------------------------------

@dataclass
class _Chunk:
    position: int  # its last position: stored at the node once the node's position reaches it
    point: int  # consistent point (LSN) of the snapshot it was read at
    last_key: list[str | None] | None  # text values of the last key read so far in the table
    done: bool


@dataclass
class _Session:
    """One exported snapshot, read table by table into the marker's gap."""

    marker: str  # the marker message's content
    point: int  # the exported snapshot's consistent point (LSN)
    connection: Any  # REPEATABLE READ transaction in the exported snapshot
    resources: list[str]
    next: int  # last position handed out
    end: int  # first position past the gap
    started: datetime
    active: bool = False  # the stream has reached the marker
    cursor: Any = None
    table: _Table | None = None

    def position(self) -> int:
        self.next += 1
        if self.next >= self.end:
            raise RuntimeError("snapshot gap exhausted")  # _session_chunk ends sessions long before
        return self.next


@dataclass
class _Transaction:
    begin: pgoutput.Begin
    messages: list[Any] = field(default_factory=list)
    commit: pgoutput.Commit | None = None


_ROW_MESSAGES = (pgoutput.Relation, pgoutput.Insert, pgoutput.Update, pgoutput.Delete, pgoutput.Truncate)


class _Stream:
    """The main slot's stream: whole transactions and marker messages, in commit order."""

    def __init__(self, url: str, slot: str, publication: str):
        self.connection = _connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        self.cursor = self.connection.cursor()
        self.cursor.start_replication(slot_name=slot, decode=False, options={
            "proto_version": "1", "publication_names": publication, "messages": "true"})
        self.wal_end = 0  # the server has sent everything before this LSN
        self.flushed = 0
        self._open: _Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def next(self, target: int, deadline: float) -> _Transaction | pgoutput.Message | None:
        """The next transaction or marker; None once everything before ``target`` was
        received (or at ``deadline``)."""
        while True:
            message = self.cursor.read_message()
            self.wal_end = max(self.wal_end, self.cursor.wal_end)
            if message is None:
                if (self._open is None and self.wal_end >= target) or time.monotonic() >= deadline:
                    return None
                select.select([self.connection], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
                continue
            decoded = pgoutput.decode(message.payload)
            if isinstance(decoded, pgoutput.Begin):
                self._open = _Transaction(decoded)
            elif isinstance(decoded, pgoutput.Commit):
                done, self._open = self._open, None
                done.commit = decoded
                return done
            elif isinstance(decoded, pgoutput.Message) and not decoded.transactional:
                if decoded.prefix == MARKER_PREFIX:
                    return decoded
            elif isinstance(decoded, _ROW_MESSAGES) and self._open is not None:
                self._open.messages.append(decoded)

    def confirm(self, lsn: int) -> None:
        """Let the server forget the WAL before ``lsn``."""
        if lsn > self.flushed:
            self.cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, force=True)
            self.flushed = lsn

    def keep_alive(self) -> None:
        self.cursor.send_feedback(force=True)

    def close(self) -> None:
        self.connection.close()


class PostgresSource:
    """Logical-decoding capture of ``tables`` (``table`` or ``schema.table``) of
    the PostgreSQL database at ``url``.

    ``keys`` ({table: [column, ...]}) names a unique key for tables without a
    primary key (it must be covered by the table's replica identity).
    ``slot`` and ``publication`` default to ``exchange_<database>``.
    """

    def __init__(self, url: str, tables: Sequence[str], keys: dict[str, list[str]] | None = None,
                 snapshot_chunk: int = 10000, slot: str | None = None, publication: str | None = None):
        self.url = url
        self.tables = list(tables)
        self.keys = {table: tuple(key) for table, key in (keys or {}).items()}
        self.snapshot_chunk = snapshot_chunk
        self.database = psycopg2.extensions.parse_dsn(url).get("dbname", "postgres")
        default = "exchange_" + re.sub(r"[^a-z0-9_]", "_", self.database.lower())
        self.slot = (slot or default)[:63]
        self.publication = publication or default
        self._db = None
        self._types: _Types | None = None
        self._prepared = False
        self._stream: _Stream | None = None
        self._session: _Session | None = None
        self._position: int | None = None  # last position returned; None: resume at the next read
        self._chunks: dict[str, list[_Chunk]] = {}
        self._schemas: dict[str, list[tuple[int, TableSchema]]] = {}  # emitted, by position
        self._relations: dict[int, pgoutput.Relation] = {}
        self._tables: dict[int, _Table | None] = {}  # by relation OID: the captured table it is
        self._parsers: dict[int, list[pgoutput.Parser]] = {}  # by relation OID: one per column
        self._copies: dict[tuple[str, str], int] = {}
        self._copy_log: dict[tuple[str, str, int], int] = {}  # (resource, digest, position) -> copies
        self._pending: list[ch.Change] = []  # the rest of a transaction split by ``limit``
        self._acknowledged = 0
        self._pruned = 0  # copy counts are pruned up to here
        self._overflows: list[tuple[int, int, int]] = []  # (first, last position, commit LSN) of huge transactions

    # -- the CaptureSource interface ------------------------------------------

    def prepare(self) -> None:
        """Check the database, role and tables; create the bookkeeping schema,
        the publication and the replication slot when missing."""
        with self._open().cursor() as cur:
            cur.execute("SHOW wal_level")
            if cur.fetchone()[0] != "logical":
                raise SourceNotReady("logical decoding is off: set wal_level = logical in postgresql.conf "
                                     "and restart PostgreSQL")
            cur.execute("SELECT current_user, rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user")
            user, allowed = cur.fetchone()
            if not allowed:
                raise SourceNotReady(f"role {user!r} may not use replication: run ALTER ROLE {_quote(user)} "
                                     "REPLICATION as a superuser")
            tables = self._check_tables(cur)
            self._install_bookkeeping(cur)
            self._ensure_publication(cur, user, tables)
            self._ensure_slot(cur)
            cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks WHERE slot = %s AND resource <> ALL(%s)",
                        (self.slot, self.tables))
        self._prepared = True

    def schemas(self) -> dict[str, TableSchema]:
        """The captured tables as they are now."""
        with self._open().cursor() as cur:
            return {table.resource: table.schema for table in self._check_tables(cur)}

    def read(self, after: int, limit: int) -> list[ch.Change]:
        """Changes with position > ``after``: snapshot rows and whole transactions
        (split only when one holds more than ``limit`` changes).  Waits at most a
        few seconds for WAL the server has written but not yet sent."""
        if not self._prepared:
            self.prepare()
        try:
            if after != self._position:
                self._resume(after)
            changes = self._read(limit)
            self._save_copies()
        except BaseException:
            self._position = None  # whatever state we are in, start over from the node's position
            raise
        if changes:
            self._position = changes[-1].position
        return changes

    def pending(self, after: int) -> int:
        """Rows the snapshot has still to read (an estimate), plus 1 when the
        slot holds WAL not yet read; 0 means caught up."""
        with self._open().cursor() as cur:
            cur.execute("SELECT confirmed_flush_lsn, pg_current_wal_flush_lsn() FROM pg_replication_slots "
                        "WHERE slot_name = %s", (self.slot,))
            found = cur.fetchone()
            if found is None:
                raise SourceNotReady(f"capture is not set up in database {self.database!r} yet: start the node")
            confirmed, current = (lsn_int(v) for v in found)
            cur.execute(f"SELECT DISTINCT ON (resource) resource, done FROM {BOOKKEEPING}.chunks "
                        "WHERE slot = %s AND position <= %s ORDER BY resource, position DESC", (self.slot, after))
            done = {resource for resource, finished in cur.fetchall() if finished}
            waiting = sum(_estimated_rows(cur, resource) for resource in self.tables if resource not in done)
        stream = self._stream
        read_all = (stream is not None and self._position == after and not self._pending
                    and not stream.in_transaction and stream.wal_end >= current)
        return waiting + (0 if read_all or confirmed >= current else 1)

    def acknowledge(self, position: int) -> None:
        """Confirm to the server what is stored up to ``position``, so that it
        may recycle that WAL."""
        self._acknowledged = max(self._acknowledged, position)
        if self._stream is not None:
            self._stream.confirm(self._safe_lsn(position))
        self._overflows = [o for o in self._overflows if o[1] > position]
        if any(t.keyless for t in self._tables.values()):
            self._prune_copies(position)

    def slot_retained_wal_bytes(self) -> int:
        """WAL bytes the slot keeps that the node has not confirmed (0 without a slot)."""
        with self._open().cursor() as cur:
            cur.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots "
                        "WHERE slot_name = %s", (self.slot,))
            found = cur.fetchone()
            return int(found[0] or 0) if found else 0

    def close(self) -> None:
        self._stop()
        if self._db is not None:
            self._db.close()
            self._db = None

    # -- prepare ----------------------------------------------------------------

    def _open(self):
        if self._db is None:
            try:
                self._db = _connect(self.url)
            except psycopg2.OperationalError as e:
                raise SourceNotReady(f"cannot connect to the source database: {str(e).strip()}") from e
            self._db.autocommit = True
            self._types = _Types(self._db)
        return self._db

    def _check_tables(self, cur) -> list[_Table]:
        tables = []
        for resource in self.tables:
            table = _load_table(cur, resource, self.keys.get(resource, ()))
            if table is None:
                raise SourceNotReady(f"table {resource!r} does not exist in database {self.database!r}; "
                                     f"its tables are: {', '.join(_user_tables(cur)) or 'none'}")
            problem = _capturable(table)
            if problem:
                raise SourceNotReady(problem)
            tables.append(table)
        return tables

    def _install_bookkeeping(self, cur) -> None:
        try:
            cur.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING}")
        except psycopg2.errors.InsufficientPrivilege as e:
            raise SourceNotReady(f"capture keeps its state in schema {BOOKKEEPING}: run GRANT CREATE ON DATABASE "
                                 f"{_quote(self.database)} TO the capture role, or create the schema for it") from e
        cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.chunks (slot text, resource text, position bigint, "
                    "point bigint NOT NULL, last_key text, done boolean NOT NULL, "
                    "PRIMARY KEY (slot, resource, position))")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.schemas (slot text, resource text, position bigint, "
                    "schema text NOT NULL, PRIMARY KEY (slot, resource, position))")
        cur.execute(f"CREATE TABLE IF NOT EXISTS {BOOKKEEPING}.copies (slot text, resource text, digest text, "
                    "position bigint, n integer NOT NULL, PRIMARY KEY (slot, resource, digest, position))")
        cur.execute(f"CREATE INDEX IF NOT EXISTS copies_by_position ON {BOOKKEEPING}.copies (slot, position)")

    def _ensure_publication(self, cur, user: str, tables: list[_Table]) -> None:
        names = ", ".join(_qualified(t.resource) for t in tables)
        cur.execute("SELECT puballtables, pg_get_userbyid(pubowner) = current_user FROM pg_publication "
                    "WHERE pubname = %s", (self.publication,))
        found = cur.fetchone()
        if found is None:
            try:
                cur.execute(f"CREATE PUBLICATION {_quote(self.publication)} FOR TABLE {names}")
            except psycopg2.errors.InsufficientPrivilege as e:
                raise SourceNotReady(f"role {user!r} may not publish the tables: have their owner run "
                                     f"CREATE PUBLICATION {_quote(self.publication)} FOR TABLE {names}") from e
            return
        all_tables, ours = found
        if all_tables:
            return
        cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (self.publication,))
        published = set(cur.fetchall())
        missing = ", ".join(_qualified(t.resource) for t in tables if _split(t.resource) not in published)
        if not missing:
            return
        command = f"ALTER PUBLICATION {_quote(self.publication)} ADD TABLE {missing}"
        cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        if not (ours or cur.fetchone()[0]):
            raise SourceNotReady(f"publication {self.publication!r} does not publish {missing} and role {user!r} "
                                 f"does not own it: have its owner run {command}")
        cur.execute(command)

    def _ensure_slot(self, cur) -> None:
        cur.execute("SELECT database, plugin FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
        found = cur.fetchone()
        if found is not None:
            if found != (self.database, "pgoutput"):
                raise SourceNotReady(f"replication slot {self.slot!r} belongs to database {found[0]!r} with plugin "
                                     f"{found[1]!r}: configure another slot name for this source")
            return
        conn = _connect(self.url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            conn.cursor().execute(f"CREATE_REPLICATION_SLOT {_quote(self.slot)} LOGICAL pgoutput NOEXPORT_SNAPSHOT")
        finally:
            conn.close()
        # A new slot continues no earlier stream: every table is snapshotted afresh.
        for name in ("chunks", "schemas", "copies"):
            cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE slot = %s", (self.slot,))

    # -- resuming ---------------------------------------------------------------

    def _resume(self, after: int) -> None:
        """Forget what was read after ``after`` and restart from the slot."""
        self._stop()
        self._pending, self._overflows, self._copy_log = [], [], {}
        self._copies, self._relations, self._tables, self._parsers = {}, {}, {}, {}
        with self._open().cursor() as cur:
            for name in ("chunks", "schemas", "copies"):
                cur.execute(f"DELETE FROM {BOOKKEEPING}.{name} WHERE slot = %s AND position > %s", (self.slot, after))
            cur.execute(f"SELECT resource, position, point, last_key, done FROM {BOOKKEEPING}.chunks "
                        "WHERE slot = %s ORDER BY position", (self.slot,))
            self._chunks = {}
            for resource, position, point, last_key, done in cur.fetchall():
                self._chunks.setdefault(resource, []).append(
                    _Chunk(position, point, json.loads(last_key) if last_key else None, done))
            cur.execute(f"SELECT resource, position, schema FROM {BOOKKEEPING}.schemas WHERE slot = %s "
                        "ORDER BY position", (self.slot,))
            self._schemas = {}
            for resource, position, schema in cur.fetchall():
                self._schemas.setdefault(resource, []).append((position, TableSchema.from_dict(json.loads(schema))))
        self._position = after

    def _stop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._session is not None:
            self._session.connection.close()
            self._session = None

    # -- reading ----------------------------------------------------------------

    def _read(self, limit: int) -> list[ch.Change]:
        changes = self._take_pending(limit)
        deadline = time.monotonic() + READ_WAIT
        target = None
        while len(changes) < limit:
            if self._session is None and self._unsnapshotted():
                self._start_session()
            if self._session is not None and self._session.active:
                chunk = self._session_chunk(limit - len(changes))
                if chunk is None:
                    self._end_session()
                else:
                    changes += chunk
                continue
            if self._stream is None:
                self._stream = _Stream(self.url, self.slot, self.publication)
            if target is None:
                target = self._current_lsn()
            unit = self._stream.next(target, deadline)
            if unit is None:
                break
            if isinstance(unit, pgoutput.Message):
                if self._session is not None and unit.content.decode().rstrip() == self._session.marker:
                    self._session.active = True
                continue
            self._pending = self._transaction(unit)
            if self._pending and changes and len(changes) + len(self._pending) > limit:
                break  # the next read returns it whole
            changes += self._take_pending(limit - len(changes))
            if unit.commit.end_lsn >= target and changes:
                break  # all that was committed when this read began: hand it over now, not when the batch is full
        if not changes:
            self._heartbeat()
        elif self._session is not None:
            self._stream.keep_alive()  # the stream waits while the session reads
        return changes

    def _take_pending(self, room: int) -> list[ch.Change]:
        taken, self._pending = self._pending[:room], self._pending[room:]
        return taken

    def _safe_lsn(self, position: int) -> int:
        """An LSN the slot may confirm once ``position`` is stored: the commit LSN
        of a streamed change (the transaction is sent again after a restart and
        skipped by position), an LSN inside the marker of a snapshot row."""
        for first, last, commit_lsn in self._overflows:
            if first <= position <= last:
                return commit_lsn
        return position >> SHIFT

    def _current_lsn(self) -> int:
        with self._open().cursor() as cur:
            cur.execute("SELECT pg_current_wal_flush_lsn()")
            return lsn_int(cur.fetchone()[0])

    def _heartbeat(self) -> None:
        """On a quiet stream, let the slot follow the server once everything
        read is acknowledged (WAL of other tables and databases would pile up)."""
        stream = self._stream
        caught_up = self._acknowledged >= (self._position or 0) and not self._pending
        if stream is not None and caught_up and self._session is None and not stream.in_transaction:
            stream.confirm(stream.wal_end)

    # -- snapshot sessions --------------------------------------------------------

    def _unsnapshotted(self) -> list[str]:
        return sorted(r for r in self.tables if not (self._chunks.get(r) and self._chunks[r][-1].done))

    def _start_session(self) -> None:
        """Write the marker, then export a snapshot from a temporary slot."""
        marker = f"{MARKER_PREFIX} {uuid.uuid4().hex}"
        with self._open().cursor() as cur:
            cur.execute("SELECT pg_logical_emit_message(false, %s, %s)", (MARKER_PREFIX, marker.ljust(MARKER_PAD)))
            marker_end = lsn_int(cur.fetchone()[0])
        _check_lsn(marker_end)
        replication = _connect(self.url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            with replication.cursor() as cur:
                cur.execute(f"CREATE_REPLICATION_SLOT {_quote(self.slot[:40] + '_' + marker[-16:])} "
                            "TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT")
                _, point, snapshot, _ = cur.fetchone()
            reader = _connect(self.url)
            reader.set_session(isolation_level="REPEATABLE READ", readonly=True)
            reader.cursor().execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
        finally:
            replication.close()  # drops the temporary slot; the reader keeps the snapshot
        start = (marker_end - MARKER_PAD) << SHIFT
        self._session = _Session(marker, lsn_int(point), reader, self._unsnapshotted(), start, marker_end << SHIFT,
                                 datetime.now(timezone.utc))

    def _end_session(self) -> None:
        self._session.connection.close()
        self._session = None

    def _session_chunk(self, room: int) -> list[ch.Change] | None:
        """The next chunk of the session's current table; None when the session is over."""
        s = self._session
        if not s.resources or s.end - s.next < 2 * self.snapshot_chunk + 10:
            return None  # done, or the gap is nearly full: the next session goes on
        if s.cursor is None:
            self._open_table(s, s.resources[0])
        changes = []
        schema = s.table.schema
        if schema != self._schema_before(s.table.resource, s.next + 1):
            changes.append(self._schema_change(s.position(), s.table.resource, schema, s.started))
        size = max(1, min(self.snapshot_chunk, room - len(changes)))
        rows = s.cursor.fetchmany(size)
        last_key = None
        for values in rows:
            changes += self._snapshot_rows(s, values)
            last_key = [values[-1]] if s.table.keyless else [values[s.table.columns.index(s.table.column(k))]
                                                              for k in s.table.key]
        done = len(rows) < size
        chunks = self._chunks.setdefault(s.table.resource, [])
        if last_key is None and chunks:
            last_key = chunks[-1].last_key
        position = changes[-1].position if changes else s.position()
        chunks.append(_Chunk(position, s.point, last_key, done))
        with self._open().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.chunks VALUES (%s, %s, %s, %s, %s, %s)",
                        (self.slot, s.table.resource, position, s.point,
                         json.dumps(last_key) if last_key is not None else None, done))
        if done:
            s.cursor.close()
            s.cursor = None
            s.resources.pop(0)
        return changes

    def _open_table(self, s: _Session, resource: str) -> None:
        """Load the table in the snapshot and open a cursor on its rows after the last stored key."""
        with s.connection.cursor() as cur:
            s.table = _load_table(cur, resource, self.keys.get(resource, ()))
        if s.table is None:
            raise SourceNotReady(f"table {resource!r} no longer exists in database {self.database!r}")
        chunks = self._chunks.get(resource)
        last_key = chunks[-1].last_key if chunks else None
        sql, key = _snapshot_sql(s.table)
        if last_key is not None:
            sql += f" WHERE ({key}) > ({', '.join(['%s'] * len(last_key))})"
        s.cursor = s.connection.cursor(name="exchange_snapshot")
        _raw_text(s.cursor)
        s.cursor.execute(f"{sql} ORDER BY {key}", last_key)

    def _snapshot_rows(self, s: _Session, values: tuple) -> list[ch.Change]:
        table = s.table
        row = self._types.row(table, values)
        if not table.keyless:
            return [ch.Change(s.position(), table.resource, ch.SNAPSHOT, after=row, commit_time=s.started)]
        count = int(values[len(table.columns)])
        changes = [ch.Change(s.position(), table.resource, ch.SNAPSHOT, after={**row, COPY_COLUMN: copy},
                             commit_time=s.started) for copy in range(count)]
        self._set_copies(table.resource, _digest(row), changes[-1].position, count)
        return changes

    # -- the stream ---------------------------------------------------------------

    def _transaction(self, unit: _Transaction) -> list[ch.Change]:
        """The changes of one committed transaction to emit, with their positions."""
        commit = unit.commit
        _check_lsn(commit.end_lsn)
        base, capacity = commit.commit_lsn << SHIFT, (commit.end_lsn - commit.commit_lsn) << SHIFT
        emitted: dict[str, TableSchema | None] = {}  # the last schema emitted, by table
        changes: list[ch.Change] = []
        index = 0

        def next_position() -> int:
            nonlocal index
            index += 1
            if index >= capacity:
                raise UnsupportedChange(f"transaction {unit.begin.xid} has more changes than positions can encode")
            return base + index

        def add(position: int, **fields: Any) -> None:
            if position > self._position:  # else the node has it already
                changes.append(ch.Change(position, commit_time=commit.commit_time, txid=str(unit.begin.xid),
                                         **fields))

        rows = []
        for message in unit.messages:
            if isinstance(message, pgoutput.Relation):
                self._relations[message.oid] = message
                self._tables.pop(message.oid, None)
            elif isinstance(message, pgoutput.Truncate):
                self._refuse_truncate(message, commit)
            elif (table := self._relation_table(message.oid)) is not None:
                rows += [(table, *change) for change in self._row_changes(table, message, commit.commit_lsn)]
        self._load_copies([(t.resource, image) for t, _, before, after in rows if t.keyless
                           for image in (before, after) if image is not None])
        for table, op, before, after in rows:
            resource, schema = table.resource, table.schema
            if resource not in emitted:
                emitted[resource] = self._schema_before(resource, base)
            if emitted[resource] is not schema:
                if emitted[resource] != schema:
                    position = next_position()
                    if position > self._position:
                        self._record_schema(position, resource, schema)
                    add(position, table=resource, op=ch.SCHEMA, schema=schema)
                emitted[resource] = schema
            position = next_position()
            add(position, table=resource, op=op, before=self._with_copy(table, before, -1, position),
                after=self._with_copy(table, after, 1, position))
        if index >> SHIFT:
            self._overflows.append((base + 1, base + index, commit.commit_lsn))
        return changes

    def _refuse_truncate(self, message: pgoutput.Truncate, commit: pgoutput.Commit) -> None:
        names = [t.resource for t in (self._relation_table(oid) for oid in message.oids) if t is not None]
        if names:
            raise UnsupportedChange(
                f"TRUNCATE of {', '.join(names)} committed at LSN {lsn_text(commit.commit_lsn)} cannot be captured "
                "as row deletes, so capture stops here. Delete the rows with DELETE instead; to go on, either "
                f"skip it (the hub keeps the truncated rows): SELECT pg_replication_slot_advance({self.slot!r}, "
                f"'{lsn_text(commit.end_lsn)}') with the node stopped, or capture afresh into a new node store "
                f"after SELECT pg_drop_replication_slot({self.slot!r})")

    def _relation_table(self, oid: int) -> _Table | None:
        """The captured table the last relation message for ``oid`` describes
        (None when not captured): columns as sent, the rest from the catalog."""
        if oid not in self._tables:
            relation = self._relations[oid]
            resource = next((r for r in self.tables if _split(r) == (relation.namespace, relation.name)), None)
            self._tables[oid] = None if resource is None else self._load_relation(resource, relation)
            self._parsers[oid] = [self._types.parser(c.type_oid) for c in relation.columns]
        return self._tables[oid]

    def _load_relation(self, resource: str, relation: pgoutput.Relation) -> _Table:
        with self._open().cursor() as cur:
            current = _load_table(cur, resource, self.keys.get(resource, ()))
        if current is None:
            raise SourceNotReady(f"table {resource!r} no longer exists in database {self.database!r}")
        columns = []
        for c in relation.columns:
            known = current.column(c.name)
            type_name = self._types.name(c.type_oid, c.typmod)
            if known is not None and known.type_oid == c.type_oid:
                columns.append(_Column(c.name, type_name, c.type_oid, known.notnull, known.default, known.collation))
            else:
                columns.append(_Column(c.name, type_name, c.type_oid))
        return current.with_columns(columns)

    def _row_changes(self, table: _Table, message: Any, commit_lsn: int) -> list[tuple[str, dict | None, dict | None]]:
        """(op, before, after) for a row message, as far as the regions let it through."""
        relation = self._relations[message.oid]
        if isinstance(message, pgoutput.Insert):
            before, after = None, self._image(table, relation, message.new)
        elif isinstance(message, pgoutput.Delete):
            before, after = self._old_image(table, relation, message.old), None
        else:
            old = self._old_image(table, relation, message.old) if message.old is not None else None
            after = self._image(table, relation, message.new)
            if old is not None and table.identity == "f":
                after = {**{k: v for k, v in old.items() if k not in after}, **after}  # unchanged TOASTed values
                after = {c.name: after[c.name] for c in table.columns if c.name in after}
            before = old if old is not None else {k: after[k] for k in table.key if k in after}
        keep_before = before is not None and self._in_region(table, before, commit_lsn)
        keep_after = after is not None and self._in_region(table, after, commit_lsn)
        if keep_before and keep_after:
            return [(ch.UPDATE, before, after)]
        if keep_after:
            return [(ch.INSERT, None, after)]
        if keep_before:
            return [(ch.DELETE, before, None)]
        return []

    def _image(self, table: _Table, relation: pgoutput.Relation, values: tuple) -> dict[str, Any]:
        return {c.name: None if v is None else parse(v)
                for c, parse, v in zip(relation.columns, self._parsers[relation.oid], values) if v is not UNCHANGED}

    def _old_image(self, table: _Table, relation: pgoutput.Relation, values: tuple) -> dict[str, Any]:
        image = self._image(table, relation, values)
        if table.identity == "f":
            return image
        return {c.name: image[c.name] for c in relation.columns if c.key and c.name in image}

    # -- regions ------------------------------------------------------------------

    def _in_region(self, table: _Table, image: dict[str, Any], commit_lsn: int) -> bool:
        """Whether the row is in a snapshot region older than the commit."""
        chunks = self._chunks.get(table.resource)
        if not chunks:
            return False
        if chunks[-1].done and chunks[0].point == chunks[-1].point:  # points only grow along the chunks
            return commit_lsn >= chunks[0].point  # the usual case: one snapshot read the whole table
        lower = None
        for i, chunk in enumerate(chunks):
            last_of_region = i + 1 == len(chunks) or chunks[i + 1].point != chunk.point
            if not last_of_region:
                continue
            upper = chunk.last_key
            above_lower = lower is None or self._key_after(table, image, lower)
            below_upper = chunk.done or (upper is not None and not self._key_after(table, image, upper))
            if above_lower and below_upper:
                return commit_lsn >= chunk.point
            lower = upper
        return False

    def _key_after(self, table: _Table, image: dict[str, Any], bound: list[str | None]) -> bool:
        """Whether the row's key sorts after ``bound`` (as the snapshot's ORDER BY sorts)."""
        with self._open().cursor() as cur:
            if table.keyless:
                values = [to_text(image.get(c.name)) for c in table.columns]
                row = ", ".join(f"CAST(%s AS {c.type})" for c in table.columns)
                cur.execute(f"SELECT CAST(ROW({row}) AS {_qualified(table.resource)})::text COLLATE \"C\" > %s",
                            (*values, bound[0]))
            else:
                typed = []
                for name in table.key:
                    column = table.column(name)
                    typed.append(f"CAST(%s AS {column.type})" + (f" COLLATE {column.collation}" if column.collation
                                                                 else ""))
                cur.execute(f"SELECT ROW({', '.join(typed)}) > ROW({', '.join(typed)})",
                            (*[to_text(image.get(k)) for k in table.key], *bound))
            return cur.fetchone()[0]

    # -- schemas and copies --------------------------------------------------------

    def _schema_before(self, resource: str, position: int) -> TableSchema | None:
        """The schema last emitted for ``resource`` before ``position``."""
        found = [schema for at, schema in self._schemas.get(resource, []) if at < position]
        return found[-1] if found else None

    def _schema_change(self, position: int, resource: str, schema: TableSchema, at: datetime) -> ch.Change:
        self._record_schema(position, resource, schema)
        return ch.Change(position, resource, ch.SCHEMA, commit_time=at, schema=schema)

    def _record_schema(self, position: int, resource: str, schema: TableSchema) -> None:
        history = self._schemas.setdefault(resource, [])
        if any(at == position for at, _ in history):
            return
        history.append((position, schema))
        history.sort(key=lambda entry: entry[0])
        with self._open().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.schemas VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (self.slot, resource, position, json.dumps(schema.to_dict(), ensure_ascii=False)))

    def _with_copy(self, table: _Table, image: dict | None, delta: int, position: int) -> dict | None:
        """``image`` with its copy number (keyless tables), counting the copies of its content."""
        if image is None or not table.keyless or position <= self._position:
            return image
        digest = _digest(image)
        count = self._copies[(table.resource, digest)]
        copy = count if delta > 0 else max(count - 1, 0)
        self._set_copies(table.resource, digest, position, max(count + delta, 0))
        return {**image, COPY_COLUMN: copy}

    def _load_copies(self, images: list[tuple[str, dict[str, Any]]]) -> None:
        """Fetch the copy counts of row contents not counted yet, one query per table."""
        wanted: dict[str, set[str]] = {}
        for resource, image in images:
            digest = _digest(image)
            if (resource, digest) not in self._copies:
                wanted.setdefault(resource, set()).add(digest)
        with self._open().cursor() as cur:
            for resource, digests in wanted.items():
                # One index probe per digest: a plain `digest = ANY(...)` scans the whole
                # slot's range until the table has been analysed.
                cur.execute(f"SELECT d, (SELECT n FROM {BOOKKEEPING}.copies WHERE slot = %s AND resource = %s "
                            "AND digest = d ORDER BY position DESC LIMIT 1) FROM unnest(%s::text[]) d",
                            (self.slot, resource, list(digests)))
                self._copies.update(((resource, d), n or 0) for d, n in cur.fetchall())

    def _set_copies(self, resource: str, digest: str, position: int, count: int) -> None:
        self._copies[(resource, digest)] = count
        self._copy_log[(resource, digest, position)] = count  # an update may count the same content twice

    def _prune_copies(self, position: int) -> None:
        """Forget the copy counts that counts stored up to ``position`` replace."""
        with self._open().cursor() as cur:
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies c USING {BOOKKEEPING}.copies d WHERE d.slot = %s "
                        "AND d.position > %s AND d.position <= %s AND c.slot = d.slot AND c.resource = d.resource "
                        "AND c.digest = d.digest AND c.position < d.position", (self.slot, self._pruned, position))
            cur.execute(f"DELETE FROM {BOOKKEEPING}.copies WHERE slot = %s AND n = 0 AND position > %s "
                        "AND position <= %s", (self.slot, self._pruned, position))
        self._pruned = position

    def _save_copies(self) -> None:
        """Store the copy counts of what this read returns (before the node can store it)."""
        if self._copy_log:
            with self._open().cursor() as cur:
                psycopg2.extras.execute_values(
                    cur, f"INSERT INTO {BOOKKEEPING}.copies VALUES %s ON CONFLICT DO NOTHING",
                    [(self.slot, *key, count) for key, count in self._copy_log.items()])
            self._copy_log = {}


# -- apply target ---------------------------------------------------------------

_SQLITE_AFFINITIES = (("INT", "bigint"), ("CHAR", "text"), ("CLOB", "text"), ("TEXT", "text"), ("BLOB", "bytea"),
                      ("REAL", "double precision"), ("FLOA", "double precision"), ("DOUB", "double precision"))


def _target_type(declared: str) -> str:
    """PostgreSQL's type for a declared column type.  PostgreSQL reports types
    in lower case; upper-case (or empty) ones come from SQLite and map by its
    affinity rules (numeric affinity and untyped columns become text)."""
    if declared.startswith('"') or declared != declared.upper():
        return declared
    upper = declared.upper()
    return next((pg for marker, pg in _SQLITE_AFFINITIES if marker in upper), "text")


def _native(column: Column) -> bool:
    return _target_type(column.type) == column.type


class PostgresTarget:
    """Rebuilds tables from replayed row operations in the database at ``url``."""

    def __init__(self, url: str):
        self._db = _connect(url)

    def apply_schema(self, schema: TableSchema) -> None:
        """Create the table, or alter it to match ``schema``."""
        try:
            with self._db.cursor() as cur:
                current = _load_table(cur, schema.name)
                if current is None:
                    schema_name, _ = _split(schema.name)
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(schema_name)}")
                    cur.execute(_create_sql(schema))
                else:
                    for statement in _alter_sql(current, schema):
                        cur.execute(statement)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def apply(self, ops: Sequence[RowOp], checkpoint: tuple[str, int] | None = None) -> None:
        """Apply row operations in order, in one transaction (large insert runs
        with COPY); a ``checkpoint`` (name, position) is recorded in the same
        transaction."""
        try:
            with self._db.cursor() as cur:
                for (table, op, columns, key, nulls), run in groupby(ops, key=_shape):
                    run = list(run)
                    if op == ch.INSERT and len(run) >= COPY_MIN:
                        _copy_in(cur, table, columns, run)
                    elif op != ch.UPDATE or columns:
                        psycopg2.extras.execute_batch(cur, _row_sql(table, op, columns, key, nulls),
                                                      [_params(o) for o in run], page_size=200)
                if checkpoint is not None:
                    cur.execute(f"CREATE SCHEMA IF NOT EXISTS {BOOKKEEPING}")
                    cur.execute(f"CREATE TABLE IF NOT EXISTS {CHECKPOINTS} (name text PRIMARY KEY, position bigint)")
                    cur.execute(f"INSERT INTO {CHECKPOINTS} VALUES (%s, %s) "
                                "ON CONFLICT (name) DO UPDATE SET position = excluded.position", checkpoint)
            self._db.commit()
        except BaseException:
            self._db.rollback()
            raise

    def checkpoint(self, name: str) -> int | None:
        """The position last recorded under ``name`` (None when there is none)."""
        try:
            with self._db.cursor() as cur:
                cur.execute("SELECT to_regclass(%s)", (CHECKPOINTS,))
                if cur.fetchone()[0] is None:
                    return None
                cur.execute(f"SELECT position FROM {CHECKPOINTS} WHERE name = %s", (name,))
                found = cur.fetchone()
                return found[0] if found else None
        finally:
            self._db.rollback()

    def close(self) -> None:
        self._db.close()


def _column_sql(column: Column) -> str:
    parts = [_quote(column.name), _target_type(column.type)]
    if column.notnull:
        parts.append("NOT NULL")
    if _default(column) is not None:
        parts.append(f"DEFAULT {column.default}")
    return " ".join(parts)


def _default(column: Column) -> str | None:
    """The default to declare: PostgreSQL's own, except sequences (replay writes every value)."""
    if column.default is None or not _native(column) or "nextval(" in column.default:
        return None
    return column.default


def _primary_key(schema: TableSchema) -> tuple[str, ...]:
    """The key to declare (none for keyless tables, whose columns may be null)."""
    return () if COPY_COLUMN in schema.primary_key else schema.primary_key


def _create_sql(schema: TableSchema) -> str:
    definitions = [_column_sql(c) for c in schema.columns]
    if _primary_key(schema):
        definitions.append(f"PRIMARY KEY ({', '.join(_quote(k) for k in schema.primary_key)})")
    return f"CREATE TABLE {_qualified(schema.name)} ({', '.join(definitions)})"


def _alter_sql(current: _Table, schema: TableSchema) -> list[str]:
    """ALTER TABLE statements that turn ``current`` into ``schema``."""
    table = _qualified(schema.name)
    wanted = {c.name: c for c in schema.columns}
    key = _primary_key(schema)
    statements = [f"ALTER TABLE {table} DROP COLUMN {_quote(c.name)}" for c in current.columns if c.name not in wanted]
    if current.primary_key != key and current.primary_key:
        statements.append(f"ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "
                          f"{_quote(_split(schema.name)[1] + '_pkey')}")
    for column in schema.columns:
        have = current.column(column.name)
        if have is None:
            statements.append(f"ALTER TABLE {table} ADD COLUMN {_column_sql(column)}")
            continue
        name, new_type = _quote(column.name), _target_type(column.type)
        if have.type != new_type:
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {new_type} USING {name}::{new_type}")
        if have.notnull != (column.notnull or column.name in key):
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {name} {'SET' if column.notnull else 'DROP'} NOT NULL")
        if have.default != _default(column):
            statements.append(f"ALTER TABLE {table} ALTER COLUMN {name} " +
                              (f"SET DEFAULT {_default(column)}" if _default(column) else "DROP DEFAULT"))
    if current.primary_key != key and key:
        statements.append(f"ALTER TABLE {table} ADD PRIMARY KEY ({', '.join(_quote(k) for k in key)})")
    return statements


def _shape(op: RowOp) -> tuple:
    """Consecutive operations of one shape share one statement."""
    return op.table, op.op, tuple(op.values), tuple(op.key), tuple(v is None for v in op.key.values())


def _params(op: RowOp) -> list[str | None]:
    key = [to_text(v) for v in op.key.values() if v is not None]
    if op.op == ch.INSERT:
        return [to_text(v) for v in op.values.values()]
    if op.op == ch.UPDATE:
        return [to_text(v) for v in op.values.values()] + key
    return key


def _row_sql(table: str, op: str, columns: tuple[str, ...], key: tuple[str, ...], nulls: tuple[bool, ...]) -> str:
    where = " AND ".join(f"{_quote(k)} IS NULL" if null else f"{_quote(k)} = %s" for k, null in zip(key, nulls))
    if op == ch.INSERT:
        return (f"INSERT INTO {_qualified(table)} ({', '.join(_quote(c) for c in columns)}) "
                f"VALUES ({', '.join(['%s'] * len(columns))})")
    if op == ch.UPDATE:
        return f"UPDATE {_qualified(table)} SET {', '.join(f'{_quote(c)} = %s' for c in columns)} WHERE {where}"
    if op == ch.DELETE:
        return f"DELETE FROM {_qualified(table)} WHERE {where}"
    raise ValueError(f"unknown row operation {op!r}")


def _copy_in(cur, table: str, columns: tuple[str, ...], run: list[RowOp]) -> None:
    data = io.StringIO()
    for op in run:
        data.write("\t".join(_copy_field(to_text(v)) for v in op.values.values()) + "\n")
    data.seek(0)
    cur.copy_expert(f"COPY {_qualified(table)} ({', '.join(_quote(c) for c in columns)}) FROM STDIN", data)


def _copy_field(text: str | None) -> str:
    if text is None:
        return "\\N"
    return text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")


# -- table reader -----------------------------------------------------------------

class PostgresReader:
    """Reads the tables of a PostgreSQL database, with the values capture produces."""

    def __init__(self, url: str):
        self._db = _connect(url)
        self._db.set_session(readonly=True)
        self._types = _Types(self._db)
        self._streaming = 0  # rows() generators running: their named cursors need the transaction

    def tables(self) -> list[str]:
        """User tables (``table`` in schema public, else ``schema.table``), sorted;
        capture bookkeeping excluded."""
        try:
            with self._db.cursor() as cur:
                return _user_tables(cur)
        finally:
            self._end_transaction()

    def table_schema(self, table: str) -> TableSchema:
        return self._table(table).schema

    def rows(self, table: str, order_by: Sequence[str] | None = None) -> Iterator[dict[str, Any]]:
        """Rows of ``table`` as dicts, streamed, ordered by ``order_by``, else by
        the key: NULLs first, text by code point (as exchange.tools.verify compares)."""
        t = self._table(table)
        schema = t.schema
        names = list(schema.column_names)
        source = f"{_qualified(table)} t"
        if t.keyless:
            source = (f"(SELECT t.*, row_number() OVER (PARTITION BY t::text) - 1 AS {COPY_COLUMN} "
                      f"FROM {_qualified(table)} t) t")
        order = [self._order_sql(t, name) for name in order_by or schema.primary_key or names]
        cursor = self._db.cursor(name=f"exchange_rows_{self._streaming}")
        self._streaming += 1
        try:
            _raw_text(cursor)
            cursor.execute(f"SELECT {', '.join(f't.{_quote(n)}' for n in names)} FROM {source} "
                           f"ORDER BY {', '.join(order)}")
            parsers = [self._types.parser(c.type_oid) for c in t.columns] + ([int] if t.keyless else [])
            while batch := cursor.fetchmany(_FETCH):
                for values in batch:
                    yield {n: None if v is None else p(v) for n, p, v in zip(names, parsers, values)}
        finally:
            self._streaming -= 1
            if not self._db.closed:
                cursor.close()
                self._end_transaction()

    def close(self) -> None:
        self._db.close()

    def _end_transaction(self) -> None:
        if not self._streaming:
            self._db.rollback()

    def _table(self, table: str) -> _Table:
        try:
            with self._db.cursor() as cur:
                found = _load_table(cur, table)
        finally:
            self._end_transaction()
        if found is None:
            raise LookupError(f"table {table!r} does not exist")
        return found

    def _order_sql(self, table: _Table, name: str) -> str:
        column = table.column(name)
        expression = f"t.{_quote(name)}"
        if column is not None and column.collation:
            expression += ' COLLATE "C"'
        elif column is not None and self._types.parser(column.type_oid) is pgoutput.text:
            expression += '::text COLLATE "C"'  # kept as text (interval, json, ...): sort as text
        return expression + " NULLS FIRST"
