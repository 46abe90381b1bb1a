"""Stall detection: steps that make no progress for too long are reported.

A process wraps each step that may wait on something outside it (reading
a source, storing a batch, ingesting a published batch) in
``Watchdog.step(kind, what)``.  A daemon thread looks at the steps in
progress; one running longer than ``stall_seconds`` is logged once with
what it waits on, counted, and logged again at growing intervals (doubling,
at most ``LOG_INTERVAL_MAX``) for as long as it lasts.  ``stalled()`` lists
the stalled steps for status reports.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from prometheus_client import Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

LOG_INTERVAL_MAX = 300.0  # seconds between reports of one long stall, at most


@dataclass
class _Step:
    kind: str
    what: str
    started: float
    reported: int = 0  # how many times this step was reported stalled
    next_report: float = 0.0


class Watchdog:
    """Watches steps in progress; ``counter`` (labelled by ``step``) counts stalls."""

    def __init__(self, stall_seconds: float, counter: Counter, clock: Callable[[], float] = time.monotonic):
        self.stall_seconds = stall_seconds
        self.counter = counter
        self.clock = clock
        self._steps: dict[int, _Step] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @contextmanager
    def step(self, kind: str, what: str) -> Iterator[None]:
        """Watch the block as a step of ``kind`` (a metric label) waiting on ``what`` (for people)."""
        key = next(self._ids)
        with self._lock:
            self._steps[key] = _Step(kind, what, self.clock())
        try:
            yield
        finally:
            with self._lock:
                done = self._steps.pop(key)
            if done.reported:
                log.warning("%s step went on after %.0f seconds: %s", done.kind, self.clock() - done.started,
                            done.what, extra={"step": done.kind, "seconds": round(self.clock() - done.started, 1)})

    def check(self) -> None:
        """Report the steps stalled now (the watching thread calls it every second)."""
        now = self.clock()
        with self._lock:
            due = [s for s in self._steps.values()
                   if now - s.started >= self.stall_seconds and now >= s.next_report]
            for s in due:
                if not s.reported:
                    self.counter.labels(s.kind).inc()
                s.reported += 1
                s.next_report = now + min(self.stall_seconds * 2 ** s.reported, LOG_INTERVAL_MAX)
        for s in due:
            log.warning("%s step has made no progress for %.0f seconds: waiting on %s", s.kind, now - s.started,
                        s.what, extra={"step": s.kind, "seconds": round(now - s.started, 1), "waiting_on": s.what})

    def stalled(self, longer_than: float | None = None) -> list[dict[str, object]]:
        """The steps running longer than ``longer_than`` seconds (default ``stall_seconds``):
        kind, what they wait on, seconds."""
        limit = self.stall_seconds if longer_than is None else longer_than
        now = self.clock()
        with self._lock:
            return [{"step": s.kind, "waiting_on": s.what, "seconds": round(now - s.started, 1)}
                    for s in self._steps.values() if now - s.started >= limit]

    def start(self) -> "Watchdog":
        """Check once a second in a daemon thread until ``stop()``."""
        def watch() -> None:
            while not self._stop.wait(1.0):
                self.check()
        self._thread = threading.Thread(target=watch, name="watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()


class StalledSteps(Collector):
    """Exports the stalled steps as gauge ``name`` {step, waiting_on}: seconds without progress."""

    def __init__(self, watchdog: Watchdog, name: str):
        self.watchdog = watchdog
        self.name = name

    def describe(self) -> list[GaugeMetricFamily]:
        return [self._family()]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for s in self.watchdog.stalled():
            family.add_metric([str(s["step"]), str(s["waiting_on"])], float(s["seconds"]))  # type: ignore[arg-type]
        yield family

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(self.name, "Seconds a step has made no progress, while it is stalled",
                                 labels=["step", "waiting_on"])
