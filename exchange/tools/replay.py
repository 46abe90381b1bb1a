"""Replay: rebuild an agency's tables from its event log (node or hub store).

Events are read in notification order (from a node or hub store, or from a
folder of offline bundles), reduced to their net effect on each row and
applied to a fresh target database in batches, one transaction per batch;
each batch also records how far the replay got (a checkpoint in the target),
so an interrupted replay resumes where it stopped.  Replay can stop at a
point in time (``until``: before the first change committed after it) or at
a source position (``until_position``), and can rebuild one resource only.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn

import adapters
from adapters.apply import Stats, flush, fold
from exchange.contracts.changes import ApplyTarget
from exchange.contracts.errors import ExchangeError
from exchange.contracts.events import RecordEvent, make_mapper
from exchange.contracts.stored_records import RECORD_TOPICS, Record, decode_record
from exchange.store import AgencyRecorder, EventStore, StoreError

READ_BATCH = 5000
FLUSH_ROWS = 20000  # net row changes held before they are applied in one transaction with the checkpoint


class ReplayError(ExchangeError):
    """Replay cannot proceed; the message says why."""


@dataclass
class Limits:
    """Where a replay stops and what it keeps."""

    until: datetime | None = None  # last source commit time to include
    until_position: int | None = None  # last source position to include
    resource: str | None = None  # only this table

    def passed(self, event: RecordEvent | Record) -> bool:
        """True once ``event`` lies beyond the replay's end."""
        if self.until is not None and event.commit_time is not None and event.commit_time > self.until:
            return True
        return self.until_position is not None and event.position > self.until_position


def replay(store_url: str, agency: str, target_url: str, *, cipher: Any = None, **options: Any) -> dict[str, Any]:
    """Rebuild ``agency``'s tables from the store at ``store_url`` into
    ``target_url`` (``cipher``: the store's exchange.store.at_rest.StateCipher); ``options`` as for ``replay_log``."""
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
        while notifications := recorder.read_stored(stats.position, READ_BATCH):
            for n in notifications:
                event = decode_record(n.topic, n.state) if n.topic in RECORD_TOPICS else mapper.to_domain_event(n)
                if limits.passed(event):
                    flush(target, name, stats)
                    return stats
                if limits.resource is None or event.resource == limits.resource:
                    fold(target, name, event, stats)
                stats.position = n.id
            if len(stats.pending) >= FLUSH_ROWS:
                flush(target, name, stats)
            bar.update(task, advance=len(notifications), rate=bar.tasks[0].speed or 0.0)
        flush(target, name, stats)
    return stats


