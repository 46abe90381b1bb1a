"""PostgresSource: logical-decoding capture of a PostgreSQL database.

Capture reads a logical replication slot (``exchange_<db>`` by default) with
the built-in ``pgoutput`` plugin through a publication of the captured
tables, and decodes the messages itself (pgoutput.py, stream.py).  The node
only ever tells the source a position (``read(after)``, ``acknowledge``;
position.py says how they are packed); everything else needed to resume is
kept in the source database, schema ``exchange_capture`` (prepare.py), rows
tagged with the position they belong to.  A read after any position other
than the last one returned (a new source object, a node retrying a failed
store) first deletes the rows tagged after it and restarts the stream from
the slot's confirmed position: what the node never stored is produced
again, what it stored is skipped by position.

The source is an orchestration of collaborators, one job each:

* snapshot.py (``Snapshots``): snapshot sessions and the regions they read;
* stream.py (``ReplicationStream``): the slot's transactions in pieces, in commit order;
* spill.py (``Spill``): transactions streamed while they run, on disk until they end;
* transactions.py (``TransactionDecoder``): a transaction's changes and positions, piece by piece;
* schema_history.py (``SchemaHistory``): the schemas emitted;
* keyless.py (``CopyCounts``): copy numbers of tables without a key;
* extents.py (``Extents``): positions of transactions too large for their commit LSN, and what to confirm;
* resnapshot.py: re-snapshot requests, lost-slot recovery, pass progress.

Tables are selected by name or pattern (adapters/selection.py).  Every
``DISCOVER_EVERY`` seconds while it reads, the source looks for selected
tables the publication does not publish: a new table matching a pattern is
added to the publication, then snapshotted like any other (its snapshot
starts after the table joined the publication, so rows written before are
in the snapshot and rows written after in the stream: none is lost); a
captured table that left it (dropped and created again, e.g. restored from
a backup) is added again and read again by a re-snapshot pass.  A slot that
was dropped or invalidated raises PositionLost (prepare.py says the repair).

Acknowledging a position confirms its transaction's commit LSN to the slot
(an LSN inside the marker for snapshot rows): after a restart the server
sends that one transaction again and its changes are skipped by position.
When a read finds nothing new and everything read is acknowledged, the
source confirms all the WAL the server has sent (a heartbeat), so the slot
follows a quiet database instead of holding WAL written for other tables.

A transaction is read in pieces and handed to the node ``limit`` changes
at a time (whole when it fits in one read), so the node holds a bounded
part of a transaction of any size; one the server streams while it runs is
kept on disk until it commits (stream.py, spill.py).

Limits: PostgreSQL 14 or later (pgoutput protocol 2, ``messages``); reading
again before an acknowledged position is not possible (the slot has moved
on); a snapshot waits for the transactions running when it starts;
partitioned tables are captured through their root only; a read waits at
most ``READ_WAIT`` seconds for WAL the server has written but not yet
decoded.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Sequence

import psycopg2
import psycopg2.extensions

from adapters.postgres import pgoutput, prepare, resnapshot
from adapters.postgres.catalog import Table, user_tables
from adapters.postgres.dialect import BOOKKEEPING, connect
from adapters.postgres.extents import Extents
from adapters.postgres.keyless import CopyCounts
from adapters.postgres.position import lsn_int
from adapters.postgres.schema_history import SchemaHistory
from adapters.postgres.snapshot import Snapshots
from adapters.postgres.stream import ReplicationStream
from adapters.postgres.transactions import TransactionDecoder
from adapters.postgres.types import Types
from adapters.selection import select
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, PositionLost, SourceNotReady, TableSchema
from exchange.contracts.errors import InvalidInput

log = logging.getLogger(__name__)

READ_WAIT = 5.0  # seconds a read waits at most for WAL the server has already written
DISCOVER_EVERY = 5.0  # seconds between looks for new tables that patterns select


class PostgresSource:
    """Logical-decoding capture of ``tables`` (``table`` or ``schema.table``, or
    patterns of them) but not ``exclude`` of the PostgreSQL database at ``url``.

    ``keys`` ({table: [column, ...]}) names a unique key for tables without a
    primary key (it must be covered by the table's replica identity).
    ``slot`` and ``publication`` default to ``exchange_<database>``.
    """

    def __init__(self, url: str, tables: Sequence[str], keys: dict[str, list[str]] | None = None,
                 snapshot_chunk: int = 10000, slot: str | None = None, publication: str | None = None,
                 exclude: Sequence[str] = ()):
        self.url = url
        self.entries, self.exclude = list(tables), list(exclude)
        self.tables = select((), self.entries, self.exclude)  # the captured tables; patterns add to it
        self._next_discovery = 0.0
        self._skipped: set[str] = set()  # tables patterns select that cannot be captured (warned about)
        self.keys = {table: tuple(key) for table, key in (keys or {}).items()}
        self.snapshot_chunk = snapshot_chunk
        self.database = psycopg2.extensions.parse_dsn(url).get("dbname", "postgres")
        default = "exchange_" + re.sub(r"[^a-z0-9_]", "_", self.database.lower())
        self.slot = (slot or default)[:63]
        self.publication = publication or default
        self._db = None
        self._prepared = False
        self._stream: ReplicationStream | None = None
        self._position: Position | None = None  # last position returned; None: resume at the next read
        self._pending: list[ch.Change] = []  # decoded changes of the transaction being read, not yet returned
        self._acknowledged = 0
        types = Types(self._open)
        self._history = SchemaHistory(self.slot, self._open)
        self._copies = CopyCounts(self.slot, self._open)
        self._extents = Extents(self.slot, self._open)
        self._snapshots = Snapshots(url, self.slot, self.database, self.tables, self.keys, snapshot_chunk, self._open,
                                    types, self._history, self._copies)
        self._decoder = TransactionDecoder(self.slot, self.database, self.tables, self.keys, self._open, types,
                                           self._snapshots, self._history, self._copies, self._extents)

    # -- the CaptureSource interface ------------------------------------------

    def prepare(self) -> None:
        """Check the database, role and tables; create the bookkeeping schema,
        the publication and the replication slot when missing."""
        with self._open().cursor() as cur:
            user = prepare.check_server(cur)
            tables = self._resolve(cur)
            prepare.install_bookkeeping(cur, self.database)
            prepare.ensure_publication(cur, self.publication, user, tables)
            prepare.ensure_slot(cur, self.url, self.slot, self.database)
            self.tables[:] = [t.resource for t in tables]  # in place: the collaborators share the list
            cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks WHERE slot = %s AND resource <> ALL(%s)",
                        (self.slot, self.tables))
        self._prepared = True

    def schemas(self) -> dict[str, TableSchema]:
        """The captured tables as they are now."""
        with self._open().cursor() as cur:
            return {table.resource: table.schema for table in self._resolve(cur)}

    def read(self, after: Position, limit: int) -> list[ch.Change]:
        """Changes with position > ``after``: snapshot rows and whole transactions
        (split only when one holds more than ``limit`` changes).  Waits at most a
        few seconds for WAL the server has written but not yet sent."""
        if not self._prepared:
            self.prepare()
        try:
            if after != self._position:
                self._resume(after)
            changes = self._read(limit)
            self._copies.save()
            self._copies.trim()
        except psycopg2.Error as e:
            self._position = None  # whatever state we are in, start over from the node's position
            lost = self._slot_lost()
            if lost is not None:
                raise lost from e
            raise
        except BaseException:
            self._position = None
            raise
        if changes:
            self._position = changes[-1].position
        return changes

    def pending(self, after: Position) -> int:
        """Rows the snapshot has still to read (an estimate), plus 1 when the
        slot holds WAL not yet read; 0 means caught up.  PositionLost when the
        slot was dropped or invalidated."""
        with self._open().cursor() as cur:
            cur.execute("SELECT confirmed_flush_lsn, pg_current_wal_flush_lsn() FROM pg_replication_slots "
                        "WHERE slot_name = %s", (self.slot,))
            found = cur.fetchone()
            lost = prepare.slot_lost(cur, self.slot, self.database)
            if lost is not None:
                raise lost
            if found is None:
                raise SourceNotReady(f"capture is not set up in database {self.database!r} yet: start the node")
            confirmed, current = (lsn_int(v) for v in found)
            try:
                tables = [t.resource for t in self._resolve(cur)]
            except SourceNotReady:  # a table named in the settings is missing: capture says so
                tables = self.tables
            waiting = self._snapshots.waiting(cur, after, tables)
        stream = self._stream
        read_all = (stream is not None and self._position == after and not self._pending
                    and not stream.in_transaction and stream.wal_end >= current)
        return waiting + (0 if read_all or confirmed >= current else 1)

    def acknowledge(self, position: Position) -> None:
        """Confirm to the server what is stored up to ``position``, so that it
        may recycle that WAL."""
        self._acknowledged = max(self._acknowledged, position)
        if self._stream is not None:
            self._stream.confirm(self._extents.safe_lsn(position))
        self._extents.forget(position)
        if self._decoder.keyless:
            self._copies.prune(position)

    def request_resnapshot(self, tables: Sequence[str]) -> None:
        """Ask for a snapshot pass of each of ``tables`` (captured tables) through
        the stream; when the slot is lost, ``tables`` must be every captured
        table, and a new slot replaces the lost one (resnapshot.py)."""
        with self._open().cursor() as cur:
            user = prepare.check_server(cur)
            prepare.install_bookkeeping(cur, self.database)
            captured = self._resolve(cur)
            names = [t.resource for t in captured]
            unknown = [t for t in tables if t not in names]
            if unknown:
                raise InvalidInput(f"not captured: {', '.join(unknown)}; the captured tables are: "
                                   f"{', '.join(names) or 'none'}")
            lost = prepare.slot_lost(cur, self.slot, self.database)
            if lost is not None:
                if set(names) - set(tables):
                    raise PositionLost(f"{lost} (only a re-snapshot of every captured table repairs a lost slot)")
                prepare.ensure_publication(cur, self.publication, user, captured)
                resnapshot.recover(cur, self.url, self.slot, names)
                return
            cur.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (self.slot,))
            if cur.fetchone() is None:
                raise SourceNotReady(f"capture is not set up in database {self.database!r} yet: start the node "
                                     "(its first run snapshots every captured table)")
            resnapshot.request(cur, tables)

    def resnapshot_progress(self, tables: Sequence[str]) -> dict[str, resnapshot.Pass]:
        """The latest snapshot pass of each of ``tables``."""
        with self._open().cursor() as cur:
            return resnapshot.progress(cur, self.slot, tables)

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

    # -- tables, connection and resuming ----------------------------------------------

    def _resolve(self, cur) -> list[Table]:
        """The tables selected now (warning once about each one a pattern selects that cannot be captured)."""
        tables, problems = prepare.resolve(cur, self.entries, self.exclude, self.keys, self.database)
        for name, problem in problems.items():
            if name not in self._skipped:
                log.warning("table %s matches [source] tables but is not captured: %s", name, problem)
        self._skipped = set(problems)
        return tables

    def _discover(self) -> None:
        """Start capturing the tables patterns select that appeared since the last look, and
        publish again (and read again) captured tables that left the publication."""
        self._next_discovery = time.monotonic() + DISCOVER_EVERY
        with self._open().cursor() as cur:
            selected = [n for n in select(user_tables(cur), self.entries, self.exclude) if n not in self._skipped]
            gone = set(prepare.unpublished(cur, self.publication, selected))
            if not gone:
                return  # the usual case, found with three queries
            try:
                missing = [t for t in self._resolve(cur) if t.resource in gone]
                cur.execute("SELECT current_user")
                prepare.ensure_publication(cur, self.publication, cur.fetchone()[0], missing)
            except SourceNotReady as e:  # the other tables go on; looked at again next time
                log.error("tables are not captured as configured: %s", e)
                return
            rejoined = [t.resource for t in missing if t.resource in self.tables]
            if rejoined:  # dropped and created again (restored from a backup): read again, after the stream's gap
                log.warning("tables %s left the publication (dropped and created again?): published again, and "
                            "read again to repair the node's copy", ", ".join(rejoined))
                resnapshot.request(cur, rejoined)
        found = [t.resource for t in missing if t.resource not in self.tables]
        if found:
            self.tables.extend(found)
            self._decoder.forget_uncaptured()
            log.info("capturing new tables %s", ", ".join(found))

    def _slot_lost(self) -> PositionLost | None:
        """PositionLost when the slot was dropped or invalidated (what made reading fail)."""
        try:
            if self._db is not None and self._db.closed:
                self._db = None
            with self._open().cursor() as cur:
                return prepare.slot_lost(cur, self.slot, self.database)
        except (psycopg2.Error, SourceNotReady):
            return None

    def _open(self):
        if self._db is None:
            try:
                self._db = connect(self.url)
            except psycopg2.OperationalError as e:
                raise SourceNotReady(f"cannot connect to the source database: {str(e).strip()}") from e
            self._db.autocommit = True
        return self._db

    def _resume(self, after: Position) -> None:
        """Forget what was read after ``after`` and restart from the slot."""
        self._stop()
        self._pending = []
        self._copies.clear()
        self._decoder.clear()
        with self._open().cursor() as cur:
            prepare.forget(cur, self.slot, after)
            self._extents.load(cur)
            self._snapshots.load(cur)
            self._history.load(cur)
        self._position = after

    def _stop(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._snapshots.end()

    # -- reading ----------------------------------------------------------------

    def _read(self, limit: int) -> list[ch.Change]:
        if time.monotonic() >= self._next_discovery:
            self._discover()
        changes = self._take_pending(limit)
        deadline = time.monotonic() + READ_WAIT
        target = None
        while len(changes) < limit:
            if self._snapshots.session is None and self._snapshots.unsnapshotted():
                self._snapshots.start()
                target = None  # read on to the session's marker
            if self._snapshots.session is not None and self._snapshots.session.active:
                chunk = self._snapshots.chunk(limit - len(changes))
                if chunk is None:
                    self._snapshots.end()
                else:
                    changes += chunk
                continue
            if self._stream is None:
                self._stream = ReplicationStream(self.url, self.slot, self.publication)
            if target is None:
                target = self._current_lsn()
            room = max(0, limit - len(changes) - len(self._pending))
            unit = self._stream.next(target, deadline, room)
            if unit is None:
                break
            if isinstance(unit, pgoutput.Message):
                self._snapshots.reached(unit, self._extents.floor(unit.lsn))
                continue
            self._pending += self._decoder.changes(unit, self._position)
            if unit.commit is None:  # the transaction goes on
                if len(changes) + len(self._pending) <= limit:
                    continue
                if changes and changes[0].txid != str(unit.begin.xid):
                    break  # after other changes: the next read goes on with it
                changes += self._take_pending(limit - len(changes))  # larger than a read: hand over a part
                break
            if self._pending and changes and len(changes) + len(self._pending) > limit:
                break  # the next read returns it whole
            changes += self._take_pending(limit - len(changes))
            if unit.commit.end_lsn >= target and changes:
                break  # all that was committed when this read began: hand it over now, not when the batch is full
        if not changes:
            self._heartbeat()
        elif self._snapshots.session is not None:
            self._stream.keep_alive()  # the stream waits while the session reads
        return changes

    def _take_pending(self, room: int) -> list[ch.Change]:
        taken, self._pending = self._pending[:room], self._pending[room:]
        return taken

    def _current_lsn(self) -> int:
        with self._open().cursor() as cur:
            cur.execute("SELECT pg_current_wal_flush_lsn()")
            return lsn_int(cur.fetchone()[0])

    def _heartbeat(self) -> None:
        """On a quiet stream, let the slot follow the server once everything
        read is acknowledged (WAL of other tables and databases would pile up)."""
        stream = self._stream
        caught_up = self._acknowledged >= (self._position or 0) and not self._pending
        if stream is not None and caught_up and self._snapshots.session is None and not stream.in_transaction:
            stream.confirm(stream.wal_end)
