"""Replay: rebuild an agency's tables from its event log (node or hub store).

Events are read in notification order (from a node or hub store, or from a
folder of offline bundles), folded into row operations and
applied to a fresh target database in batches, one transaction per batch;
each batch also records how far the replay got (a checkpoint in the target),
so an interrupted replay resumes where it stopped.  Replay can stop at a
point in time (``until``: before the first change committed after it) or at
a source position (``until_position``), and can rebuild one resource only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Sequence

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

import adapters
from exchange import changes as ch
from exchange.changes import ApplyTarget, RowOp, TableSchema
from exchange.events import (RecordCreated, RecordDeleted, RecordEvent, RecordUpdated, SchemaChanged, canonical_json,
                             make_mapper)
from exchange.store import AgencyRecorder, EventStore, StoreError

READ_BATCH = 5000


class ReplayError(Exception):
    """Replay cannot proceed; the message says why."""


@dataclass
class Limits:
    """Where a replay stops and what it keeps."""

    until: datetime | None = None  # last source commit time to include
    until_position: int | None = None  # last source position to include
    resource: str | None = None  # only this table

    def passed(self, event: RecordEvent) -> bool:
        """True once ``event`` lies beyond the replay's end."""
        if self.until is not None and event.commit_time is not None and event.commit_time > self.until:
            return True
        return self.until_position is not None and event.position > self.until_position


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
            raise ReplayError(f"unknown event type {type(event).__name__}")

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


def replay(store_url: str, agency: str, target_url: str, *, cipher: Any = None, **options: Any) -> dict[str, Any]:
    """Rebuild ``agency``'s tables from the store at ``store_url`` into
    ``target_url`` (``cipher``: the store's exchange.at_rest.StateCipher); ``options`` as for ``replay_log``."""
    store = EventStore(store_url, create=False, cipher=cipher)
    try:
        if agency not in store.agencies():
            raise StoreError(f"store {store_url!r} holds no events of agency {agency!r}; it holds: "
                             f"{', '.join(store.agencies()) or 'none'}")
        return replay_log(store.recorder(agency), agency, target_url, **options)
    finally:
        store.close()


def replay_log(log: AgencyRecorder, agency: str, target_url: str, *, until: datetime | None = None,
               until_position: int | None = None, resource: str | None = None,
               progress: bool | None = None) -> dict[str, Any]:
    """Rebuild ``agency``'s tables from ``log`` (a store's recorder or a
    BundleLog) into ``target_url``, resuming an earlier interrupted run."""
    limits = Limits(until, until_position, resource)
    target = adapters.open_target(target_url)
    try:
        name = f"replay:{agency}:{resource or '*'}"
        start = _resume_position(target, target_url, name)
        return _replay(log, target, name, start, limits, progress).to_dict()
    finally:
        target.close()


def _resume_position(target: ApplyTarget, target_url: str, name: str) -> int:
    """Where an earlier run of the same replay stopped; 0 for a fresh target."""
    position = target.checkpoint(name)
    if position is not None:
        return position
    reader = adapters.open_reader(target_url)
    try:
        existing = reader.tables()
    finally:
        reader.close()
    if existing:
        raise ReplayError(f"target {target_url!r} is not empty (has tables {', '.join(existing)}) and holds no "
                          "replay of this agency to resume; replay builds a fresh database")
    return 0


def _replay(recorder: AgencyRecorder, target: ApplyTarget, name: str, start: int, limits: Limits,
            progress: bool | None) -> Stats:
    mapper = make_mapper()
    stats = Stats(position=start, resumed_from=start)
    show = sys.stderr.isatty() if progress is None else progress
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               TextColumn("{task.fields[rate]:>8.0f} events/s"), TimeRemainingColumn())
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task("replay", total=recorder.count_after(start), rate=0.0)
        while notifications := recorder.read(stats.position, READ_BATCH):
            for n in notifications:
                event = mapper.to_domain_event(n)
                if limits.passed(event):
                    _flush(target, name, stats)
                    return stats
                if limits.resource is None or event.resource == limits.resource:
                    _fold(target, name, event, stats)
                stats.position = n.id
            _flush(target, name, stats)
            bar.update(task, advance=len(notifications), rate=bar.tasks[0].speed or 0.0)
    return stats


def apply_events(target: ApplyTarget, name: str, events: Sequence[tuple[int, RecordEvent]], after: int,
                 reached: int) -> Stats:
    """Fold ``(notification id, event)`` pairs that follow position ``after`` into ``target`` and record
    ``reached`` (at or beyond the last id) under the checkpoint ``name``: the replay path for logs that
    arrive in batches (a consumer's replica)."""
    stats = Stats(position=after, resumed_from=after)
    for notification_id, event in events:
        _fold(target, name, event, stats)
        stats.position = notification_id
    stats.position = max(stats.position, reached)
    _flush(target, name, stats)
    return stats


def _fold(target: ApplyTarget, name: str, event: RecordEvent, stats: Stats) -> None:
    stats.events += 1
    if event.commit_time is not None:
        stats.last_commit_time = event.commit_time
    if isinstance(event, SchemaChanged):
        _flush(target, name, stats)  # rows before the schema change go in first
        target.apply_schema(TableSchema.from_dict(event.table))
        stats.schema_changes += 1
    else:
        stats.pending.add(event)


def _flush(target: ApplyTarget, name: str, stats: Stats) -> None:
    """Apply the pending net changes with the position reached, in one transaction."""
    ops = stats.pending.ops()
    target.apply(ops, checkpoint=(name, stats.position))
    stats.rows_applied += len(ops)
    stats.pending = NetChanges()
