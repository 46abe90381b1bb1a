"""Replay in parts: one replay shared among several processes (``exchange replay --jobs N``).

Rows are independent of each other (targets only have primary keys), so
each part rebuilds the rows of the records whose ids fall to it (by a hash
of the id, which the log holds beside each event: nothing is decoded to
tell) and records its own checkpoint.  Every part reads the whole log, in
the same order.  A schema change is applied once, by the first part, while
every part waits with what it read before it applied (a barrier on each
side), so no part writes rows of a shape the table no longer has.

An interrupted replay resumes with the same number of parts: they read on
from where the earliest stopped, each skipping the rows it applied before;
between two schema changes the parts' checkpoints may differ, never across
one, so the schema changes read again are those the target already has.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import zlib
from datetime import datetime
from typing import Any, Callable

import adapters
from exchange.contracts.errors import ExchangeError
from exchange.store import EventStore, StoredNotification
from exchange.tools.replay import Limits, ProgressBar, ReplayError, fold_log, open_agency_store, resume_position

log = logging.getLogger(__name__)


class Part:
    """What one process of a replay in parts takes: part ``index`` of ``count``, applied up to ``start``."""

    def __init__(self, index: int, count: int, start: int, read_from: int, barrier: Any):
        self.index, self.count, self.start, self.read_from = index, count, start, read_from
        self.barrier = barrier

    def takes(self, n: StoredNotification) -> bool:
        """Whether this part applies the record event ``n`` (its record is this part's, not yet applied)."""
        return n.id > self.start and zlib.crc32(str(n.originator_id).encode()) % self.count == self.index

    def together(self, apply: Callable[[], None], flush: Callable[[], None]) -> None:
        """A schema change: every part applies what it read before it (``flush``), the first part
        then applies the change (``apply``), and all go on once it is done."""
        flush()
        self.barrier.wait()
        if self.index == 0:
            apply()
        self.barrier.wait()


class _OneWriter:
    """A SQLite target that the parts write one at a time, taking turns on ``lock``: waiting in
    SQLite's busy loop instead, which sleeps up to 100 ms between tries, costs more than the parts gain."""

    def __init__(self, target: Any, lock: Any):
        self.target, self.lock = target, lock

    def apply_runs(self, runs: Any, checkpoint: tuple[str, int] | None = None) -> None:
        with self.lock:
            self.target.apply_runs(runs, checkpoint)

    def apply_schema(self, schema: Any, renames: dict[str, str] | None = None) -> None:
        with self.lock:
            self.target.apply_schema(schema, renames)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.target, name)


class _Counted:
    """What stands for the progress bar in a part: the events it read so far, in a shared counter."""

    def __init__(self, done: Any):
        self.done = done

    def __enter__(self) -> _Counted:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def advance(self, events: int) -> None:
        self.done.value += events


