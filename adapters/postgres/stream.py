"""The replication stream of the capture slot: whole committed transactions and snapshot markers, in commit order.

The slot is read with the built-in ``pgoutput`` plugin through the
publication of the captured tables (protocol version 1 with logical
messages; PostgreSQL 14 or later).  One transaction is held in memory while
it is read (no spilling).  Confirming an LSN lets the server recycle the
WAL before it.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg2.extras

from adapters.postgres import pgoutput
from adapters.postgres.dialect import connect
from adapters.postgres.snapshot import MARKER_PREFIX, REQUEST_PREFIX

_ROW_MESSAGES = (pgoutput.Relation, pgoutput.Insert, pgoutput.Update, pgoutput.Delete, pgoutput.Truncate)


@dataclass
class Transaction:
    """One committed transaction: its Begin, its relation, row and re-snapshot request messages, its Commit."""

    begin: pgoutput.Begin
    messages: list[Any] = field(default_factory=list)
    commit: pgoutput.Commit | None = None


class ReplicationStream:
    """The main slot's stream: whole transactions and marker messages, in commit order."""

    def __init__(self, url: str, slot: str, publication: str):
        self.connection = connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        self.cursor = self.connection.cursor()
        self.cursor.start_replication(slot_name=slot, decode=False, options={
            "proto_version": "1", "publication_names": publication, "messages": "true"})
        self.wal_end = 0  # the server has sent everything before this LSN
        self.flushed = 0
        self._open: Transaction | None = None

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def next(self, target: int, deadline: float) -> Transaction | pgoutput.Message | None:
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
                self._open = Transaction(decoded)
            elif isinstance(decoded, pgoutput.Commit):
                done, self._open = self._open, None
                done.commit = decoded
                return done
            elif isinstance(decoded, pgoutput.Message) and not decoded.transactional:
                if decoded.prefix == MARKER_PREFIX:
                    return decoded
            elif isinstance(decoded, pgoutput.Message) and decoded.prefix == REQUEST_PREFIX and self._open is not None:
                self._open.messages.append(decoded)
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
