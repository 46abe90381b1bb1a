"""A capture source read one batch ahead, on a thread of its own.

While the capture loop turns a batch into events and stores them, the next
batch is already being read and decoded: the source's network waits, the
store's commits and the database work on both sides overlap, and the
decoding runs while the store's transaction is waiting on disk.  The
read-ahead asks exactly what the capture loop asks next when the batch is
stored (the changes after its last position), so what it hands out is what
a direct read would return; when the loop asks anything else (after a
failure to store), the read-ahead is dropped and the source reads again from
the position asked.  At most one batch is held ahead: memory stays bounded.

Every call reaches the source from the same thread, the one that opened it,
because connections belong to the thread that opened them.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable

from exchange.contracts import changes as ch

log = logging.getLogger(__name__)


def _log_failure(future: Future) -> None:
    if future.exception() is not None:
        log.warning("acknowledging a position to the source failed: %s", future.exception())


class ReadAhead:
    """The source ``open_source()`` returns, read one batch ahead of the capture loop."""

    def __init__(self, open_source: Callable[[], Any]):
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="capture-read")
        self._source = self._thread.submit(open_source).result()
        self._ahead: tuple[ch.Position, int, Future] | None = None
        self._acknowledged: Future | None = None

    def read(self, after: ch.Position, limit: int) -> list[ch.Change]:
        """The changes after ``after`` (at most about ``limit``), then starts reading those that follow."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[:2] == (after, limit):
            changes = ahead[2].result()
        else:
            if ahead is not None:
                ahead[2].exception()  # a read ahead of something else: wait for it, forget what it found
            changes = self._call("read", after, limit)
        if changes:  # busy: the next batch is likely there already
            last = changes[-1].position
            self._ahead = (last, limit, self._thread.submit(self._source.read, last, limit))
        return changes

    def acknowledge(self, position: ch.Position) -> None:
        """Confirm ``position`` to the source without waiting for a read ahead to finish first
        (a failure shows at the next acknowledgement, or in the log when a later one came first)."""
        previous, self._acknowledged = self._acknowledged, self._thread.submit(self._source.acknowledge, position)
        if previous is None:
            return
        if previous.done():
            previous.result()
        else:  # superseded by this one; a failure of it is still logged
            previous.add_done_callback(_log_failure)

    def close(self) -> None:
        """Close the source once a read ahead has finished."""
        try:
            self._call("close")
        finally:
            self._thread.shutdown()

    def __getattr__(self, name: str) -> Any:
        """The source's other attributes; its methods run on the source's thread."""
        if name.startswith("_"):
            raise AttributeError(name)
        value = getattr(self._source, name)
        if not callable(value):
            return value
        return lambda *args, **kwargs: self._call(name, *args, **kwargs)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self._thread.submit(getattr(self._source, name), *args, **kwargs).result()
