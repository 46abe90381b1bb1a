"""The Art. 22 evaluation on a schedule: files for the record, gauges for Prometheus.

``[evaluation] interval`` (seconds) and/or ``at`` (a daily time, HH:MM in
Shanghai time) say when; each run writes ``evaluation-<UTC time>.json``,
``.csv`` (one row per agency) and ``.txt`` (a short summary for people)
into ``[evaluation] directory``, each atomically, and keeps the figures for
the ``exchange_hub_evaluation_*`` gauges.  The figures are the catalog
reports' (hub/catalog/reports.py) plus what the sharing side reports
through the callables it is given (late answers, overdue requests,
deliveries and their receipts).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
import threading
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from exchange.contracts.errors import InvalidInput
from exchange.transport.offline.bundles import write_atomically
from hub.catalog import reports
from hub.catalog.catalog import Catalog
from hub.workdays import SHANGHAI

log = logging.getLogger(__name__)

AT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
COLUMNS = ("agency", "entries", "published", "resources_captured", "resources_published", "completeness",
           "overdue_entries", "late_answers", "overdue_requests", "sync_lag_seconds", "deliveries",
           "deliveries_receipted", "uncatalogued_resources")
GAUGES = {
    "completeness": ("exchange_hub_evaluation_completeness_ratio",
                     "Share of the agency's captured tables with a published catalog entry, at the last evaluation"),
    "overdue_entries": ("exchange_hub_evaluation_overdue_entries",
                        "Catalog entries past their update or yearly review deadline, at the last evaluation"),
    "late_answers": ("exchange_hub_evaluation_late_answers",
                     "Share requests answered late or unanswered past the deadline, at the last evaluation"),
    "overdue_requests": ("exchange_hub_evaluation_overdue_requests",
                         "Share requests unanswered past the deadline, at the last evaluation"),
    "sync_lag_seconds": ("exchange_hub_evaluation_sync_lag_seconds",
                         "Seconds since the source commit of the agency's newest event, at the last evaluation"),
    "deliveries": ("exchange_hub_evaluation_deliveries", "Deliveries of the agency's resources recorded"),
    "deliveries_receipted": ("exchange_hub_evaluation_deliveries_receipted",
                             "Deliveries of the agency's resources acknowledged with a signed receipt"),
}
LAST_RUN = "exchange_hub_evaluation_last_run_timestamp_seconds"


def check_settings(interval: float, at: str, directory: str) -> bool:
    """Whether a schedule is configured; InvalidInput naming the setting when it cannot work."""
    if at and not AT.match(at):
        raise InvalidInput(f"[evaluation] at = {at!r}: a daily time HH:MM (Shanghai time), e.g. 06:30")
    if interval < 0:
        raise InvalidInput(f"[evaluation] interval = {interval}: seconds, at least 0 (0: no interval)")
    scheduled = bool(interval or at)
    if scheduled and not directory:
        raise InvalidInput("[evaluation] directory is required when interval or at is set")
    return scheduled


def next_run(now: datetime, interval: float, at: str, last: datetime | None) -> datetime:
    """When the next evaluation is due: ``interval`` after the last run (now when none), or the next ``at``."""
    candidates = []
    if interval:
        candidates.append(now if last is None else last + timedelta(seconds=interval))
    if at:
        hours, minutes = map(int, at.split(":"))
        local = now.astimezone(SHANGHAI)
        today = datetime.combine(local.date(), time(hours, minutes), SHANGHAI)
        candidates.append(today if today > local and (last is None or last < today) else today + timedelta(days=1))
    return min(candidates)


class Evaluation:
    """Produces the evaluation and keeps the latest for the gauges.

    ``sync`` gives an agency's newest source commit (Unix); ``late_answers``
    and ``overdue_requests()`` the share figures; ``deliveries()`` per
    provider ``{"deliveries": n, "receipted": m}``."""

    def __init__(self, catalog: Catalog, directory: str | Path, *, sync: Callable[[str], float | None] | None = None,
                 late_answers: Callable[[str], int] | None = None,
                 overdue_requests: Callable[[], dict[str, int]] | None = None,
                 deliveries: Callable[[], dict[str, dict[str, int]]] | None = None):
        self.catalog = catalog
        self.directory = Path(directory)
        self.sync, self.late_answers = sync, late_answers
        self.overdue_requests, self.deliveries = overdue_requests, deliveries
        self.latest: dict[str, Any] | None = None

    def produce(self, at: datetime | None = None) -> dict[str, Any]:
        """Evaluate as of ``at`` (default now), write the three files; the evaluation."""
        at = at or datetime.now(timezone.utc)
        rows = reports.evaluation(self.catalog, at, sync=self.sync, late_answers=self.late_answers)
        requests = self.overdue_requests() if self.overdue_requests else {}
        delivered = self.deliveries() if self.deliveries else {}
        known = {row["agency"] for row in rows}
        rows += [_empty_row(agency) for agency in sorted((set(requests) | set(delivered)) - known)]
        for row in rows:
            row["overdue_requests"] = requests.get(row["agency"], 0) if self.overdue_requests else None
            counts = delivered.get(row["agency"], {})
            row["deliveries"] = counts.get("deliveries", 0)
            row["deliveries_receipted"] = counts.get("receipted", 0)
        rows.sort(key=lambda r: r["agency"])
        result = {"at": at.isoformat(), "agencies": rows, "overdue_entries": reports.overdue(self.catalog, at),
                  "one_datum_one_source": reports.one_datum_one_source(self.catalog)}
        self._write(result, at)
        self.latest = result
        return result

    def _write(self, result: dict[str, Any], at: datetime) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stem = "evaluation-" + at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        table = io.StringIO()
        writer = csv.DictWriter(table, COLUMNS, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in result["agencies"]:
            writer.writerow({**row, "uncatalogued_resources": " ".join(row["uncatalogued_resources"])})
        write_atomically(self.directory / f"{stem}.csv", table.getvalue().encode())
        write_atomically(self.directory / f"{stem}.txt", summary(result).encode())
        # The JSON last: its presence says the run is complete.
        write_atomically(self.directory / f"{stem}.json",
                         json.dumps(result, ensure_ascii=False, indent=2).encode())


def _empty_row(agency: str) -> dict[str, Any]:
    return {"agency": agency, "entries": 0, "published": 0, "resources_captured": 0, "resources_published": 0,
            "uncatalogued_resources": [], "completeness": None, "overdue_entries": 0, "late_answers": None,
            "sync_lag_seconds": None}


def summary(result: dict[str, Any]) -> str:
    """A few lines for people: what needs attention."""
    rows = result["agencies"]
    lines = [f"Evaluation of data sharing (Art. 22) at {result['at']}: {len(rows)} agencies."]
    for row in rows:
        notes = []
        if row["completeness"] is not None and row["completeness"] < 1:
            notes.append(f"catalog {row['completeness']:.0%} complete")
        for key, what in (("overdue_entries", "entries overdue"), ("late_answers", "requests answered late"),
                          ("overdue_requests", "requests overdue")):
            if row.get(key):
                notes.append(f"{row[key]} {what}")
        if row["deliveries"] > row["deliveries_receipted"]:
            notes.append(f"{row['deliveries'] - row['deliveries_receipted']} of {row['deliveries']} deliveries "
                         "without a receipt")
        lines.append(f"  {row['agency']}: {'; '.join(notes) if notes else 'nothing to remark'}")
    conflicts = result["one_datum_one_source"]
    if conflicts:
        lines.append(f"  {len(conflicts)} data published by more than one agency (one datum, one source).")
    return "\n".join(lines) + "\n"


class EvaluationSchedule:
    """Runs ``evaluation.produce`` when due until stopped; a failed run is logged and retried at the next."""

    def __init__(self, evaluation: Evaluation, interval: float, at: str):
        self.evaluation, self.interval, self.at = evaluation, interval, at
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="evaluation", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)

    def _run(self) -> None:
        last: datetime | None = None
        while not self._stop.is_set():
            now = datetime.now(timezone.utc)
            due = next_run(now, self.interval, self.at, last)
            if due > now:
                self._stop.wait(min((due - now).total_seconds(), 60.0))
                continue
            last = now
            try:
                self.evaluation.produce(now)
                log.info("evaluation written to %s", self.evaluation.directory)
            except Exception:  # a full disk or a calendar year not known yet: logged, tried again when next due
                log.exception("the scheduled evaluation failed")


class EvaluationGauges(Collector):
    """The latest evaluation's figures as ``exchange_hub_evaluation_*`` gauges (none before the first run)."""

    def __init__(self, evaluation: Evaluation):
        self.evaluation = evaluation

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(name, text, labels=["agency"]) for name, text in GAUGES.values()] + [
            GaugeMetricFamily(LAST_RUN, "Time (Unix) of the last scheduled evaluation")]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        latest = self.evaluation.latest
        if latest is None:
            return
        for key, (name, text) in GAUGES.items():
            family = GaugeMetricFamily(name, text, labels=["agency"])
            for row in latest["agencies"]:
                if row.get(key) is not None:
                    family.add_metric([row["agency"]], float(row[key]))
            yield family
        run = GaugeMetricFamily(LAST_RUN, "Time (Unix) of the last scheduled evaluation")
        run.add_metric([], datetime.fromisoformat(latest["at"]).timestamp())
        yield run
