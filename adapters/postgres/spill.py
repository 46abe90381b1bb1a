"""In-progress transactions the server streams, kept on disk until they commit or roll back.

The server streams a transaction before it commits once its decoded
changes exceed ``logical_decoding_work_mem`` (pgoutput protocol version 2,
``streaming``).  Each such transaction's messages go to an anonymous
temporary file (gone with the process, whatever the way it ends), as they
arrive; at its commit they are read back in order, at its roll-back the
file is dropped.  A subtransaction rolled back drops its messages and all
after them: while a subtransaction runs, every message of its transaction
is its own or its children's, and its roll-back reaches the stream before
any later message (PostgreSQL's own subscriber does the same).
"""

from __future__ import annotations

import struct
import tempfile
from typing import Iterator

_LENGTH = struct.Struct("!I")


class Spill:
    """The streamed messages of the in-progress transaction ``xid``."""

    def __init__(self, xid: int):
        self.xid = xid
        self.messages = 0
        self._file = tempfile.TemporaryFile(prefix="exchange-stream-")
        self._starts: dict[int, tuple[int, int]] = {}  # subtransaction -> (offset, messages) at its first

    def append(self, subxid: int, payload: bytes) -> None:
        """Keep a message of the (sub)transaction ``subxid``."""
        if subxid != self.xid and subxid not in self._starts:
            self._starts[subxid] = (self._file.tell(), self.messages)
        self._file.write(_LENGTH.pack(len(payload)))
        self._file.write(payload)
        self.messages += 1

    def abort(self, subxid: int) -> None:
        """Drop the messages of the rolled-back subtransaction ``subxid`` (and of those after it)."""
        start = self._starts.get(subxid)
        if start is None:
            return  # none of its messages was streamed
        offset, self.messages = start
        self._file.truncate(offset)
        self._file.seek(offset)
        self._starts = {x: s for x, s in self._starts.items() if s[0] < offset}

    def replay(self) -> Iterator[bytes]:
        """The messages kept, in order."""
        self._file.flush()
        self._file.seek(0)
        while header := self._file.read(_LENGTH.size):
            yield self._file.read(_LENGTH.unpack(header)[0])

    def close(self) -> None:
        self._file.close()
