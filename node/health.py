"""Whether capture runs, and why not: loud once, then quiet.

The capture loop tells ``CaptureHealth`` of each step's outcome.  The first
failure is logged with its traceback; while the same failure repeats it is
logged again only at growing intervals (doubling up to ``LOG_INTERVAL_MAX``)
with how often it happened, never once per retry.  The state is exported
as ``exchange_node_capture_up``, ``exchange_node_capture_down_since_timestamp_seconds``
and ``exchange_node_capture_stopped_info{reason}``, which ``exchange node
status`` reads from the running node.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from node.metrics import NodeMetrics

log = logging.getLogger(__name__)

LOG_INTERVAL_MAX = 300.0  # seconds between reports of one lasting failure, at most
REASON_CHARS = 300  # a reason longer than this is cut (it is a metric label)


def reason_of(error: BaseException) -> str:
    """The one-line reason an error gives: its kind and the first line of its message (later lines,
    such as a database's DETAIL naming the failing row, change from one attempt to the next)."""
    lines = str(error).strip().splitlines()
    text = " ".join(lines[0].split()) if lines else "no message"
    reason = f"{type(error).__name__}: {text}"
    return reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 1] + "…"


class CaptureHealth:
    """The capture loop's state: running, or stopped since when and why."""

    def __init__(self, metrics: NodeMetrics, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic):
        self.metrics = metrics
        self.clock = clock
        self.monotonic = monotonic
        self.reason: str | None = None
        self.since: float | None = None
        self.failures = 0
        self._next_log = 0.0
        self._interval = 0.0
        metrics.capture_up.set(1)
        metrics.capture_down_since.set(0)

    def ok(self) -> None:
        """A step succeeded: capture runs (again)."""
        if self.reason is None:
            return
        log.warning("capture runs again after %.0f seconds stopped (%d failed attempts): %s",
                    self.clock() - (self.since or self.clock()), self.failures, self.reason)
        self.metrics.capture_stopped.remove(self.reason)
        self.reason = self.since = None
        self.failures = 0
        self.metrics.capture_up.set(1)
        self.metrics.capture_down_since.set(0)

    def failed(self, error: BaseException) -> None:
        """A step failed with ``error``: log it (once, then at growing intervals) and export the state."""
        reason = reason_of(error)
        now = self.monotonic()
        if reason != self.reason:
            first = self.reason is None
            if self.reason is not None:
                self.metrics.capture_stopped.remove(self.reason)
            else:
                self.since = self.clock()
            self.reason = reason
            self.failures = 0
            self._interval = 1.0
            self._next_log = now + self._interval
            self.metrics.capture_up.set(0)
            self.metrics.capture_down_since.set(self.since or self.clock())
            self.metrics.capture_stopped.labels(reason).set(1)
            log.error("capture stopped%s: %s; retrying", "" if first else " for another reason", reason,
                      exc_info=error, extra={"reason": reason})
        elif now >= self._next_log:
            self._interval = min(self._interval * 2, LOG_INTERVAL_MAX)
            self._next_log = now + self._interval
            log.error("capture still stopped after %.0f seconds and %d attempts: %s",
                      self.clock() - (self.since or self.clock()), self.failures + 1, reason, extra={"reason": reason})
        self.failures += 1
