"""Snapshot sessions: the captured tables' rows, read in key order at consistent snapshots, without a global lock.

* A session writes its marker (a row of bookkeeping table ``markers``, 4
  KiB), then opens ``START TRANSACTION WITH CONSISTENT SNAPSHOT`` and reads
  ``binlog_snapshot_file``/``binlog_snapshot_position`` (MariaDB): the
  binlog coordinate ``P`` that splits the binlog exactly: transactions
  before ``P`` are visible in the snapshot, later ones are not.  (MySQL has
  no such status: the session takes ``FLUSH TABLES WITH READ LOCK`` for the
  moment it opens the snapshot and reads ``SHOW MASTER STATUS``.)  The
  session's rows are handed out once the stream reaches the marker, at
  positions inside the marker's span (position.py).
* Tables are read in key order, ``chunk_size`` rows per query; each chunk
  is recorded (bookkeeping ``chunks``: position of its last row, ``P``, last
  key, done).  The key ranges read at one snapshot form a *region*; a
  streamed change to a row is emitted only when its key lies in a region
  whose ``P`` is at or before the change's transaction.  Older changes are
  in the rows the region's snapshot read; rows in no region yet will be
  read by a later session, which sees them.
* So a source stopped mid-snapshot keeps the regions of the chunks the node
  stored, and the next session reads only the rest, at its own ``P``:
  nothing is read twice, nothing is missed.  Keys are compared by the
  server, with the columns' types and collations.
* Passes: pass 0 is a table's first snapshot; a re-snapshot request or a
  change that needs the table read again starts the next pass (a start row
  in ``chunks``), which emits SNAPSHOT_BEGIN before its first row and
  SNAPSHOT_END after its last.  A streamed change to a key the current pass
  has not read is emitted when an earlier pass completed.
"""

from __future__ import annotations

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any, Callable, Sequence

import pymysql.cursors

from adapters.keyless import COPY_COLUMN, CopyCounts, digest
from adapters.mysql.bookkeeping import BOOKKEEPING
from adapters.mysql.catalog import CatalogColumn, Table, estimated_rows, load_table
from adapters.mysql.history import SchemaHistory
from adapters.mysql.position import coordinate, pack
from adapters.mysql.types import convert_row, converters
from adapters.passes import Chunk, Regions
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, SourceNotReady

MARKER_PAD = 65536


@dataclass
class Session:
    """One consistent snapshot, read table by table into its marker's span."""

    marker: str
    point: int
    connection: Any
    resources: list[str]
    started: datetime
    next: int = 0  # last position handed out
    end: int = 0  # first position past the span
    active: bool = False
    table: Table | None = None
    cursor: Any = None  # the open read of a keyless table
    carry: tuple[dict[str, Any], int] | None = None  # a keyless row content whose copies may go on
    def position(self) -> Position:
        self.next += 1
        if self.next >= self.end:
            raise RuntimeError("snapshot span exhausted")  # Snapshots.chunk ends sessions long before
        return Position(self.next)


def quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class Snapshots:
    """The snapshot progress of the captured ``tables`` (a list shared with the source) and the session
    reading them; ``db`` returns the source's connection, ``connect`` a new one."""

    def __init__(self, source: str, database: str, tables: Sequence[str], keys: dict[str, tuple[str, ...]],
                 chunk_size: int, db: Callable[[], Any], connect: Callable[..., Any], history: SchemaHistory,
                 mariadb: Callable[[], bool], copies: CopyCounts):
        self.source, self.database, self.tables, self.keys = source, database, tables, keys
        self.chunk_size = chunk_size
        self._db, self._connect, self._history, self._mariadb = db, connect, history, mariadb
        self._copies = copies
        self._regions = Regions()  # chunks are keyed by the last key read, as PyMySQL reads it
        self.session: Session | None = None

    def load(self, cur) -> None:
        """Read the stored chunks, forgetting passes older than the last complete one."""
        cur.execute(f"SELECT resource, MAX(pass) FROM {BOOKKEEPING}.chunks WHERE source = %s AND done "
                    "GROUP BY resource", (self.source,))
        for resource, last in cur.fetchall():
            cur.execute(f"DELETE FROM {BOOKKEEPING}.chunks WHERE source = %s AND resource = %s AND pass < %s",
                        (self.source, resource, last))
        cur.execute(f"SELECT resource, position, point, last_key, done, pass FROM {BOOKKEEPING}.chunks "
                    "WHERE source = %s ORDER BY pass, position", (self.source,))
        self._regions.load((resource, int(position), int(point), decode_key(last_key), bool(done), pass_no)
                           for resource, position, point, last_key, done, pass_no in cur.fetchall())

    def request(self, cur, resource: str, position: int) -> None:
        """Start the next pass of ``resource``, recorded at ``position``."""
        cur.execute(f"REPLACE INTO {BOOKKEEPING}.chunks (source, resource, position, point, done, pass) "
                    "VALUES (%s, %s, %s, 0, false, %s)", (self.source, resource, position, self._regions.begin(resource)))
        s = self.session
        if s is not None and s.table is not None and s.table.resource == resource:
            s.table = None  # the session reads the table again from its start
            if s.cursor is not None:
                s.cursor.close()
                s.cursor = None

    def reread(self, resource: str, position: int) -> None:
        with self._db().cursor() as cur:
            self.request(cur, resource, position)

    def forget_table(self, resource: str) -> None:
        """The table is no longer captured (dropped, renamed)."""
        self._regions.forget(resource)
        if self.session is not None and resource in self.session.resources:
            self.session.resources.remove(resource)
            if self.session.table is not None and self.session.table.resource == resource:
                self.session.table = None

    def unsnapshotted(self) -> list[str]:
        return self._regions.unsnapshotted(self.tables)

    def waiting(self, cur, after: int, tables: Sequence[str]) -> int:
        """An estimate of the rows of ``tables`` still to read once the node stored everything up to ``after``."""
        cur.execute(f"SELECT resource, done FROM {BOOKKEEPING}.chunks c WHERE source = %s AND position <= %s "
                    f"AND position = (SELECT MAX(position) FROM {BOOKKEEPING}.chunks d WHERE d.source = c.source "
                    "AND d.resource = c.resource AND d.position <= %s)", (self.source, after, after))
        done = {resource for resource, finished in cur.fetchall() if finished}
        return sum(estimated_rows(cur, self.database, t) for t in tables if t not in done)

    # -- sessions -----------------------------------------------------------------

    def start(self) -> None:
        """Write the marker, then open a consistent snapshot and note its binlog coordinate."""
        marker = uuid.uuid4().hex
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.markers (id, source, pad) VALUES (%s, %s, REPEAT('.', %s))",
                        (marker, self.source, MARKER_PAD))
            cur.execute(f"DELETE FROM {BOOKKEEPING}.markers WHERE source = %s AND created < "
                        "NOW(6) - INTERVAL 1 DAY", (self.source,))
        reader = self._connect(autocommit=False)
        try:
            with reader.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                if self._mariadb():
                    cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                    cur.execute("SHOW STATUS LIKE 'binlog_snapshot_%'")
                    status = dict(cur.fetchall())
                    point = coordinate(status["Binlog_snapshot_file"], int(status["Binlog_snapshot_position"]))
                else:
                    cur.execute("FLUSH TABLES WITH READ LOCK")
                    try:
                        cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                        cur.execute("SHOW MASTER STATUS")
                        file, offset = cur.fetchone()[:2]
                    finally:
                        cur.execute("UNLOCK TABLES")
                    point = coordinate(file, int(offset))
        except BaseException:
            reader.close()
            raise
        self.session = Session(marker, point, reader, self.unsnapshotted(), datetime.now(timezone.utc))

    def ready(self) -> bool:
        """Whether a session may hand out rows now (a session is started when a table waits for one,
        and hands out rows once the stream reached its marker)."""
        if self.session is None and self.unsnapshotted():
            self.start()
        return self.session is not None and self.session.active

    def rows(self, room: int) -> list[ch.Change]:
        """The session's next chunk (ending the session when it is over)."""
        chunk = self.chunk(room)
        if chunk is None:
            self.end_session()
        return chunk or []

    def reached(self, marker: str, start: int, end: int) -> None:
        """The stream passed a marker spanning [start, end): the session whose marker it is may hand out rows."""
        s = self.session
        if s is not None and marker == s.marker:
            s.active, s.next, s.end = True, pack(start), pack(end)

    def end_session(self) -> None:
        if self.session is not None:
            self.session.cursor = None  # closed with its connection
            try:
                self.session.connection.close()
            except Exception:  # noqa: BLE001 - the connection may be gone already
                pass
            self.session = None

    def chunk(self, room: int) -> list[ch.Change] | None:
        """The next chunk of the session's current table; None when the session is over."""
        s = self.session
        while s.resources and s.resources[0] not in self.tables:
            s.resources.pop(0)
        if not s.resources or s.end - s.next < 2 * self.chunk_size + 10:
            return None
        resource = s.resources[0]
        if s.table is None:
            with s.connection.cursor() as cur:
                s.table = load_table(cur, self.database, resource, self.keys.get(resource))
            if s.table is None:
                raise SourceNotReady(f"table {resource!r} no longer exists in database {self.database!r}")
        table = s.table
        changes = []
        if table.keyless and s.cursor is None and self._regions.chunks(resource):
            with self._db().cursor() as cur:  # read in part by an earlier session: read it whole again
                self.request(cur, resource, s.position())
            s.table = table
        chunks = self._regions.chunks(resource)
        pass_no = self._regions.pass_of(resource)
        if pass_no and not chunks:
            changes.append(ch.Change(s.position(), resource, ch.SNAPSHOT_BEGIN, commit_time=s.started))
        schema = table.schema
        if schema != self._history.before(resource, s.next + 1):
            changes.append(self._history.change(s.position(), resource, schema, s.started))
        size = max(1, min(self.chunk_size, room - len(changes)))
        last_key = chunks[-1].last_key if chunks else None
        convert = converters(table.columns, binlog=False)
        names = [c.name for c in table.columns]
        if table.keyless:
            rows = self._keyless_rows(s, table, size)
            changes += self._copy_changes(s, resource, [convert_row(convert, dict(zip(names, v))) for v in rows],
                                          len(rows) < size)
        else:
            rows = self._select(s, table, last_key, size)
            for values in rows:
                row = convert_row(convert, dict(zip(names, values)))
                changes.append(ch.Change(s.position(), resource, ch.SNAPSHOT, after=row, commit_time=s.started))
                last_key = [values[names.index(k)] for k in table.key]
        done = len(rows) < size
        if done and pass_no:
            changes.append(ch.Change(s.position(), resource, ch.SNAPSHOT_END, commit_time=s.started))
        position = changes[-1].position if changes else s.position()
        chunks.append(Chunk(position, s.point, last_key, done))
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.chunks (source, resource, position, point, last_key, done, pass, "
                        "`rows`) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                        (self.source, resource, position, s.point, encode_key(last_key), done, pass_no, len(rows)))
        if done:
            s.resources.pop(0)
            s.table = None
            if s.cursor is not None:
                s.cursor.close()
                s.cursor = None
        return changes

    def _keyless_rows(self, s: Session, table: Table, size: int) -> list[tuple]:
        """The next rows of a keyless table, identical rows next to each other (one read per session)."""
        if s.cursor is None:
            with s.connection.cursor() as cur:
                cur.execute("SET SESSION max_sort_length = 8388608")  # sort by whole values, however long
            columns = ", ".join(quote(c.name) for c in table.columns)
            s.cursor = s.connection.cursor(pymysql.cursors.SSCursor)
            s.cursor.execute(f"SELECT {columns} FROM {quote(self.database)}.{quote(table.resource)} "
                             f"ORDER BY {columns}")
            s.carry = None
        return list(s.cursor.fetchmany(size))

    def _copy_changes(self, s: Session, resource: str, rows: list[dict[str, Any]], last: bool) -> list[ch.Change]:
        """SNAPSHOT changes of keyless rows, numbered as copies of their content; the last content
        waits for the next chunk (its copies may go on) unless the table is read."""
        groups: list[tuple[dict[str, Any], int]] = [s.carry] if s.carry else []
        for row in rows:
            if groups and groups[-1][0] == row:
                groups[-1] = (row, groups[-1][1] + 1)
            else:
                groups.append((row, 1))
        s.carry = None if last or not groups else groups.pop()
        changes = []
        for row, count in groups:
            changes += [ch.Change(s.position(), resource, ch.SNAPSHOT, after={**row, COPY_COLUMN: copy},
                                  commit_time=s.started) for copy in range(count)]
            self._copies.set(resource, digest(row), changes[-1].position, count)
        return changes

    def _select(self, s: Session, table: Table, last_key: list[Any] | None, size: int) -> list[tuple]:
        columns = ", ".join(quote(c.name) for c in table.columns)
        key = ", ".join(quote(k) for k in table.key)
        sql = f"SELECT {columns} FROM {quote(self.database)}.{quote(table.resource)}"
        if last_key is not None:
            sql += f" WHERE ({key}) > ({', '.join(['%s'] * len(last_key))})"
        with s.connection.cursor() as cur:
            cur.execute(f"{sql} ORDER BY {key} LIMIT %s", (*(last_key or ()), size))
            return list(cur.fetchall())

    # -- regions ------------------------------------------------------------------

    def in_region(self, table: Table, image: dict[str, Any], commit: int) -> bool:
        """Whether the row is in a snapshot region older than the transaction at coordinate ``commit``
        (outside the current pass's regions: whether an earlier pass completed)."""
        return self._regions.holds(table.resource, commit, lambda bound: self._after(table, image, bound))

    def _after(self, table: Table, image: dict[str, Any], bound: list[Any]) -> bool:
        """Whether the row's key sorts after ``bound``, as the snapshot's ORDER BY sorts."""
        typed = [_typed(table.column(k)) for k in table.key]
        values = [_param(table.column(k), image.get(k)) for k in table.key]
        row = ", ".join(typed)
        with self._db().cursor() as cur:
            cur.execute(f"SELECT ({row}) > ({row})", (*values, *bound))
            return bool(cur.fetchone()[0])


def _typed(column: CatalogColumn) -> str:
    """A parameter as a value of the column's type (and collation), for comparisons."""
    kind = column.data_type
    if kind in ("date",):
        return "CAST(%s AS DATE)"
    if kind in ("datetime", "timestamp"):
        return "CAST(%s AS DATETIME(6))"
    if kind == "time":
        return "CAST(%s AS TIME(6))"
    if kind in ("decimal", "numeric"):
        return "CAST(%s AS DECIMAL(65,30))"
    if column.collation:
        return f"CONVERT(%s USING {column.collation.split('_')[0]}) COLLATE {column.collation}"
    return "%s"


def _param(column: CatalogColumn, value: Any) -> Any:
    """An emitted key value as the parameter the snapshot's comparison takes."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(value, time):
        return value.isoformat()
    return value


def encode_key(key: list[Any] | None) -> str | None:
    """A key as PyMySQL read it, as JSON text that ``decode_key`` reads back."""
    if key is None:
        return None
    return json.dumps([_tag(v) for v in key], ensure_ascii=False)


def decode_key(text: str | None) -> list[Any] | None:
    return None if not text else [_untag(v) for v in json.loads(text)]


def _tag(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        return {"b": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Decimal):
        return {"d": str(value)}
    if isinstance(value, datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, date):
        return {"da": value.isoformat()}
    if isinstance(value, time):
        return {"t": value.isoformat()}
    if isinstance(value, timedelta):
        return {"td": [value.days, value.seconds, value.microseconds]}
    return value


def _untag(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    (kind, text), = value.items()
    return {"b": lambda: base64.b64decode(text), "d": lambda: Decimal(text),
            "dt": lambda: datetime.fromisoformat(text), "da": lambda: date.fromisoformat(text),
            "t": lambda: time.fromisoformat(text), "td": lambda: timedelta(*text)}[kind]()