def replay_in_parts(store_url: str, agency: str, target_url: str, *, jobs: int, cipher: Any = None,
                    until: datetime | None = None, until_position: int | None = None, resource: str | None = None,
                    progress: bool | None = None) -> dict[str, Any]:
    """``exchange.tools.replay.replay`` in ``jobs`` processes."""
    if jobs < 1:
        raise ReplayError(f"a replay takes at least one job, not {jobs}")
    store = open_agency_store(store_url, agency, cipher)
    names = part_names(agency, resource, jobs)
    try:
        starts = _part_positions(target_url, f"replay:{agency}:{resource or '*'}", names)
        read_from = min(starts)
        total = jobs * store.recorder(agency).count_after(read_from)
    finally:
        store.close()
    context = multiprocessing.get_context("fork")  # the parts inherit the cipher as it is
    barrier, results = context.Barrier(jobs), context.Queue()
    writing = context.Lock() if target_url.startswith("sqlite") else None
    done = [context.Value("q", 0) for _ in names]
    limits = Limits(until, until_position, resource)
    processes = [context.Process(target=_run_part, name=name, daemon=True, args=(
        store_url, agency, target_url, cipher, name, limits, Part(i, jobs, starts[i], read_from, barrier), writing,
        done[i], results)) for i, name in enumerate(names)]
    for process in processes:
        process.start()
    outcomes: dict[str, Any] = {}
    try:
        with ProgressBar(progress, total) as bar:
            while len(outcomes) < jobs:
                try:
                    name, outcome = results.get(timeout=0.5)
                except queue.Empty:
                    dead = next((p for p in processes if p.exitcode not in (None, 0) and p.name not in outcomes), None)
                    if dead is not None:
                        raise ReplayError(f"{dead.name} ended without a result (exit status {dead.exitcode})") from None
                else:
                    if isinstance(outcome, tuple):  # the others wait for it at the next schema change: stop them
                        error = ReplayError(f"{name}: {outcome[1]}")
                        error.exit_code = outcome[0]
                        raise error
                    outcomes[name] = outcome
                bar.update(sum(d.value for d in done))
    finally:
        for process in processes:
            if process.is_alive() and process.name not in outcomes:
                process.terminate()  # its open transaction is rolled back; its checkpoint says where it was
            process.join()
    return _merged([outcomes[name] for name in names])


def part_names(agency: str, resource: str | None, jobs: int) -> list[str]:
    """The checkpoint names of the parts of a replay in ``jobs`` parts."""
    return [f"replay:{agency}:{resource or '*'}:part {i + 1} of {jobs}" for i in range(jobs)]


def _part_positions(target_url: str, single: str, names: list[str]) -> list[int]:
    """Where each part of an earlier run of the same replay stopped (zeros for a fresh target), recorded
    again before the parts start, so that they never create the target's bookkeeping together;
    ``single``: the checkpoint of the same replay in one job, which the parts cannot take up."""
    target = adapters.open_target(target_url)
    try:
        positions = [target.checkpoint(name) for name in names]
        if all(p is None for p in positions):
            if target.checkpoint(single) is not None:
                raise ReplayError(f"target {target_url!r} holds the same replay made in one job: "
                                  "continue it without --jobs")
            resume_position(target, target_url, names[0])  # refuses a target that is not empty
        starts = [p or 0 for p in positions]
        for name, start in zip(names, starts):
            target.apply_runs([], checkpoint=(name, start))
        return starts
    finally:
        target.close()


def _run_part(store_url: str, agency: str, target_url: str, cipher: Any, name: str, limits: Limits, part: Part,
              writing: Any, done: Any, results: Any) -> None:
    """One part, in a process of its own: puts its stats, or (exit code, error), on ``results``;
    ``writing``: the lock the parts take turns on to write, None to write at once."""
    try:
        store = EventStore(store_url, create=False, cipher=cipher)
        target = adapters.open_target(target_url)
        try:
            applied = target if writing is None else _OneWriter(target, writing)
            stats = fold_log(store.recorder(agency), applied, name, part.start, limits, _Counted(done), part)
            results.put((name, stats.to_dict()))
        finally:
            target.close()
            store.close()
    except ExchangeError as e:
        results.put((name, (e.exit_code, str(e))))
    except Exception as e:
        log.exception("%s failed", name)
        results.put((name, (1, f"{type(e).__name__}: {e}")))


def _merged(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The stats of a replay in parts: sums, and the furthest position and commit time a part reached."""
    merged: dict[str, Any] = {key: sum(p[key] for p in parts) for key in ("events", "rows_applied", "schema_changes")}
    merged["position"] = max(p["position"] for p in parts)
    merged["resumed_from"] = min(p["resumed_from"] for p in parts)
    times = [p["last_commit_time"] for p in parts if p["last_commit_time"]]
    merged["last_commit_time"] = max(times, key=datetime.fromisoformat) if times else None
    merged["jobs"] = len(parts)
    return merged
