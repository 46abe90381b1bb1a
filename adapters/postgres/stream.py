"""The replication stream of the capture slot: committed transactions, in pieces, and snapshot markers, in commit order.

The slot is read with the built-in ``pgoutput`` plugin through the
publication of the captured tables (protocol version 2 with logical
messages and streaming; PostgreSQL 14 or later).  A transaction is sent
after it commits; one whose decoded changes exceed the server's
``logical_decoding_work_mem`` is streamed while it runs instead, kept on
the node's disk (spill.py) and read back at its commit, or dropped at its
roll-back.  Either way the stream hands a committed transaction over in
pieces of a bounded number of messages, so a transaction of any size is
read in bounded memory.  Confirming an LSN lets the server recycle the WAL
before it.
"""

from __future__ import annotations

import select
import time
from dataclasses import dataclass, field
from typing import Any, Iterator

import psycopg2.errors
import psycopg2.extras

from adapters.postgres import pgoutput
from adapters.postgres.dialect import connect
from adapters.postgres.snapshot import MARKER_PREFIX, REQUEST_PREFIX
from adapters.postgres.spill import Spill
from exchange.contracts.changes import SourceNotReady
from exchange.contracts.errors import OperationFailed

FEEDBACK_EVERY = 1.0  # seconds between status updates while pieces are handed over (wal_sender_timeout)
SLOT_RELEASE_WAIT = 30.0  # seconds a slot held by an ended connection's server process may take to free

_ROW_MESSAGES = (pgoutput.Relation, pgoutput.Insert, pgoutput.Update, pgoutput.Delete, pgoutput.Truncate)


@dataclass
class Piece:
    """Consecutive relation, row and re-snapshot request messages of one committed transaction:
    ``first`` when they start it, with its Commit when they end it."""

    begin: pgoutput.Begin
    first: bool
    messages: list[Any] = field(default_factory=list)
    commit: pgoutput.Commit | None = None


class StreamError(OperationFailed):
    """The server sent what the protocol does not allow (the stream is read again from the slot)."""


