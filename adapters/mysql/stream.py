"""The row binlog as whole transactions, in commit order (mysql-replication).

``BinlogStream`` reads from a coordinate (position.py) and hands out
``Transaction``s: the events between a transaction's GTID event (or
``BEGIN``) and its commit (``XID``, ``COMMIT``), or a DDL statement alone.
Row events keep only the schemas the source asks for; statements are kept
whatever their schema (a DDL statement may name its tables with another
default database).  The server sends a heartbeat every ``HEARTBEAT``
seconds on a quiet binlog, so a read waiting for the next event never waits
much longer than that.  One transaction is held in memory while it is read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from pymysqlreplication import BinLogStreamReader
from pymysqlreplication.event import (
    GtidEvent,
    HeartbeatLogEvent,
    MariadbGtidEvent,
    QueryEvent,
    RotateEvent,
    XidEvent,
)
from pymysqlreplication.row_event import DeleteRowsEvent, UpdateRowsEvent, WriteRowsEvent

from adapters.mysql.position import coordinate, file_name, split

HEARTBEAT = 1.0  # seconds between the server's heartbeats on a quiet binlog
_ROWS = (WriteRowsEvent, UpdateRowsEvent, DeleteRowsEvent)
_STANDALONE = 1  # MariaDB GTID flag: the transaction is one statement, without a COMMIT


@dataclass
class Rows:
    """One rows event: ``op`` is insert, update or delete; ``rows`` as mysql-replication decodes them."""

    schema: str
    table: str
    op: str
    rows: list[dict[str, Any]]
    columns: tuple[str, ...]  # the column names the table map gives, in order


@dataclass
class Statement:
    schema: str  # the session's default database when it ran
    query: str


@dataclass
class Transaction:
    start: int  # coordinate of its first event
    gtid: str = ""
    items: list[Rows | Statement] = field(default_factory=list)
    end: int = 0  # coordinate after its commit
    commit_time: float = 0.0  # seconds since the epoch
    explicit: bool = False  # began with BEGIN (or a MariaDB GTID event that is not standalone)

    @property
    def txid(self) -> str:
        return self.gtid or f"{split(self.start)[0]}:{split(self.start)[1]}"


class BinlogStream:
    """A binlog dump from ``start`` (a coordinate) of the server at ``settings``."""

    def __init__(self, settings: dict[str, Any], server_id: int, prefix: str, start: int, schemas: Sequence[str],
                 gtid_position: str | None):
        """``gtid_position``: MariaDB's GTID position at ``start`` (``BINLOG_GTID_POS``), which MariaDB
        starts a dump from; None for MySQL, which starts at the file and offset."""
        number, offset = split(start)
        self.file = file_name(prefix, number)
        self.start = start
        self.end = start  # coordinate after the last event received
        self._reader = BinLogStreamReader(
            connection_settings=dict(settings), server_id=server_id, resume_stream=True, blocking=True,
            log_file=self.file, log_pos=offset, only_schemas=list(schemas), slave_heartbeat=HEARTBEAT,
            is_mariadb=gtid_position is not None, auto_position=gtid_position, enable_logging=False,
            use_column_name_cache=False)
        self._open: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def next(self, target: int, deadline: float) -> Transaction | None:
        """The next whole transaction; None once everything before ``target`` was received
        (outside a transaction) or at ``deadline``."""
        while True:
            if self._open is None and self.end >= target:
                return None
            if time.monotonic() >= deadline:
                return None
            event = self._reader.fetchone()
            if event is None:
                return None
            done = self._take(event)
            if done is not None and done.start >= self.start:  # a GTID start may send a little before
                return done

    def _take(self, event: Any) -> Transaction | None:
        if isinstance(event, RotateEvent):
            self.file = event.next_binlog
            self.end = coordinate(self.file, event.position)
            return None
        if isinstance(event, HeartbeatLogEvent):
            if event.ident == self.file and event.packet.log_pos:
                self.end = max(self.end, coordinate(self.file, event.packet.log_pos))
            return None
        log_pos = event.packet.log_pos
        if not log_pos:
            return None  # an event the server made up (the format description at a start)
        begin = coordinate(self.file, log_pos - event.packet.event_size)
        self.end = coordinate(self.file, log_pos)
        if isinstance(event, (MariadbGtidEvent, GtidEvent)):
            self._open = Transaction(begin, gtid=event.gtid,
                                     explicit=isinstance(event, MariadbGtidEvent) and not event.flags & _STANDALONE)
            return None
        if isinstance(event, QueryEvent):
            return self._query(event, begin)
        unit = self._open
        if unit is None:
            return None  # an event outside any transaction we saw begin (a start inside one)
        if isinstance(event, _ROWS):
            op = "insert" if isinstance(event, WriteRowsEvent) else "update" if isinstance(event, UpdateRowsEvent) \
                else "delete"
            columns = tuple(c.name for c in event.columns)
            unit.items.append(Rows(event.schema, event.table, op, event.rows, columns))
        elif isinstance(event, XidEvent):
            return self._close(event)
        return None

    def _query(self, event: QueryEvent, begin: int) -> Transaction | None:
        text = event.query.strip() if isinstance(event.query, str) else bytes(event.query).decode(errors="replace")
        word = text.split(None, 1)[0].upper() if text else ""
        schema = event.schema.decode() if isinstance(event.schema, bytes) else (event.schema or "")
        if word in ("BEGIN", "START", "XA") and (self._open is None or not self._open.items):
            if self._open is None:
                self._open = Transaction(begin)
            self._open.explicit = True
            return None
        if word in ("COMMIT", "ROLLBACK"):
            return self._close(event) if self._open is not None else None
        if self._open is None:
            self._open = Transaction(begin)
        self._open.items.append(Statement(schema, text))
        if not self._open.explicit:
            return self._close(event)  # a DDL statement is a transaction of its own
        return None

    def _close(self, event: Any) -> Transaction:
        done, self._open = self._open, None
        done.end = self.end
        done.commit_time = event.timestamp
        return done

    def close(self) -> None:
        self._reader.close()
