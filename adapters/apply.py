"""Events applied to a target database: the fold shared by replay and consumer replicas.

Record events are reduced per batch to their net effect on each row
(``NetChanges``) and handed to an ``ApplyTarget`` in one transaction
together with the checkpoint the batch reached, so an interrupted apply
resumes where it stopped and never applies a change twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from exchange.contracts import changes as ch
from exchange.contracts.changes import ApplyTarget, RowOp, TableSchema
from exchange.contracts.errors import OperationFailed
from exchange.contracts.events import (
    RecordCreated,
    RecordDeleted,
    RecordEvent,
    RecordUpdated,
    SchemaChanged,
    TableTruncated,
    canonical_json,
)


class ApplyError(OperationFailed):
    """An event that cannot be applied; the message says why."""


@dataclass
class _Row:
    """The net effect of a batch's events on one row."""

    delete_first: bool = False  # the row existed before the batch and was deleted
    insert: dict[str, Any] | None = None  # the full row to insert
    update: dict[str, Any] | None = None  # changed columns of a row that existed before the batch


class NetChanges:
    """Row operations of one batch reduced to their net effect per row.

    Rows are independent of each other (targets only have primary keys), so
    the reduced operations can be applied grouped by kind and shape: all
    deletes, then inserts, then updates, each in large executemany runs.
    """

    _ORDER = {ch.DELETE: 0, ch.INSERT: 1, ch.UPDATE: 2}

    def __init__(self) -> None:
        self.rows: dict[tuple, tuple[str, dict[str, Any], _Row]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, event: RecordEvent) -> None:
        try:
            ident = (event.resource, *event.key.values())
            hash(ident)
        except TypeError:  # a key value that is a list (an array column)
            ident = (event.resource, canonical_json(event.key))
        if ident not in self.rows:
            self.rows[ident] = (event.resource, event.key, _Row())
        row = self.rows[ident][2]
        if isinstance(event, RecordCreated):
            row.insert, row.update = dict(event.row), None
        elif isinstance(event, RecordUpdated):
            if row.insert is not None:
                row.insert.update(event.changed)
            else:
                row.update = {**(row.update or {}), **event.changed}
        elif isinstance(event, RecordDeleted):
            if row.insert is None:
                row.delete_first = True
            row.insert = row.update = None
        else:
            raise ApplyError(f"unknown event type {type(event).__name__}")

    def ops(self) -> list[RowOp]:
        ops = []
        for table, key, row in self.rows.values():
            if row.delete_first:
                ops.append(RowOp(table, ch.DELETE, key))
            if row.insert is not None:
                ops.append(RowOp(table, ch.INSERT, key, row.insert))
            elif row.update and not row.delete_first:
                ops.append(RowOp(table, ch.UPDATE, key, row.update))
        ops.sort(key=lambda op: (self._ORDER[op.op], op.table, tuple(op.values)))
        return ops


@dataclass
class Stats:
    events: int = 0
    rows_applied: int = 0
    schema_changes: int = 0
    position: int = 0
    resumed_from: int = 0
    last_commit_time: datetime | None = None
    pending: NetChanges = field(default_factory=NetChanges, repr=False)

    def to_dict(self) -> dict[str, Any]:
        summary = {k: v for k, v in vars(self).items() if k != "pending"}
        summary["last_commit_time"] = self.last_commit_time and self.last_commit_time.isoformat()
        return summary


def apply_events(target: ApplyTarget, name: str, events: Sequence[tuple[int, RecordEvent]], after: int,
                 reached: int) -> Stats:
    """Fold ``(notification id, event)`` pairs that follow position ``after`` into ``target`` and record
    ``reached`` (at or beyond the last id) under the checkpoint ``name``: the replay path for logs that
    arrive in batches (a consumer's replica)."""
    stats = Stats(position=after, resumed_from=after)
    for notification_id, event in events:
        fold(target, name, event, stats)
        stats.position = notification_id
    stats.position = max(stats.position, reached)
    flush(target, name, stats)
    return stats


def fold(target: ApplyTarget, name: str, event: RecordEvent, stats: Stats) -> None:
    stats.events += 1
    if event.commit_time is not None:
        stats.last_commit_time = event.commit_time
    if isinstance(event, SchemaChanged):
        flush(target, name, stats)  # rows before the schema change go in first
        target.apply_schema(TableSchema.from_dict(event.table), event.renames)
        stats.schema_changes += 1
    elif isinstance(event, TableTruncated):
        pass  # a marker: the deletes of each of the table's rows follow it
    else:
        stats.pending.add(event)


def flush(target: ApplyTarget, name: str, stats: Stats) -> None:
    """Apply the pending net changes with the position reached, in one transaction."""
    ops = stats.pending.ops()
    target.apply(ops, checkpoint=(name, stats.position))
    stats.rows_applied += len(ops)
    stats.pending = NetChanges()