class ReplicationStream:
    """The main slot's stream: pieces of transactions and marker messages, in commit order."""

    def __init__(self, url: str, slot: str, publication: str):
        self.connection, self.cursor = _start(url, slot, {
            "proto_version": "2", "streaming": "on", "publication_names": publication, "messages": "true"})
        self.wal_end = 0  # the server has sent everything before this LSN
        self.flushed = 0
        self._open: pgoutput.Begin | None = None  # the committed transaction being handed over
        self._held: pgoutput.Message | None = None  # a marker that arrived after a piece had begun
        self._spills: dict[int, Spill] = {}  # in-progress transactions streamed so far
        self._block: Spill | None = None  # the one whose stream block is being received
        self._replay: Iterator[bytes] | None = None  # the messages of a committed streamed transaction
        self._replayed: tuple[Spill, pgoutput.Commit] | None = None
        self._replay_first = False
        self._answered = time.monotonic()  # when the server last heard from us

    @property
    def in_transaction(self) -> bool:
        return self._open is not None

    def next(self, target: int, deadline: float, room: int) -> Piece | pgoutput.Message | None:
        """The next piece of a transaction or the next marker; None once everything before
        ``target`` was received (or at ``deadline``).  A piece ends at its transaction's
        Commit, when no more has arrived yet, or with ``room + 1`` messages (the transaction
        does not fit in ``room``)."""
        if time.monotonic() - self._answered >= FEEDBACK_EVERY:
            self.keep_alive()  # the server ends a stream that stays silent for wal_sender_timeout
        if self._replay is not None:
            return self._replay_piece(room)
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
            payload = message.payload
            if self._block is not None and payload[:1] in pgoutput.STREAMED_KINDS:
                self._block.append(*pgoutput.streamed(payload))
                continue
            decoded = pgoutput.decode(payload)
            if isinstance(decoded, (pgoutput.StreamStart, pgoutput.StreamStop, pgoutput.StreamAbort)):
                self._streamed(decoded)
            elif isinstance(decoded, pgoutput.StreamCommit):
                self._start_replay(decoded)
                return self._replay_piece(room)
            elif isinstance(decoded, pgoutput.Begin):
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
            elif self._open is not None and _kept(decoded):
                piece = piece or Piece(self._open, first=False)
                piece.messages.append(decoded)
                if len(piece.messages) > room:
                    return piece

    def _streamed(self, message: pgoutput.StreamStart | pgoutput.StreamStop | pgoutput.StreamAbort) -> None:
        """Open or close a stream block, or drop what a roll-back undid."""
        if isinstance(message, pgoutput.StreamStart):
            if message.first and message.xid in self._spills:  # the server starts it over
                self._spills.pop(message.xid).close()
            if message.xid not in self._spills:
                self._spills[message.xid] = Spill(message.xid)
            self._block = self._spills[message.xid]
        elif isinstance(message, pgoutput.StreamStop):
            self._block = None
        elif message.xid in self._spills:
            if message.subxid == message.xid:
                self._spills.pop(message.xid).close()
            else:
                self._spills[message.xid].abort(message.subxid)

    def _start_replay(self, commit: pgoutput.StreamCommit) -> None:
        """Read back the streamed transaction that committed, as a committed transaction."""
        spill = self._spills.pop(commit.xid, None)
        if spill is None:
            raise StreamError(f"the server committed streamed transaction {commit.xid} without streaming its start")
        self._open = pgoutput.Begin(commit.commit_lsn, commit.commit_time, commit.xid)
        self._replay = spill.replay()
        self._replayed = (spill, pgoutput.Commit(commit.commit_lsn, commit.end_lsn, commit.commit_time))
        self._replay_first = True

    def _replay_piece(self, room: int) -> Piece:
        """The next piece of the streamed transaction being read back."""
        assert self._open is not None and self._replay is not None and self._replayed is not None
        piece = Piece(self._open, first=self._replay_first)
        self._replay_first = False
        for payload in self._replay:
            decoded = pgoutput.decode(payload)
            if _kept(decoded):
                piece.messages.append(decoded)
                if len(piece.messages) > room:
                    return piece
        spill, piece.commit = self._replayed
        spill.close()
        self._open = self._replay = self._replayed = None
        return piece

    def confirm(self, lsn: int) -> None:
        """Let the server forget the WAL before ``lsn``."""
        if lsn > self.flushed:
            self.cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, force=True)
            self.flushed = lsn
            self._answered = time.monotonic()

    def keep_alive(self) -> None:
        self.cursor.send_feedback(force=True)
        self._answered = time.monotonic()

    def close(self) -> None:
        for spill in self._spills.values():
            spill.close()
        if self._replayed is not None:
            self._replayed[0].close()
        self.connection.close()


def _start(url: str, slot: str, options: dict[str, str]):
    """A replication connection streaming ``slot``.  The server process of a connection that
    just ended (a node restarted, killed, or resuming) may hold the slot until it notices:
    that is waited for; a slot still held after ``SLOT_RELEASE_WAIT`` is in use elsewhere."""
    deadline = time.monotonic() + SLOT_RELEASE_WAIT
    while True:
        connection = connect(url, connection_factory=psycopg2.extras.LogicalReplicationConnection)
        try:
            cursor = connection.cursor()
            cursor.start_replication(slot_name=slot, decode=False, options=options)
            return connection, cursor
        except psycopg2.errors.ObjectInUse as e:
            connection.close()
            if time.monotonic() >= deadline:
                raise SourceNotReady(f"replication slot {slot!r} stays in use by another connection ({str(e).strip()}): "
                                     "is another node capturing this database with the same slot?") from e
            time.sleep(0.2)
        except BaseException:
            connection.close()
            raise


def _kept(message: Any) -> bool:
    """Whether a message of a transaction is part of what it hands over."""
    return isinstance(message, _ROW_MESSAGES) or (
        isinstance(message, pgoutput.Message) and message.transactional and message.prefix == REQUEST_PREFIX)
