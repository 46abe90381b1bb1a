"""Per-agency sync status for the status page, /status.json and ``exchange hub status``.

``StatusBoard`` keeps what only the running hub knows: open publish streams
and the backlog each node reported with its latest batch.  ``report`` joins
it with what the store holds (agencies, positions, newest event), so the
figures that matter survive a restart.  ``hub_status`` is the command's way
in: ask the running hub, or read its store when the hub does not answer.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable

from exchange.common.config import Config
from exchange.common.urls import redact_url
from exchange.store import open_store
from exchange.store.at_rest import store_cipher
from hub.ingest import Ingest

DASH = "—"


@dataclass(frozen=True)
class AgencyStatus:
    """What the running hub knows of one agency beyond its store."""

    publishers: int = 0
    node_head: int | None = None  # the node's latest notification id when it sent its latest batch
    clock_ahead_seconds: float | None = None  # source commit time beyond the hub's clock, in the latest batch


class StatusBoard:
    """Per-agency live status, updated by the gRPC API from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._agencies: dict[str, AgencyStatus] = {}

    def connected(self, agency: str, context) -> None:
        """Count an open publish stream for ``agency`` until ``context`` ends."""
        self._change(agency, +1)
        if not context.add_callback(lambda: self._change(agency, -1)):
            self._change(agency, -1)

    def set_head(self, agency: str, head: int) -> None:
        """Record the node's latest notification id, sent with its latest batch (``EventBatch.head``)."""
        with self._lock:
            current = self._agencies.get(agency, AgencyStatus())
            self._agencies[agency] = replace(current, node_head=head)

    def set_clock_ahead(self, agency: str, commit: float, received: float) -> None:
        """Record how far the source commit time ``commit`` of the newest event of a batch received
        at ``received`` (hub clock) lies in the future: the source's clock is at least that far ahead."""
        with self._lock:
            current = self._agencies.get(agency, AgencyStatus())
            self._agencies[agency] = replace(current, clock_ahead_seconds=round(max(0.0, commit - received), 3))

    def snapshot(self) -> dict[str, AgencyStatus]:
        with self._lock:
            return dict(self._agencies)

    def _change(self, agency: str, delta: int) -> None:
        with self._lock:
            current = self._agencies.get(agency, AgencyStatus())
            self._agencies[agency] = replace(current, publishers=current.publishers + delta)


