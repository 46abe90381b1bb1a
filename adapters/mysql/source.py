"""MySQLSource: row-binlog capture of a MariaDB or MySQL database.

Capture reads the server's binlog as a replica would (mysql-replication,
stream.py), from the coordinate the node's position packs (position.py:
binlog file number and offset; MariaDB dumps are started from the GTID
position there, ``BINLOG_GTID_POS``, MySQL ones from the file and offset),
and turns whole transactions into changes (transactions.py).  The node only
ever tells the source a position (``read(after)``); everything else needed
to resume is kept on the source server, database ``exchange_capture``
(bookkeeping.py), rows tagged with the position they belong to.  A read
after any position other than the last one returned (a new source object, a
node retrying a failed store) first deletes the rows tagged after it and
reads the binlog again from the transaction that position belongs to: what
the node never stored is produced again, what it stored is skipped.

Collaborators, one job each: prerequisites.py (what the server must offer),
snapshot.py (snapshot sessions and regions), history.py (schemas emitted),
ddl.py (DDL statements), types.py (values), catalog.py (tables),
resnapshot.py (requests, repairing a lost position, pass progress),
keyless.py (copy numbers of tables without a key).  Each change carries its
transaction's GTID as ``txid`` (``0-1-42`` on MariaDB, ``uuid:42`` on MySQL;
``file:offset`` without GTIDs) and its commit time (the binlog's, seconds).

Tables are selected by name or pattern (adapters/selection.py); a table
created (or renamed) later that a pattern selects is captured from its
creation, snapshot first.  The binlog is the server's to keep: a binlog
purged (``expire_logs_days``, ``PURGE BINARY LOGS``) past the node's
position raises PositionLost naming the repair.  While capture waits on a
quiet binlog the server sends heartbeats, and the source records how far it
has looked (``progress``) so that ``pending`` and the lag gauges of other
processes see a quiet server as caught up.

Tables need a primary key, a configured unique key (``[source] keys``),
or an empty configured key, which keys rows by all their columns and counts
identical rows as copies (keyless.py; such a table is read by one snapshot
session, from its start again if a session ends inside it).

Failover of the source: positions are coordinates of one server's binlog,
and the origin (bookkeeping.py) records that server (``@@server_id``, with
``@@server_uuid`` on MySQL).  When another server answers (a promoted
replica, whose binlog has other files and offsets), prepare, read and
pending raise PositionLost naming both servers and the repair, ``exchange
node resnapshot --config NODE.toml --all``: it records a pass of every
table and a new origin at the new server's binlog end, whose base the next
read sets so that positions go on above the node's last one (position.py).
A restart of the same server keeps its ``server_id``: capture resumes.  A
server whose bookkeeping has no record of the node's stream (a fresh
origin, read first after a position other than 0), or whose binlog ends
before the node's position, raises PositionLost with the same repair.

Limits: a snapshot waits for transactions running when it starts; one
transaction is held in memory while it is read; servers sharing a
``server_id`` (and MySQL ``server_uuid``) are taken as one.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any, Sequence

import pymysql

from adapters.mysql import bookkeeping, prerequisites, resnapshot
from adapters.mysql.bookkeeping import BOOKKEEPING
from adapters.mysql.catalog import Table, load_table, user_tables
from adapters.mysql.connection import MySQLAddress
from adapters.mysql.history import SchemaHistory
from adapters.mysql.keyless import CopyCounts
from adapters.mysql.position import Frame, coordinate, file_name, file_number, rebase
from adapters.mysql.snapshot import Snapshots
from adapters.mysql.stream import BinlogStream
from adapters.mysql.transactions import TransactionDecoder
from adapters.selection import is_pattern, select
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, PositionLost, SourceNotReady, TableSchema
from exchange.contracts.errors import InvalidInput

log = logging.getLogger(__name__)

READ_WAIT = 5.0  # seconds a read waits at most for binlog the server has already written
PROGRESS_EVERY = 5.0  # seconds between records of how far a caught-up source has looked
PROGRESS_MOVED_EVERY = 0.5  # seconds between records once changes were read since the last one
PROGRESS_SLACK = 2048  # binlog bytes of the progress record itself, which a caught-up source need not read


class MySQLSource:
    """Row-binlog capture of ``tables`` (names or patterns) but not ``exclude`` of the database at ``url``.

    ``keys`` ({table: [column, ...]}) names a unique key for tables without a
    primary key.  ``server_id`` is the id the binlog reader registers with (0:
    derived from the address).  ``name`` keys the bookkeeping (default
    ``exchange_<database>``).
    """

    def __init__(self, url: str, tables: Sequence[str], keys: dict[str, list[str]] | None = None,
                 exclude: Sequence[str] = (), snapshot_chunk: int = 10000, server_id: int = 0,
                 name: str | None = None):
        self.address = MySQLAddress.parse(url)
        self.database = self.address.database
        self.entries, self.exclude = list(tables), list(exclude)
        self.tables: list[str] = select((), self.entries, self.exclude)
        self.keys = {table: tuple(key) for table, key in (keys or {}).items()}
        self.server_id = server_id
        self.name = (name or "exchange_" + re.sub(r"[^a-z0-9_]", "_", self.database.lower()))[:191]
        self._db: Any = None
        self._server: tuple[bool, int, str] | None = None  # (MariaDB, the server's server_id, binlog prefix)
        self._prepared = False
        self._stream: BinlogStream | None = None
        self._start = 0  # the coordinate a new stream starts at
        self._position: Position | None = None
        self._pending: list[ch.Change] = []
        self._skipped: set[str] = set()
        self._progress = (0.0, 0, None)  # (when, coordinate, position) of the last progress record
        self._frame = Frame()  # packs coordinates into positions, with the origin's base
        self._moved: tuple[str, str] | None = None  # (origin's server, server answering) when they differ
        self._upgraded = False  # the bookkeeping has the columns of this version
        self._fresh = False  # the origin was not read from yet
        self._history = SchemaHistory(self.name, self._open)
        self._copies = CopyCounts(self.name, self._open)
        self._snapshots = Snapshots(self.name, self.database, self.tables, self.keys, snapshot_chunk, self._open,
                                    self._connect, self._history, lambda: self._info()[0], self._copies,
                                    self._frame)
        self._decoder = TransactionDecoder(self.name, self.database, self.tables, self.entries, self.exclude,
                                           self.keys, self._open, self._snapshots, self._history, self._copies,
                                           self._frame)

    # -- the CaptureSource interface ------------------------------------------

    def prepare(self) -> None:
        """Check the server, user and tables; create the bookkeeping; note where the stream begins."""
        with self._open().cursor() as cur:
            prerequisites.check_server(cur)
            user = prerequisites.check_grants(cur, self.database, BOOKKEEPING)
            self._reader_id()
            tables = self._resolve(cur)
            for table in tables:
                prerequisites.check_readable(cur, self.database, table.resource, user)
            bookkeeping.install(cur)
            self._upgraded = True
            if bookkeeping.origin(cur, self.name) is None:
                bookkeeping.forget(cur, self.name)  # a new stream continues no earlier one
                bookkeeping.set_origin(cur, self.name, self._end(cur), self._identity(cur), fresh=True)
            else:
                self._origin(cur)
                if self._moved is not None:
                    raise resnapshot.server_changed(*(self._moved or ("?", "?")), self._where())
            self.tables[:] = [t.resource for t in tables]  # in place: the collaborators share the list
            if self.tables:
                marks = ", ".join(["%s"] * len(self.tables))
                cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks WHERE source = %s AND resource NOT IN ({marks})",
                            (self.name, *self.tables))
        self._prepared = True

    def schemas(self) -> dict[str, TableSchema]:
        with self._open().cursor() as cur:
            return {t.resource: t.schema for t in self._resolve(cur)}

    def read(self, after: Position, limit: int) -> list[ch.Change]:
        """Changes with position > ``after``: snapshot rows and whole transactions (split only when
        one holds more than ``limit`` changes).  Waits at most a few seconds for binlog already written."""
        self._prepared or self.prepare()
        try:
            changes = self._read(after, limit)
            self._copies.save()
            self._copies.trim()
        except pymysql.err.Error as e:
            self._reset()
            self._drop_connection()  # it may be the one that broke (a server restarted)
            lost = self._lost_now(after)
            if lost is not None:
                raise lost from e
            raise
        except BaseException:
            self._reset()
            raise
        if changes:
            self._position = changes[-1].position
        return changes

    def pending(self, after: Position) -> int:
        """Rows the snapshot has still to read (an estimate), plus 1 when the binlog holds what the
        source has not looked at yet; 0 means caught up.  PositionLost when the binlog was purged."""
        with self._open().cursor() as cur:
            start = self._origin(cur)
            lost = self._lost(cur, max(self._frame.unpack(after), start), after)
            if lost is not None:
                raise lost
            try:
                tables = [t.resource for t in self._resolve(cur)]
            except SourceNotReady:
                tables = self.tables
            waiting = self._snapshots.waiting(cur, after, tables)
            lag, _ = self._lag(cur, after)
        return waiting + (1 if lag else 0)

    def binlog_lag(self, after: Position) -> tuple[int, float]:
        """(bytes, seconds) the capture is behind the binlog's end: the binlog written since it last
        looked, and for how long it has not caught up (0, 0 when caught up)."""
        with self._open().cursor() as cur:
            self._origin(cur)
            return self._lag(cur, after)

    def acknowledge(self, position: Position) -> None:
        """Forget copy counts that later ones replace; nothing else to release: the server keeps its
        binlog by its own rules (``binlog_expire_logs_seconds``)."""
        if self._decoder.keyless:
            self._copies.prune(position)

    def request_resnapshot(self, tables: Sequence[str]) -> None:
        """Ask for a snapshot pass of each of ``tables`` through the binlog; when the node's position
        was purged, ``tables`` must be every captured table and capture starts again from now."""
        with self._open().cursor() as cur:
            self._origin(cur)
            names = [t.resource for t in self._resolve(cur)]
            unknown = [t for t in tables if t not in names]
            if unknown:
                raise InvalidInput(f"not captured: {', '.join(unknown)}; the captured tables are: "
                                   f"{', '.join(names) or 'none'}")
            lost = self._lost(cur, None, None)
            if lost is not None:
                if set(names) - set(tables):
                    raise PositionLost(f"{lost} (only a re-snapshot of every captured table repairs it)")
                resnapshot.recover(cur, self.name, names, self._end(cur), self._identity(cur))
                return
            resnapshot.request(cur, self.name, tables)

    def resnapshot_progress(self, tables: Sequence[str]) -> dict[str, resnapshot.Pass]:
        with self._open().cursor() as cur:
            return resnapshot.progress(cur, self.name, self.database, tables)

    def close(self) -> None:
        self._reset()
        self._drop_connection()

    def _drop_connection(self) -> None:
        if self._db is not None:
            try:
                self._db.close()
            except pymysql.err.Error:
                pass
            self._db = None
        self._server = None  # the server answering next may be another one

    # -- connections, tables and resuming -------------------------------------

    def _open(self) -> Any:
        if self._db is not None and not self._db.open:
            self._db = None
        if self._db is None:
            self._db = self._connect()
        return self._db

    def _connect(self, autocommit: bool = True) -> Any:
        try:
            return self.address.connect(autocommit=autocommit, connect_timeout=10)
        except pymysql.err.OperationalError as e:
            if e.args and e.args[0] == 1049:
                raise SourceNotReady(f"database {self.database!r} does not exist on the server at "
                                     f"{self.address.host}:{self.address.port}") from e
            raise SourceNotReady(f"cannot connect to the source database {self.database!r} at "
                                 f"{self.address.host}:{self.address.port}: {e.args[-1]}") from e

    def _info(self) -> tuple[bool, int, str]:
        """(MariaDB?, the server's server_id, the binlog files' prefix)."""
        if self._server is None:
            with self._open().cursor() as cur:
                mariadb = prerequisites.is_mariadb(cur)
                cur.execute("SELECT @@server_id")
                server_id = int(cur.fetchone()[0])
                file = self._status(cur)[0]
            self._server = (mariadb, server_id, file.rpartition(".")[0])
        return self._server

    def _where(self) -> str:
        return f"{self.address.host}:{self.address.port}"

    def _identity(self, cur) -> str:
        """The server answering: its ``server_id`` (MySQL: ``server_id/server_uuid``)."""
        if self._info()[0]:
            cur.execute("SELECT @@server_id")
            return str(cur.fetchone()[0])
        cur.execute("SELECT @@server_id, @@server_uuid")
        server_id, server_uuid = cur.fetchone()
        return f"{server_id}/{server_uuid}"

    def _reader_id(self) -> int:
        return prerequisites.reader_id(self.server_id, self.database, f"{self.address.host}:{self.address.port}",
                                       self._info()[1])

    @staticmethod
    def _status(cur) -> tuple[str, int]:
        """The binlog file being written and its end."""
        try:
            cur.execute("SHOW MASTER STATUS")
        except pymysql.err.ProgrammingError:
            cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4
        found = cur.fetchone()
        if found is None:
            raise SourceNotReady("the server writes no binlog: set log_bin = binlog in its configuration and "
                                 "restart it")
        return found[0], int(found[1])

    def _end(self, cur) -> int:
        return coordinate(*self._status(cur))

    def _origin(self, cur) -> int:
        """The coordinate the stream begins at; notes the origin's base, and whether another server than
        the origin's answers (``_moved``)."""
        found = None
        if bookkeeping.installed(cur):
            if not self._upgraded:
                bookkeeping.upgrade(cur)
                self._upgraded = True
            found = bookkeeping.origin(cur, self.name)
        if found is None:
            raise SourceNotReady(f"capture is not set up in database {self.database!r} yet: start the node")
        server = self._identity(cur)
        if found.server is None:  # recorded before origins named their server: it is this one
            bookkeeping.set_server(cur, self.name, server)
        self._moved = None if found.server in (None, server) else (found.server, server)
        self._frame.base = found.base
        self._fresh = found.fresh
        return found.coord

    def _resolve(self, cur) -> list[Table]:
        """The tables selected now; a named one must exist and have a key, one a pattern selects that
        cannot be captured is left out with a warning."""
        existing = user_tables(cur, self.database)
        names = select(existing, self.entries, self.exclude)
        literal = {e for e in self.entries if not is_pattern(e)}
        tables, problems = [], {}
        for name in names:
            table = load_table(cur, self.database, name, self.keys.get(name))
            problem = (f"table {name!r} does not exist in database {self.database!r}; its tables are: "
                       f"{', '.join(existing) or 'none'}") if table is None else _uncapturable(table)
            if problem and name in literal:
                raise SourceNotReady(problem)
            if problem:
                problems[name] = problem
            else:
                tables.append(table)
        for name, problem in problems.items():
            if name not in self._skipped:
                log.warning("table %s matches [source] tables but is not captured: %s", name, problem)
        self._skipped = set(problems)
        return tables

    def _resume(self, after: Position) -> None:
        """Forget what was read after ``after`` and read the binlog again from its transaction."""
        self._reset()
        with self._open().cursor() as cur:
            origin = self._origin(cur)
            if self._moved is not None:
                raise resnapshot.server_changed(*(self._moved or ("?", "?")), self._where())
            if self._fresh and after:
                cur.execute(f"REPLACE INTO {BOOKKEEPING}.progress (source, position, scanned, at) "
                            "VALUES (%s, %s, 0, %s)", (self.name, after, time.time()))
                raise resnapshot.unknown_stream(after, self._where())
            if self._fresh:
                bookkeeping.opened(cur, self.name)
            if self._frame.base is None:  # the first read after a repair: the origin packs above ``after``
                bookkeeping.set_base(cur, self.name, rebase(after, origin))
                origin = self._origin(cur)
            bookkeeping.forget(cur, self.name, after)
            self._snapshots.load(cur)
            self._history.load(cur)
            start = max(self._frame.unpack(after), origin)
            lost = self._lost(cur, start, after)
            if lost is not None:
                cur.execute(f"REPLACE INTO {BOOKKEEPING}.progress (source, position, scanned, at) "
                            "VALUES (%s, %s, 0, %s)", (self.name, after, time.time()))
                raise lost
        self._start = start
        self._position = after

    def _reset(self) -> None:
        if self._stream is not None:
            try:
                self._stream.close()
            except Exception:  # noqa: BLE001 - a broken connection closes anyway
                pass
            self._stream = None
        self._snapshots.end_session()
        self._pending = []
        self._decoder.clear()
        self._copies.clear()
        self._position = None

    # -- reading ----------------------------------------------------------------

    def _read(self, after: Position, limit: int) -> list[ch.Change]:
        if after != self._position:
            self._resume(after)
        changes = self._take_pending(limit)
        deadline = time.monotonic() + READ_WAIT
        target = None
        while len(changes) < limit:
            idle = self._snapshots.session is None
            if self._snapshots.ready():
                changes += self._snapshots.rows(limit - len(changes))
                continue
            if idle and self._snapshots.session is not None:
                target = None  # a session began: read on to its marker
            if self._stream is None:
                self._stream = self._open_stream()
            if target is None:
                with self._open().cursor() as cur:
                    target = self._end(cur)
            unit = self._stream.next(target, deadline)
            if unit is None:
                break
            self._start = unit.end  # a stream opened again (after an error) goes on after it
            marker = self._decoder.marker(unit)
            if marker is not None:
                self._snapshots.reached(marker, unit.start, unit.end)
                continue
            self._pending = self._decoder.changes(unit, self._position)
            if self._pending and changes and len(changes) + len(self._pending) > limit:
                break
            changes += self._take_pending(limit - len(changes))
            if unit.end >= target and changes:
                break
        if not changes and target is not None:
            self._record_progress(target)
        return changes

    def _open_stream(self) -> BinlogStream:
        """A binlog dump from ``self._start`` (MariaDB: from the GTID position there)."""
        mariadb, _, prefix = self._info()
        gtid = None
        if mariadb:
            number, offset = self._start >> 32, self._start & 0xFFFFFFFF
            with self._open().cursor() as cur:
                cur.execute("SELECT BINLOG_GTID_POS(%s, %s)", (file_name(prefix, number), offset))
                found = cur.fetchone()[0]
            if found is None:
                raise resnapshot.purged(self.database, self._start)
            gtid = found.decode() if isinstance(found, bytes) else found
        settings = {"host": self.address.host, "port": self.address.port, "user": self.address.user,
                    "password": self.address.password}
        return BinlogStream(settings, self._reader_id(), prefix, self._start,
                            [self.database, BOOKKEEPING], gtid)

    def _take_pending(self, room: int) -> list[ch.Change]:
        taken, self._pending = self._pending[:room], self._pending[room:]
        return taken

    def _record_progress(self, target: int) -> None:
        """Record (now and then) that everything up to the binlog's end was looked at: a heartbeat
        for other processes' ``pending`` and lag figures."""
        stream = self._stream
        if stream is None or stream.in_transaction or stream.end < target or self._snapshots.session is not None:
            return
        when, scanned, recorded = self._progress
        moved = self._position != recorded  # changes were read since: other processes must see them as read
        if not moved and stream.end <= scanned + PROGRESS_SLACK and time.monotonic() - when < 60 * PROGRESS_EVERY:
            return  # nothing but the last record since
        if time.monotonic() - when < (PROGRESS_MOVED_EVERY if moved else PROGRESS_EVERY):
            return
        with self._open().cursor() as cur:
            cur.execute(f"REPLACE INTO {BOOKKEEPING}.progress (source, position, scanned, at) VALUES (%s, %s, %s, %s)",
                        (self.name, self._position or 0, stream.end, time.time()))
        self._progress = (time.monotonic(), stream.end, self._position)

    # -- lag and lost positions -----------------------------------------------------

    def _lag(self, cur, after: Position) -> tuple[int, float]:
        """(bytes, seconds) behind the binlog's end, for position ``after``."""
        end = self._end(cur)
        stream = self._stream
        reading = stream is not None and self._position == after and not self._pending and not stream.in_transaction
        cur.execute(f"SELECT position, scanned, at FROM {BOOKKEEPING}.progress WHERE source = %s", (self.name,))
        found = cur.fetchone()
        if reading:
            scanned, since = stream.end, time.time()
        elif found is not None and int(found[0]) == after and int(found[1]):
            scanned, since = int(found[1]), float(found[2])
        else:
            scanned, since = max(self._frame.unpack(after), self._origin(cur)), float(found[2]) if found else time.time()
        behind = self._bytes_between(cur, scanned, end)
        if behind == 0 or (behind <= PROGRESS_SLACK and self._quiet(cur, scanned, end)):
            return 0, 0.0
        return behind, max(0.0, time.time() - since)

    def _quiet(self, cur, start: int, end: int) -> bool:
        """Whether the binlog between coordinates ``start`` and ``end`` (a few events, in one file) holds
        nothing capture reads: no row of the captured database, no statement but BEGIN and COMMIT."""
        if start >> 32 != end >> 32:
            return False
        prefix = self._info()[2]
        cur.execute(f"SHOW BINLOG EVENTS IN %s FROM {int(start & 0xFFFFFFFF)} LIMIT 64",
                    (file_name(prefix, start >> 32),))
        events = cur.fetchall()
        for _, pos, kind, _, _, info in events:
            if coordinate(file_name(prefix, start >> 32), int(pos)) >= end:
                return True
            if kind == "Table_map" and not str(info).endswith(f"({BOOKKEEPING}.progress)"):
                return False
            if kind == "Query" and str(info).strip().upper() not in ("BEGIN", "COMMIT"):
                return False
        return len(events) < 64

    def _bytes_between(self, cur, start: int, end: int) -> int:
        if end <= start:
            return 0
        if file_number_of(start) == file_number_of(end):
            return end - start
        cur.execute("SHOW BINARY LOGS")
        total = 0
        for row in cur.fetchall():
            number = file_number(row[0])
            if file_number_of(start) <= number <= file_number_of(end):
                size = int(row[1])
                low = start & 0xFFFFFFFF if number == file_number_of(start) else 0
                high = end & 0xFFFFFFFF if number == file_number_of(end) else size
                total += max(0, high - low)
        return total

    def _lost(self, cur, start: int | None, after: int | None) -> PositionLost | None:
        """PositionLost when the binlog file holding ``start`` was purged (``start`` None: when the
        reading source found it so, or the file of its last position is gone); also when another server
        than the origin's answers, the origin is fresh but ``after`` is not 0, or ``start`` lies beyond the
        binlog's end."""
        origin = self._origin(cur)
        if self._moved is not None:
            return resnapshot.server_changed(*(self._moved or ("?", "?")), self._where())
        if self._fresh and after:
            return resnapshot.unknown_stream(after, self._where())
        if start is None:
            cur.execute(f"SELECT position, scanned FROM {BOOKKEEPING}.progress WHERE source = %s", (self.name,))
            found = cur.fetchone()
            if found is None:
                return None
            after = int(found[0])
            start = max(self._frame.unpack(after), origin)
            if int(found[1]) == 0:
                return resnapshot.purged(self.database, start)
        cur.execute("SHOW BINARY LOGS")
        numbers = [file_number(row[0]) for row in cur.fetchall()]
        if numbers and file_number_of(start) < min(numbers):
            return resnapshot.purged(self.database, start)
        end = self._end(cur)
        if start > end:
            return resnapshot.beyond_end(start, end, self._where())
        return None

    def _lost_now(self, after: Position) -> PositionLost | None:
        try:
            with self._open().cursor() as cur:
                return self._lost(cur, max(self._frame.unpack(after), self._origin(cur)), after)
        except (pymysql.err.Error, SourceNotReady):
            return None


def file_number_of(coord: int) -> int:
    return coord >> 32


def _uncapturable(table: Table) -> str | None:
    """Why ``table`` cannot be captured, or None."""
    names = {c.name for c in table.columns}
    if table.keyless:
        return None
    if table.configured_key:
        unknown = [k for k in table.configured_key if k not in names]
        if unknown:
            return f"the key configured for table {table.resource!r} names unknown columns: {', '.join(unknown)}"
        unique = [table.primary_key, *table.unique_keys]
        if not any(index and set(index) <= set(table.configured_key) for index in unique):
            return (f"the key configured for table {table.resource!r} ({', '.join(table.configured_key)}) is not "
                    f"unique: create a UNIQUE index on those columns (declared NOT NULL), or configure other "
                    f"[source] keys")
        return None
    if not table.primary_key:
        return (f"table {table.resource!r} has no primary key, so its rows cannot be told apart: declare a PRIMARY "
                f"KEY; or create a UNIQUE index on NOT NULL columns and set "
                f'`[source] keys = {{ "{table.resource}" = ["col", ...] }}` in the node config; or set '
                f'`[source] keys = {{ "{table.resource}" = [] }}` to key its rows by all their columns (identical '
                "rows are counted as copies)")
    return None
