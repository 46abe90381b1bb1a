"""The replication stream of the capture slot: committed transactions, in pieces, and snapshot markers, in commit order.

The slot is read with the built-in ``pgoutput`` plugin through the
publication of the captured tables (protocol version 1 with logical
messages; PostgreSQL 14 or later).  The server sends a transaction once it
has committed (spilling a large one to its disk while decoding,
``logical_decoding_work_mem``); the stream hands it over in pieces of a
bounded number of messages, so a transaction of any size is read in
bounded memory.  Confirming an LSN lets the server recycle the WAL before it.
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
class Piece:
    """Consecutive relation, row and re-snapshot request messages of one committed transaction:
    ``first`` when they start it, with its Commit when they end it."""

    begin: pgoutput.Begin
    first: bool
    messages: list[Any] = field(default_factory=list)
    commit: pgoutput.Commit | None = None


class ReplicationStream:
    """The main slot's stream: pieces of transactions and marker messages, in commit order."""

    def __init__(self, url: str, slot: str, publication: str):
        self.connection = connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        self.cursor = self.connection.cursor()
        self.cursor.start_replication(slot_name=slot, decode=False, options={
            "proto_version": "1", "publication_names": publication, "messages": "true"})
        self.wal_end = 0  # the server has sent everything before this LSN
        self.flushed = 0
        self._open: pgoutput.Begin | None = None  # the transaction being received
        self._held: pgoutput.Message | None = None  # a marker that arrived after a piece had begun

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def next(self, target: int, deadline: float, room: int) -> Piece | pgoutput.Message | None:
        """The next piece of a transaction or the next marker; None once everything before
        ``target`` was received (or at ``deadline``).  A piece ends at its transaction's
        Commit, when no more has arrived yet, or with ``room + 1`` messages (the transaction
        does not fit in ``room``)."""
        if self._held is not None:
            held, self._held = self._held, None
            return held
        piece: Piece | None = None
        while True:
            message = self.cursor.read_message()
            self.wal_end = max(self.wal_end, self.cursor.wal_end)
            if message is None:
                if piece is not None:
                    return piece  # what has arrived so far; the rest follows
                if (self._open is None and self.wal_end >= target) or time.monotonic() >= deadline:
                    return None
                select.select([self.connection], [], [], max(0.0, min(1.0, deadline - time.monotonic())))
                continue
            decoded = pgoutput.decode(message.payload)
            if isinstance(decoded, pgoutput.Begin):
                self._open = decoded
                piece = Piece(decoded, first=True)
            elif isinstance(decoded, pgoutput.Commit):
                if self._open is None:
                    continue
                piece = piece or Piece(self._open, first=False)
                piece.commit, self._open = decoded, None
                return piece
            elif isinstance(decoded, pgoutput.Message) and not decoded.transactional:
                if decoded.prefix == MARKER_PREFIX:
                    if piece is None:
                        return decoded
                    self._held = decoded
                    return piece
            elif self._open is not None and (isinstance(decoded, _ROW_MESSAGES) or (
                    isinstance(decoded, pgoutput.Message) and decoded.prefix == REQUEST_PREFIX)):
                piece = piece or Piece(self._open, first=False)
                piece.messages.append(decoded)
                if len(piece.messages) > room:
                    return piece

    def confirm(self, lsn: int) -> None:
        """Let the server forget the WAL before ``lsn``."""
        if lsn > self.flushed:
            self.cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, force=True)
            self.flushed = lsn

    def keep_alive(self) -> None:
        self.cursor.send_feedback(force=True)

    def close(self) -> None:
        self.connection.close()
