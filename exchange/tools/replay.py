"""Replay: rebuild an agency's tables from its event log (node or hub store).

Events are read in notification order (from a node or hub store, or from a
folder of offline bundles), reduced to their net effect on each row and
applied to a fresh target database in batches, one transaction per batch;
each batch also records how far the replay got (a checkpoint in the target),
so an interrupted replay resumes where it stopped.  Replay can stop at a
point in time (``until``: before the first change committed after it) or at
a source position (``until_position``), and can rebuild one resource only.

exchange/tools/replay_parts.py shares a replay among several processes.
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
from exchange.contracts.envelope import header
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

    def beyond(self, state: bytes) -> bool:
        """Whether the event of ``state`` (plaintext) may lie beyond the replay's end, as its envelope
        tells without decoding its row (decoding it then tells for sure)."""
        if self.until is None and self.until_position is None:
            return False
        _, commit_time, position = header(state)
        if self.until is not None and commit_time is not None and commit_time > self.until.timestamp():
            return True
        return self.until_position is not None and position is not None and position > self.until_position


def replay(store_url: str, agency: str, target_url: str, *, cipher: Any = None, **options: Any) -> dict[str, Any]:
    """Rebuild ``agency``'s tables from the store at ``store_url`` into ``target_url`` (``cipher``: the
    store's exchange.store.at_rest.StateCipher); ``options`` as for ``replay_log``."""
    store = open_agency_store(store_url, agency, cipher)
    try:
        return replay_log(store.recorder(agency), agency, target_url, **options)
    finally:
        store.close()


def open_agency_store(store_url: str, agency: str, cipher: Any = None) -> EventStore:
    """The store at ``store_url``, to read ``agency``'s log from (StoreError when it holds none)."""
    store = EventStore(store_url, create=False, cipher=cipher)
    if agency not in store.agencies():
        held = ", ".join(store.agencies()) or "none"
        store.close()
        raise StoreError(f"store {store_url!r} holds no events of agency {agency!r}; it holds: {held}")
    return store


def replay_log(log: AgencyRecorder, agency: str, target_url: str, *, until: datetime | None = None,
               until_position: int | None = None, resource: str | None = None,
               progress: bool | None = None) -> dict[str, Any]:
    """Rebuild ``agency``'s tables from ``log`` (a store's recorder or a
    BundleLog) into ``target_url``, resuming an earlier interrupted run."""
    limits = Limits(until, until_position, resource)
    target = adapters.open_target(target_url)
    try:
        name = f"replay:{agency}:{resource or '*'}"
        start = resume_position(target, target_url, name)
        return fold_log(log, target, name, start, limits, ProgressBar(progress, log.count_after(start))).to_dict()
    finally:
        target.close()


def resume_position(target: ApplyTarget, target_url: str, name: str) -> int:
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
                          "replay of this agency to resume; replay builds a fresh database (a replay interrupted "
                          "with --jobs resumes with the same --jobs)")
    return 0


class ProgressBar:
    """A progress bar on stderr (none when ``show`` is False; None: when stderr is a terminal)."""

    def __init__(self, show: bool | None, total: int):
        columns = (TextColumn("replay"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                   TextColumn("{task.fields[rate]:>8.0f} events/s"), TimeRemainingColumn())
        self.progress = Progress(*columns, disable=not (sys.stderr.isatty() if show is None else show),
                                 transient=True)
        self.task = self.progress.add_task("replay", total=total, rate=0.0)

    def __enter__(self) -> ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def advance(self, events: int) -> None:
        self.progress.update(self.task, advance=events, rate=self.progress.tasks[0].speed or 0.0)

    def update(self, events: int) -> None:
        self.progress.update(self.task, completed=events, rate=self.progress.tasks[0].speed or 0.0)


def fold_log(recorder: AgencyRecorder, target: ApplyTarget, name: str, start: int, limits: Limits,
            bar: Any, part: Any = None) -> Stats:
    """Fold the log after ``start`` into ``target`` under the checkpoint ``name`` (``bar``: a ``ProgressBar``
    or what stands for it); ``part``: this process's share of a replay in parts (exchange/tools/replay_parts.py ``Part``)."""
    mapper = make_mapper()
    stats = Stats(position=start, resumed_from=start)
    after = start if part is None else part.read_from
    with bar:
        while notifications := recorder.read_stored(after, READ_BATCH):
            for n in notifications:
                after = n.id
                record = n.topic in RECORD_TOPICS
                if part is not None and record and not part.takes(n):  # another part's row, or one applied before
                    if limits.beyond(n.state) and limits.passed(decode_record(n.topic, n.state)):
                        flush(target, name, stats)
                        return stats
                    stats.position = max(stats.position, n.id)
                    continue
                event = decode_record(n.topic, n.state) if record else mapper.to_domain_event(n)
                if limits.passed(event):
                    flush(target, name, stats)
                    return stats
                if limits.resource is None or event.resource == limits.resource:
                    if part is not None and not record:  # a schema change: every part at it together
                        part.together(lambda: fold(target, name, event, stats), lambda: flush(target, name, stats))
                    else:
                        fold(target, name, event, stats)
                stats.position = max(stats.position, n.id)
            if len(stats.pending) >= FLUSH_ROWS:
                flush(target, name, stats)
            bar.advance(len(notifications))
        flush(target, name, stats)
    return stats
