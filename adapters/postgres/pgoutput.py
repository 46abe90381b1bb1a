"""pgoutput messages (protocol version 2: version 1 and the streaming of in-progress transactions).

``decode`` turns one logical replication payload into a message object.
Tuple values stay in PostgreSQL's text output form (adapters/postgres/types.py
parses them); an unchanged TOASTed value is ``UNCHANGED``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


class _Unchanged:
    """An unchanged TOASTed value: pgoutput does not send it again."""

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED = _Unchanged()


# -- messages -----------------------------------------------------------------

@dataclass(frozen=True)
class Begin:
    final_lsn: int  # the commit record's LSN
    commit_time: datetime
    xid: int


@dataclass(frozen=True)
class Commit:
    commit_lsn: int
    end_lsn: int  # just after the commit record
    commit_time: datetime


@dataclass(frozen=True)
class RelationColumn:
    name: str
    key: bool  # part of the replica identity
    type_oid: int
    typmod: int


@dataclass(frozen=True)
class Relation:
    oid: int
    namespace: str
    name: str
    replica_identity: str  # d(efault), n(othing), f(ull), i(ndex)
    columns: tuple[RelationColumn, ...]


@dataclass(frozen=True)
class Insert:
    oid: int
    new: tuple[Any, ...]  # str (text form), None (NULL) or UNCHANGED per column


@dataclass(frozen=True)
class Update:
    oid: int
    old: tuple[Any, ...] | None  # sent only when the identity changed ('K') or is FULL ('O')
    new: tuple[Any, ...]


@dataclass(frozen=True)
class Delete:
    oid: int
    old: tuple[Any, ...]


@dataclass(frozen=True)
class Truncate:
    oids: tuple[int, ...]


@dataclass(frozen=True)
class Message:
    """A logical decoding message (pg_logical_emit_message)."""

    transactional: bool
    lsn: int
    prefix: str
    content: bytes


@dataclass(frozen=True)
class StreamStart:
    """The messages up to StreamStop belong to the in-progress transaction ``xid``."""

    xid: int
    first: bool  # its first block


@dataclass(frozen=True)
class StreamStop:
    pass


@dataclass(frozen=True)
class StreamCommit:
    xid: int
    commit_lsn: int
    end_lsn: int
    commit_time: datetime


@dataclass(frozen=True)
class StreamAbort:
    xid: int
    subxid: int  # ``xid`` when the whole transaction rolled back, else a subtransaction


STREAMED_KINDS = b"RYIUDTM"  # messages that carry their (sub)transaction's xid inside a stream block


def streamed(payload: bytes) -> tuple[int, bytes]:
    """The (sub)transaction xid of a message sent inside a stream block, and the
    message as it is sent outside one (for ``decode``)."""
    (xid,) = struct.unpack_from("!I", payload, 1)
    return xid, payload[:1] + payload[5:]


_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.at = 0

    def take(self, fmt: str) -> Any:
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return values[0] if len(values) == 1 else values

    def string(self) -> str:
        end = self.data.index(b"\0", self.at)
        text = self.data[self.at:end].decode()
        self.at = end + 1
        return text

    def raw(self, n: int) -> bytes:
        self.at += n
        return self.data[self.at - n:self.at]

    def tuple(self) -> tuple[Any, ...]:
        """TupleData: the hot path, so with plain indexing."""
        data, at = self.data, self.at
        (count,) = _INT16.unpack_from(data, at)
        at += 2
        values: list[Any] = []
        for _ in range(count):
            kind = data[at]
            at += 1
            if kind == 0x74:  # 't': text
                (length,) = _INT32.unpack_from(data, at)
                at += 4 + length
                values.append(data[at - length:at].decode())
            elif kind == 0x6E:  # 'n': null
                values.append(None)
            elif kind == 0x75:  # 'u': unchanged TOASTed value
                values.append(UNCHANGED)
            else:
                raise ValueError(f"unsupported pgoutput tuple value kind {chr(kind)!r}")
        self.at = at
        return tuple(values)


def _timestamp(microseconds: int) -> datetime:
    return _PG_EPOCH + timedelta(microseconds=microseconds)


def decode(payload: bytes) -> object | None:
    """The message in one pgoutput payload; None for kinds we do not use (Origin, Type)."""
    r = _Reader(payload)
    kind = r.take("!c")
    if kind == b"B":
        lsn, at, xid = r.take("!QqI")
        return Begin(lsn, _timestamp(at), xid)
    if kind == b"C":
        _flags, lsn, end, at = r.take("!bQQq")
        return Commit(lsn, end, _timestamp(at))
    if kind == b"R":
        oid = r.take("!I")
        namespace, name, identity = r.string(), r.string(), r.take("!c").decode()
        columns = []
        for _ in range(r.take("!h")):
            flags = r.take("!b")
            column_name = r.string()
            type_oid, typmod = r.take("!Ii")
            columns.append(RelationColumn(column_name, bool(flags & 1), type_oid, typmod))
        return Relation(oid, namespace or "pg_catalog", name, identity, tuple(columns))
    if kind == b"I":
        oid = r.take("!I")
        r.take("!c")  # 'N'
        return Insert(oid, r.tuple())
    if kind == b"U":
        oid = r.take("!I")
        marker = r.take("!c")
        old = None
        if marker in (b"K", b"O"):
            old = r.tuple()
            marker = r.take("!c")
        return Update(oid, old, r.tuple())
    if kind == b"D":
        oid = r.take("!I")
        r.take("!c")  # 'K' or 'O'
        return Delete(oid, r.tuple())
    if kind == b"T":
        count, _options = r.take("!Ib")
        return Truncate(tuple(r.take("!I") for _ in range(count)))
    if kind == b"M":
        flags, lsn = r.take("!bQ")
        prefix = r.string()
        return Message(bool(flags & 1), lsn, prefix, r.raw(r.take("!i")))
    if kind == b"S":
        xid, first = r.take("!IB")
        return StreamStart(xid, first == 1)
    if kind == b"E":
        return StreamStop()
    if kind == b"c":
        xid, _flags, lsn, end, at = r.take("!IBQQq")
        return StreamCommit(xid, lsn, end, _timestamp(at))
    if kind == b"A":
        return StreamAbort(*r.take("!II"))
    if kind in (b"O", b"Y"):
        return None
    raise ValueError(f"unsupported pgoutput message {kind!r}")
