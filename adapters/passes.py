"""Snapshot passes and the key regions they read, as PostgreSQL and MariaDB/MySQL capture keep them.

A table's snapshot is read in *passes* (0: its first snapshot; each
re-snapshot or re-read starts the next), each in *chunks* of keys read in
key order.  The chunks a pass read at one snapshot form a *region*, whose
*point* splits the source's change stream (a WAL LSN, a binlog coordinate):
changes committed before it are in the rows the snapshot read.  So a
streamed change to a key inside a region is kept only when it committed
at or after the region's point; a change to a key the current pass has not
read yet is kept when an earlier pass completed (the node holds the table,
and the pass reads the key later anyway), else not (the pass will read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence


@dataclass(frozen=True)
class Pass:
    """A table's latest snapshot pass as the source's bookkeeping has it."""

    number: int  # 0: the first snapshot
    rows: int  # rows read so far
    estimate: int  # the server's row count estimate of the table
    done: bool


@dataclass
class Chunk:
    position: int  # its last position: stored at the node once the node's position reaches it
    point: int  # where the snapshot it was read at splits the change stream
    last_key: list[Any] | None  # the last key read so far in the table
    done: bool


class Regions:
    """The chunks of each table's current pass, and the tables an earlier pass read completely."""

    def __init__(self) -> None:
        self._chunks: dict[str, list[Chunk]] = {}
        self._pass: dict[str, int] = {}
        self._complete: set[str] = set()

    def load(self, rows: Iterable[tuple[str, int, int, list[Any] | None, bool, int]]) -> None:
        """Start from stored chunks: (resource, position, point, last key, done, pass), ordered by
        pass and position; a row without a point starts a pass that read nothing yet."""
        self._chunks, self._pass, self._complete = {}, {}, set()
        for resource, position, point, last_key, done, pass_no in rows:
            if self._pass.get(resource) != pass_no:
                if self.done(resource):
                    self._complete.add(resource)
                self._pass[resource], self._chunks[resource] = pass_no, []
            if point:
                self._chunks[resource].append(Chunk(position, point, last_key, done))

    def begin(self, resource: str) -> int:
        """Start the next pass of ``resource``; its number."""
        if self.done(resource):
            self._complete.add(resource)
        self._pass[resource] = self._pass.get(resource, 0) + 1
        self._chunks[resource] = []
        return self._pass[resource]

    def pass_of(self, resource: str) -> int:
        return self._pass.get(resource, 0)

    def chunks(self, resource: str) -> list[Chunk]:
        """The chunks the table's current pass has read (a list to append to)."""
        return self._chunks.setdefault(resource, [])

    def last_key(self, resource: str) -> list[Any] | None:
        chunks = self._chunks.get(resource)
        return chunks[-1].last_key if chunks else None

    def done(self, resource: str) -> bool:
        chunks = self._chunks.get(resource)
        return bool(chunks) and chunks[-1].done

    def forget(self, resource: str) -> None:
        self._chunks.pop(resource, None)

    def unsnapshotted(self, tables: Sequence[str]) -> list[str]:
        """The tables whose current pass is not done, sorted."""
        return sorted(r for r in tables if not self.done(r))

    def holds(self, resource: str, commit: int, key_after: Callable[[list[Any]], bool]) -> bool:
        """Whether a streamed change committed at ``commit`` to a row is kept: its key lies in a region
        whose point is at or before ``commit`` (``key_after(bound)``: the row's key sorts after
        ``bound``), or outside the current pass's regions when an earlier pass completed."""
        chunks = self._chunks.get(resource)
        if not chunks:
            return resource in self._complete
        if chunks[-1].done and chunks[0].point == chunks[-1].point:  # points only grow along the chunks
            return commit >= chunks[0].point  # the usual case: one snapshot read the whole table
        lower = None
        for i, chunk in enumerate(chunks):
            if i + 1 < len(chunks) and chunks[i + 1].point == chunk.point:
                continue  # not the last chunk of its region
            upper = chunk.last_key
            above_lower = lower is None or key_after(lower)
            below_upper = chunk.done or (upper is not None and not key_after(upper))
            if above_lower and below_upper:
                return commit >= chunk.point
            lower = upper
        return resource in self._complete
