"""Replay: rebuild an agency's tables from its event log (node or hub store).

Events are read in notification order, folded into row operations and
applied to a fresh target database in batches, one transaction per batch.
With ``until``, replay stops before the first change committed after that
time, so the target is the source as it was then.
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

import adapters
from exchange import changes as ch
from exchange.changes import RowOp, TableSchema
from exchange.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged, make_mapper
from exchange.store import EventStore, StoreError

READ_BATCH = 2000


class ReplayError(Exception):
    """Replay cannot proceed; the message says why."""


def replay(store_url: str, agency: str, target_url: str, *, until: datetime | None = None,
           progress: bool | None = None) -> dict[str, Any]:
    """Rebuild ``agency``'s tables from ``store_url`` into ``target_url``."""
    store = EventStore(store_url, create=False)
    try:
        if agency not in store.agencies():
            raise StoreError(f"store {store_url!r} holds no events of agency {agency!r}; it holds: "
                             f"{', '.join(store.agencies()) or 'none'}")
        reader = adapters.open_reader(target_url)
        try:
            existing = reader.tables()
        finally:
            reader.close()
        if existing:
            raise ReplayError(f"target {target_url!r} is not empty (has tables {', '.join(existing)}); "
                              "replay builds a fresh database")
        target = adapters.open_target(target_url)
        try:
            return _replay(store.recorder(agency), target, until, progress)
        finally:
            target.close()
    finally:
        store.close()


def _replay(recorder, target, until: datetime | None, progress: bool | None) -> dict[str, Any]:
    mapper = make_mapper()
    total = recorder.count_after(0)
    show = sys.stderr.isatty() if progress is None else progress
    columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    stats = {"events": 0, "rows_applied": 0, "schema_changes": 0, "position": 0, "last_commit_time": None}
    with Progress(*columns, disable=not show, transient=True) as bar:
        task = bar.add_task("replay", total=total)
        position = 0
        while True:
            notifications = recorder.read(position, READ_BATCH)
            if not notifications:
                break
            ops: list[RowOp] = []
            for n in notifications:
                event = mapper.to_domain_event(n)
                if until is not None and event.commit_time is not None and event.commit_time > until:
                    target.apply(ops)
                    stats["rows_applied"] += len(ops)
                    return stats
                if isinstance(event, SchemaChanged):
                    target.apply(ops)
                    stats["rows_applied"] += len(ops)
                    ops = []
                    target.apply_schema(TableSchema.from_dict(event.table))
                    stats["schema_changes"] += 1
                else:
                    ops.append(_row_op(event))
                stats["events"] += 1
                stats["position"] = n.id
                if event.commit_time is not None:
                    stats["last_commit_time"] = event.commit_time.isoformat()
            target.apply(ops)
            stats["rows_applied"] += len(ops)
            position = notifications[-1].id
            bar.update(task, advance=len(notifications))
    return stats


def _row_op(event) -> RowOp:
    if isinstance(event, RecordCreated):
        return RowOp(event.resource, ch.INSERT, event.key, event.row)
    if isinstance(event, RecordUpdated):
        return RowOp(event.resource, ch.UPDATE, event.key, event.changed)
    if isinstance(event, RecordDeleted):
        return RowOp(event.resource, ch.DELETE, event.key)
    raise ReplayError(f"unknown event type {type(event).__name__}")
