"""Snapshot sessions: the captured tables' rows, read in chunks at exported snapshots, gap-free and duplicate-free.

* A session writes its marker (adapters/postgres/position.py), then creates
  a temporary slot with an exported snapshot, imports it into a REPEATABLE
  READ transaction and reads the tables that are not done yet, each from the
  key after its last stored chunk, in key order, ``snapshot_chunk`` rows per
  chunk: each chunk of a keyed table is one ``COPY (SELECT ... WHERE key >
  last ORDER BY key LIMIT n) TO STDOUT`` in that transaction, split and
  converted column by column (copytext.py, ``Types.rows``); a table without
  key is read through a cursor over its distinct rows.  The temporary
  slot's consistent point ``P`` splits the WAL exactly: commits starting
  before ``P`` are visible in the snapshot, later ones are not.  The
  session's rows are handed out once the stream reaches the marker.
* Each chunk is recorded (position of its last row, ``P``, its last key,
  done flag; table ``exchange_capture.chunks``).  The key ranges read at one
  snapshot form a *region*; a streamed change to a row is emitted only when
  its key lies in a region whose ``P`` is at or before the change's commit
  LSN.  Older changes are already in the rows the region's snapshot read;
  rows not in any region yet will be read by a later session, which sees
  them.  This is the rule PostgreSQL's own table synchronisation uses, per
  key range instead of per table.
* So when the source stops mid-snapshot, the rows the node stored keep
  their region, and the next session reads only the rest, at a new
  snapshot, with its own ``P``: nothing is read twice, nothing is missed,
  including rows deleted or changed in between.  Whether a key lies in a
  region is decided by PostgreSQL (row comparison with the columns' types
  and collations), only for tables whose snapshot was split.

* Snapshots come in *passes*: pass 0 is a table's first snapshot; a
  re-snapshot request (resnapshot.py) starts the next pass of a table with a
  start row (no point, no key) in ``chunks``.  A pass after the first emits
  SNAPSHOT_BEGIN before its first row and SNAPSHOT_END after its last, so
  the node deletes what the pass no longer found.  Regions are those of the
  current pass; a streamed change to a key the current pass has not read
  yet is emitted when an earlier pass of the table completed (the node holds
  the table, and the pass will read the key later anyway), else not.

A snapshot waits for the transactions running when it starts.  While it
reads a table it logs its progress (rows read in the pass, of about how
many, and the rate) every ``PROGRESS_EVERY`` seconds and when the table is done.
"""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

import psycopg2.extras

from adapters.passes import Chunk, Regions
from adapters.postgres import copytext, pgoutput
from adapters.postgres.catalog import Table, estimated_rows, load_table
from adapters.postgres.dialect import BOOKKEEPING, COPY_COLUMN, connect, qualified, quote, raw_text
from adapters.postgres.keyless import CopyCounts, digest
from adapters.postgres.position import check_lsn, lsn_int, pack
from adapters.postgres.schema_history import SchemaHistory
from adapters.postgres.types import Types, to_text
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, SourceNotReady

MARKER_PREFIX = "exchange_snapshot"
REQUEST_PREFIX = "exchange_resnapshot"  # transactional message: re-read the tables it names (resnapshot.py)
MARKER_PAD = 4096  # bytes of WAL per marker: its gap holds MARKER_PAD << SHIFT positions
PROGRESS_EVERY = 10.0  # seconds between progress lines of a table's snapshot

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One exported snapshot, read table by table into the marker's gap."""

    marker: str  # the marker message's content
    point: int  # the exported snapshot's consistent point (LSN)
    connection: Any  # REPEATABLE READ transaction in the exported snapshot
    resources: list[str]
    next: int  # last position handed out
    end: int  # first position past the gap
    started: datetime
    active: bool = False  # the stream has reached the marker
    cursor: Any = None  # the open cursor over a keyless table's rows
    table: Table | None = None  # the table being read
    last_key: list[str] | None = None  # the text values of the last key the session read of it
    progress: _Progress | None = None  # of the table's pass

    def position(self) -> Position:
        self.next += 1
        if self.next >= self.end:
            raise RuntimeError("snapshot gap exhausted")  # Snapshots.chunk ends sessions long before
        return Position(self.next)