def report(ingest: Ingest, board: StatusBoard | None, catalog_overdue: dict[str, int] | None = None,
           share_overdue: dict[str, int] | None = None,
           upstream: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The hub's status as a JSON-ready dict; ``board`` is None when the hub
    is not running (the figures then come from the store alone);
    ``catalog_overdue`` counts overdue catalog entries per agency, ``share_overdue`` overdue share requests;
    ``upstream`` is a district hub's forwarding to the city hub (hub.upstream.Upstream.progress)."""
    now = time.time()
    live = board.snapshot() if board else {}
    upstream = upstream or {}
    rows = []
    for agency in sorted(set(ingest.store.agencies()) | set(live)):
        known = live.get(agency, AgencyStatus())
        position = ingest.position(agency)
        backlog = node_backlog(known, position)
        commit = ingest.newest_commit(agency)
        lag = lag_seconds(backlog, commit, known.clock_ahead_seconds, now)
        rows.append({
            "agency": agency,
            "connected": known.publishers > 0,
            "last_event_time": _iso(commit) if commit is not None else None,
            "lag_seconds": round(lag, 3) if lag is not None else None,
            "source_clock_ahead_seconds": known.clock_ahead_seconds,
            "node_backlog_events": backlog,
            "latest_event_id": ingest.hub_position(agency),
            "hub_position": position,
            # Planned features; None until they exist.
            "offline_fallback": None,
            "catalog_entries_overdue": catalog_overdue.get(agency, 0) if catalog_overdue is not None else None,
            "share_requests_overdue": share_overdue.get(agency, 0) if share_overdue is not None else None,
            "upstream_connected": upstream[agency]["connected"] if agency in upstream else None,
            "upstream_backlog_events": upstream[agency]["backlog_events"] if agency in upstream else None,
        })
    stalled = ingest.watchdog.stalled() if board is not None and ingest.watchdog is not None else []
    return {"hub_running": board is not None, "store": redact_url(ingest.store.url), "generated_at": _iso(now),
            "stalled_steps": stalled, "agencies": rows}


def node_backlog(known: AgencyStatus, position: int) -> int | None:
    """Events the node held beyond the hub's ``position`` when it sent its latest batch, less those
    that reached the hub since (by a later batch or a bundle); None until a batch arrives after a hub start."""
    return None if known.node_head is None else max(0, known.node_head - position)


def lag_seconds(backlog: int | None, newest_commit: float | None, clock_ahead: float | None,
                now: float) -> float | None:
    """Age of the oldest event the node holds and the hub does not, as far as the hub knows (None: unknown).

    The hub learns the node's backlog from the head of each batch, not the
    times of the events still at the node: 0 when nothing is left there;
    else ``now`` minus the source commit time of the newest event the hub
    holds (the events still at the node were committed no earlier, so this
    bounds their age from above), plus how far the source clock was seen
    ahead of the hub's (``clock_ahead``), and never below 0."""
    if backlog is None:
        return None
    if backlog == 0:
        return 0.0
    if newest_commit is None:
        return None
    return max(0.0, now - newest_commit + (clock_ahead or 0.0))


def status_url(cfg: Config) -> str | None:
    """Where a hub with settings ``cfg`` serves /status.json (None when its port is 0)."""
    if not cfg.metrics.port:
        return None
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(cfg.metrics.address, cfg.metrics.address)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{cfg.metrics.port}/status.json"


def hub_status(cfg: Config, timeout: float = 2.0) -> dict[str, Any]:
    """Ask the running hub for its status; when it does not answer, read its store."""
    url = status_url(cfg)
    if url:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.load(response)
        except (OSError, ValueError):
            pass
    store = open_store(cfg.store.url, create=False, cipher=store_cipher(cfg))
    try:
        result = report(Ingest(store), None)
    finally:
        store.close()
    where = f"no answer at {url}" if url else "its status endpoint is off ([metrics] port = 0)"
    result["note"] = f"the hub is not running ({where}); figures read from its store"
    return result


def format_duration(seconds: float | None) -> str:
    """``seconds`` as a short readable duration ("42 s", "5 min", "3 h 20 min", "2 d 4 h")."""
    if seconds is None:
        return DASH
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 86400} d {seconds % 86400 // 3600} h"


def _text(value: Any) -> str:
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def _ahead(seconds: float | None) -> str:
    """A source clock seen ahead of the hub's (by a second or more), else a dash."""
    return format_duration(seconds) if seconds is not None and seconds >= 1 else DASH


def _time(iso: str | None) -> str:
    return iso.replace("T", " ").replace("+00:00", "Z") if iso else DASH


# (header, how to show a row's value): shared by the text table and the page.
COLUMNS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("agency", lambda r: r["agency"]),
    ("connected", lambda r: _text(r["connected"])),
    ("lag", lambda r: format_duration(r["lag_seconds"])),
    ("source clock ahead", lambda r: _ahead(r.get("source_clock_ahead_seconds"))),
    ("last event", lambda r: _time(r["last_event_time"])),
    ("node backlog", lambda r: _text(r["node_backlog_events"])),
    ("hub position", lambda r: _text(r["hub_position"])),
    ("latest event id", lambda r: _text(r["latest_event_id"])),
    ("offline fallback", lambda r: _text(r["offline_fallback"])),
    ("overdue entries", lambda r: _text(r["catalog_entries_overdue"])),
    ("overdue requests", lambda r: _text(r["share_requests_overdue"])),
    ("upstream backlog", lambda r: _text(r.get("upstream_backlog_events"))),
]


def summary(result: dict[str, Any]) -> str:
    """One line about the hub: running or not, agencies connected, store."""
    rows = result["agencies"]
    state = "hub running" if result["hub_running"] else result.get("note", "the hub is not running")
    connected = sum(1 for r in rows if r["connected"])
    agencies = f"{len(rows)} agenc{'y' if len(rows) == 1 else 'ies'}"
    return f"{state}; {agencies}, {connected} connected; store {result['store']}; at {_time(result['generated_at'])}"


def render(result: dict[str, Any]) -> str:
    """A readable table of a status report."""
    table = [[header for header, _ in COLUMNS]] + [[show(r) for _, show in COLUMNS] for r in result["agencies"]]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    if not result["agencies"]:
        lines.append("(no agency has published yet)")
    stalled = [f"stalled: {s['step']} for {format_duration(s['seconds'])}, waiting on {s['waiting_on']}"
               for s in result.get("stalled_steps", [])]
    return "\n".join([summary(result), *stalled, ""] + lines)


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")

