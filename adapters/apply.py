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

from adapters import sql
from exchange.contracts import changes as ch
from exchange.contracts.changes import ApplyTarget, Run, TableSchema
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
from exchange.contracts.stored_records import CREATED, DELETED, UPDATED, Record, record_of


class ApplyError(OperationFailed):
    """An event that cannot be applied; the message says why."""


@dataclass(slots=True)
class _Row:
    """The net effect of a batch's events on one row."""

    table: str
    key: dict[str, Any]
    delete_first: bool = False  # the row existed before the batch and was deleted
    insert: dict[str, Any] | None = None  # the full row to insert
    update: dict[str, Any] | None = None  # changed columns of a row that existed before the batch


class NetChanges:
    """Row operations of one batch reduced to their net effect per row.

    Rows are independent of each other (targets only have primary keys), so
    the reduced operations can be applied grouped by kind and shape: all
    deletes, then inserts, then updates, each run with one statement.
    """

    def __init__(self) -> None:
        self.rows: dict[tuple, _Row] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, record: Record) -> None:
        """Fold one record event into the net effect on its row."""
        ident: tuple = (record.resource, *record.key.values())
        try:
            row = self.rows.get(ident)
        except TypeError:  # a key value that is a list (an array column)
            ident = (record.resource, canonical_json(record.key))
            row = self.rows.get(ident)
        kind = record.kind
        if row is None:
            row = self.rows[ident] = _Row(record.resource, record.key)
        # Row images are never changed in place: the records they come from may be shared.
        if kind == CREATED:
            row.insert, row.update = record.values, None
        elif kind == UPDATED:
            if row.insert is not None:
                row.insert = {**row.insert, **(record.values or {})}
            else:
                row.update = {**row.update, **(record.values or {})} if row.update else record.values
        elif kind == DELETED:
            if row.insert is None:
                row.delete_first = True
            row.insert = row.update = None
        else:
            raise ApplyError(f"unknown event type {kind}")

    def runs(self) -> list[Run]:
        """The net operations as runs of one shape: deletes, inserts, updates, each grouped by table and
        columns, with each row's parameters made here (no per-row operation object)."""
        groups: dict[tuple[int, str, tuple[str, ...], tuple[str, ...], tuple[bool, ...]], list[tuple]] = {}
        for row in self.rows.values():
            nulls, key = sql.key_params(row.key.values())
            if row.delete_first:
                groups.setdefault((0, row.table, (), tuple(row.key), nulls), []).append(key)
            if row.insert is not None:
                groups.setdefault((1, row.table, tuple(row.insert), tuple(row.key), ()), []).append(
                    tuple(row.insert.values()))
            elif row.update and not row.delete_first:
                groups.setdefault((2, row.table, tuple(row.update), tuple(row.key), nulls), []).append(
                    (*row.update.values(), *key))
        return [Run(table, _OPS[order], columns, key, nulls, rows)
                for (order, table, columns, key, nulls), rows in sorted(groups.items())]


_OPS = (ch.DELETE, ch.INSERT, ch.UPDATE)


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


def fold(target: ApplyTarget, name: str, event: RecordEvent | Record, stats: Stats) -> None:
    """Fold one event (a ``Record`` or a decoded event) into the pending changes; a schema
    change first applies what is pending, then alters the table."""
    stats.events += 1
    if event.commit_time is not None:
        stats.last_commit_time = event.commit_time
    if isinstance(event, Record):
        stats.pending.add(event)
    elif isinstance(event, SchemaChanged):
        flush(target, name, stats)  # rows before the schema change go in first
        target.apply_schema(TableSchema.from_dict(event.table), event.renames)
        stats.schema_changes += 1
    elif isinstance(event, TableTruncated):
        pass  # a marker: the deletes of each of the table's rows follow it
    elif isinstance(event, (RecordCreated, RecordUpdated, RecordDeleted)):
        stats.pending.add(record_of(event))
    else:
        raise ApplyError(f"unknown event type {type(event).__name__}")


def flush(target: ApplyTarget, name: str, stats: Stats) -> None:
    """Apply the pending net changes with the position reached, in one transaction."""
    runs = stats.pending.runs()
    target.apply_runs(runs, checkpoint=(name, stats.position))
    stats.rows_applied += sum(len(run.rows) for run in runs)
    stats.pending = NetChanges()