@dataclass
class _Progress:
    """A table's snapshot pass as its progress lines tell it."""

    resource: str
    pass_no: int
    rows: int  # read in the pass so far, by this session and earlier ones
    estimate: int  # the planner's row count of the table
    started: float = field(default_factory=time.monotonic)  # when this session began reading it
    read: int = 0  # rows this session read
    next_line: float = 0.0

    def add(self, rows: int, done: bool) -> None:
        """Count ``rows`` read; log a line when the table is done or the last line is old enough."""
        self.rows += rows
        self.read += rows
        now = time.monotonic()
        if not done and now < self.next_line:
            return
        self.next_line = now + PROGRESS_EVERY
        rate = self.read / max(now - self.started, 1e-6)
        if done:
            log.info("snapshot of %s (pass %d) done: %d rows read, %.0f rows/s", self.resource, self.pass_no,
                     self.rows, rate, extra={"table": self.resource, "rows": self.rows, "pass": self.pass_no})
        else:
            log.info("snapshot of %s (pass %d): %d of about %d rows read, %.0f rows/s", self.resource, self.pass_no,
                     self.rows, max(self.estimate, self.rows), rate,
                     extra={"table": self.resource, "rows": self.rows, "pass": self.pass_no})


class Snapshots:
    """The snapshot progress of the captured ``tables`` and the session reading them.

    ``db`` returns the source's connection; ``history`` and ``copies`` are the
    source's schema history and keyless copy counts, which snapshot rows extend.
    """

    def __init__(self, url: str, slot: str, database: str, tables: Sequence[str], keys: dict[str, tuple[str, ...]],
                 chunk_size: int, db: Callable[[], Any], types: Types, history: SchemaHistory, copies: CopyCounts):
        self.url, self.slot, self.database = url, slot, database
        self.tables, self.keys, self.chunk_size = tables, keys, chunk_size
        self._db, self._types, self._history, self._copies = db, types, history, copies
        self._regions = Regions()  # chunks are keyed by the text values of the last key read
        self.session: Session | None = None

    def load(self, cur) -> None:
        """Read the stored chunks (after the rows beyond the node's position were deleted),
        forgetting passes older than the last complete one."""
        cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks c WHERE slot = %s AND pass < (SELECT max(pass) FROM "
                    f"{BOOKKEEPING}.chunks d WHERE d.slot = c.slot AND d.resource = c.resource AND d.done)",
                    (self.slot,))
        cur.execute(f"SELECT resource, position, point, last_key, done, pass FROM {BOOKKEEPING}.chunks "
                    "WHERE slot = %s ORDER BY pass, position", (self.slot,))
        self._regions.load((resource, position, point, json.loads(last_key) if last_key else None, done, pass_no)
                           for resource, position, point, last_key, done, pass_no in cur.fetchall())

    def request(self, cur, resource: str, position: Position) -> None:
        """Start the next pass of ``resource``, recording it at ``position`` (the request's)."""
        cur.execute(f"INSERT INTO {BOOKKEEPING}.chunks (slot, resource, position, point, done, pass) "
                    "VALUES (%s, %s, %s, 0, false, %s)", (self.slot, resource, position, self._regions.begin(resource)))

    def reread(self, resource: str, position: Position) -> None:
        """Have the table read again from its start by the next session, as a snapshot pass
        (SNAPSHOT_BEGIN, its rows, SNAPSHOT_END): the node deletes what the pass did not find."""
        with self._db().cursor() as cur:
            self.request(cur, resource, position)

    def unsnapshotted(self) -> list[str]:
        """The tables whose snapshot is not done, sorted."""
        return self._regions.unsnapshotted(self.tables)

    def waiting(self, cur, after: Position, tables: Sequence[str]) -> int:
        """An estimate of the rows of ``tables`` still to read once the node stored everything up to ``after``."""
        cur.execute(f"SELECT DISTINCT ON (resource) resource, done FROM {BOOKKEEPING}.chunks "
                    "WHERE slot = %s AND position <= %s ORDER BY resource, pass DESC, position DESC",
                    (self.slot, after))
        done = {resource for resource, finished in cur.fetchall() if finished}
        return sum(estimated_rows(cur, resource) for resource in tables if resource not in done)

    # -- sessions -----------------------------------------------------------------

    def start(self) -> None:
        """Write the marker, then export a snapshot from a temporary slot."""
        marker = f"{MARKER_PREFIX} {uuid.uuid4().hex}"
        with self._db().cursor() as cur:
            cur.execute("SELECT pg_logical_emit_message(false, %s, %s)", (MARKER_PREFIX, marker.ljust(MARKER_PAD)))
            marker_end = lsn_int(cur.fetchone()[0])
        check_lsn(marker_end)
        replication = connect(self.url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            with replication.cursor() as cur:
                cur.execute(f"CREATE_REPLICATION_SLOT {quote(self.slot[:40] + '_' + marker[-16:])} "
                            "TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT")
                _, point, snapshot, _ = cur.fetchone()
            reader = connect(self.url)
            reader.set_session(isolation_level="REPEATABLE READ", readonly=True)
            reader.cursor().execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
        finally:
            replication.close()  # drops the temporary slot; the reader keeps the snapshot
        self.session = Session(marker, lsn_int(point), reader, self.unsnapshotted(), pack(marker_end - MARKER_PAD),
                               pack(marker_end), datetime.now(timezone.utc))

    def reached(self, message: pgoutput.Message, floor: int = 0) -> None:
        """The stream passed a marker: the session whose marker it is may hand out its rows,
        after ``floor`` (the last position of the transactions before it, extents.py)."""
        if self.session is not None and message.content.decode().rstrip() == self.session.marker:
            self.session.active = True
            self.session.next = max(self.session.next, floor)

    def end(self) -> None:
        """End the session (if any), releasing its snapshot."""
        if self.session is not None:
            self.session.connection.close()
            self.session = None

    def chunk(self, room: int) -> list[ch.Change] | None:
        """The next chunk of the session's current table; None when the session is over."""
        s = self.session
        if not s.resources or s.end - s.next < 2 * self.chunk_size + 10:
            return None  # done, or the gap is nearly full: the next session goes on
        if s.table is None:
            self._open_table(s, s.resources[0])
        resource = s.table.resource
        chunks = self._regions.chunks(resource)
        pass_no = self._regions.pass_of(resource)
        changes = []
        if pass_no and not chunks:
            changes.append(ch.Change(s.position(), resource, ch.SNAPSHOT_BEGIN, commit_time=s.started))
        schema = s.table.schema
        if schema != self._history.before(resource, s.next + 1):
            changes.append(self._history.change(s.position(), resource, schema, s.started))
        size = max(1, min(self.chunk_size, room - len(changes)))
        if s.progress is None or s.progress.pass_no != pass_no:  # a new pass began while the session read the table
            s.progress = self._progress(resource, pass_no)
        values = self._fetch(s, size)
        count = len(values[0])
        if count:
            changes += self._rows(s, values)
            last_key = [values[-1][-1]] if s.table.keyless else [values[s.table.columns.index(s.table.column(k))][-1]
                                                                 for k in s.table.key]
            s.last_key = last_key
        else:
            last_key = None
        done = count < size
        if done and pass_no:
            changes.append(ch.Change(s.position(), resource, ch.SNAPSHOT_END, commit_time=s.started))
        if last_key is None and chunks:
            last_key = chunks[-1].last_key
        position = changes[-1].position if changes else s.position()
        chunks.append(Chunk(position, s.point, last_key, done))
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.chunks (slot, resource, position, point, last_key, done, pass, "
                        "rows) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (self.slot, resource, position, s.point, json.dumps(last_key) if last_key is not None else None,
                         done, pass_no, count))
        s.progress.add(count, done)
        if done:
            if s.cursor is not None:
                s.cursor.close()
                s.cursor = None
            s.table, s.progress = None, None
            s.resources.pop(0)
        return changes

    def _open_table(self, s: Session, resource: str) -> None:
        """Load the table in the snapshot; for a table without key, open a cursor on its rows after the
        last stored key."""
        with s.connection.cursor() as cur:
            table = load_table(cur, resource, self.keys.get(resource, ()))
        if table is None:
            raise SourceNotReady(f"table {resource!r} no longer exists in database {self.database!r}")
        s.table, s.last_key = table, self._regions.last_key(resource)
        if table.keyless:  # its rows are grouped: one query, not one per chunk
            sql, key = _snapshot_sql(table, s.last_key)
            s.cursor = s.connection.cursor(name="exchange_snapshot")
            raw_text(s.cursor)
            s.cursor.execute(f"{sql} ORDER BY {key}", s.last_key)

    def _progress(self, resource: str, pass_no: int) -> _Progress:
        """The progress of the pass, with the rows earlier sessions read."""
        with self._db().cursor() as cur:
            cur.execute(f"SELECT coalesce(sum(rows), 0) FROM {BOOKKEEPING}.chunks WHERE slot = %s AND resource = %s "
                        "AND pass = %s", (self.slot, resource, pass_no))
            rows = int(cur.fetchone()[0])
            return _Progress(resource, pass_no, rows, estimated_rows(cur, resource))

    def _fetch(self, s: Session, size: int) -> list[list[str | None]]:
        """The next ``size`` rows (at most) of the session's table after its last key read, as columns
        of text values (for a table without key: its columns, each row's count and its sort key)."""
        table = s.table
        if table.keyless:
            rows = s.cursor.fetchmany(size)
            return [list(column) for column in zip(*rows)] if rows else [[] for _ in range(len(table.columns) + 2)]
        sql, key = _snapshot_sql(table, s.last_key)
        data = io.StringIO()
        with s.connection.cursor() as cur:
            query = cur.mogrify(f"{sql} ORDER BY {key} LIMIT {int(size)}", s.last_key).decode()
            cur.copy_expert(f"COPY ({query}) TO STDOUT", data)
        return copytext.columns(data.getvalue(), len(table.columns))

    def _rows(self, s: Session, values: list[list[str | None]]) -> list[ch.Change]:
        table = s.table
        rows = self._types.rows(table.columns, values)
        if not table.keyless:
            first = s.next + 1
            s.next += len(rows)
            if s.next >= s.end:
                raise RuntimeError("snapshot gap exhausted")  # Snapshots.chunk ends sessions long before
            return [ch.Change(Position(p), table.resource, ch.SNAPSHOT, after=row, commit_time=s.started)
                    for p, row in zip(range(first, s.next + 1), rows)]
        changes = []
        for row, count in zip(rows, map(int, values[len(table.columns)])):
            copies = [ch.Change(s.position(), table.resource, ch.SNAPSHOT, after={**row, COPY_COLUMN: copy},
                                commit_time=s.started) for copy in range(count)]
            self._copies.set(table.resource, digest(row), copies[-1].position, count)
            changes += copies
        return changes

    # -- regions ------------------------------------------------------------------

    def in_region(self, table: Table, image: dict[str, Any], commit_lsn: int) -> bool:
        """Whether the row is in a snapshot region older than the commit (outside
        the current pass's regions: whether an earlier pass completed)."""
        return self._regions.holds(table.resource, commit_lsn, lambda bound: self._key_after(table, image, bound))

    def _key_after(self, table: Table, image: dict[str, Any], bound: list[str | None]) -> bool:
        """Whether the row's key sorts after ``bound`` (as the snapshot's ORDER BY sorts)."""
        with self._db().cursor() as cur:
            if table.keyless:
                values = [to_text(image.get(c.name)) for c in table.columns]
                row = ", ".join(f"CAST(%s AS {c.type})" for c in table.columns)
                cur.execute(f"SELECT CAST(ROW({row}) AS {qualified(table.resource)})::text COLLATE \"C\" > %s",
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


def _snapshot_sql(table: Table, last_key: list[str] | None) -> tuple[str, str]:
    """A query of the table's rows after ``last_key`` (a placeholder per value), and the key expression
    to order it by.  A table without key gives one row per distinct content, then its count and its text
    (the sort key, in collation C)."""
    if table.keyless:
        columns = ", ".join(f"(g.r).{quote(c.name)}" for c in table.columns)
        sql = (f"SELECT {columns}, g.n, g.k FROM (SELECT (array_agg(t))[1] AS r, count(*) AS n, "
               f't::text COLLATE "C" AS k FROM {qualified(table.resource)} t GROUP BY 3) g')
        key = "g.k"
    else:
        columns = ", ".join(f"t.{quote(c.name)}" for c in table.columns)
        sql, key = f"SELECT {columns} FROM {qualified(table.resource)} t", ", ".join(f"t.{quote(k)}" for k in table.key)
    if last_key is not None:
        sql += f" WHERE ({key}) > ({', '.join(['%s'] * len(last_key))})"
    return sql, key
