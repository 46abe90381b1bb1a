"""``exchange node resnapshot``: read captured tables again and repair what the node holds.

The command only asks the source (``CaptureSource.request_resnapshot``);
the running node's capture does the reading, concurrently with the stream,
and stores only the rows that differ from what it holds, then deletes the
records the pass no longer found.  When no node runs, the request waits in
the source until one does.  With ``--all`` the command also repairs a lost
position (a dropped or invalidated PostgreSQL slot).  While it waits it
shows each table's pass as the source's bookkeeping has it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

import adapters
from adapters.selection import is_pattern, matches
from exchange.common.config import Config
from exchange.contracts.errors import InvalidInput

POLL = 1.0  # seconds between looks at the passes' progress


def chosen_tables(captured: Sequence[str], requested: Sequence[str]) -> list[str]:
    """The captured tables that ``requested`` (names or patterns) names; InvalidInput for one naming none."""
    chosen: list[str] = []
    for entry in requested:
        found = [t for t in captured if matches(t, entry)] if is_pattern(entry) else [t for t in captured if
                                                                                         t == entry]
        if not found:
            raise InvalidInput(f"{entry!r} names no captured table; the captured tables are: "
                               f"{', '.join(captured) or 'none'}")
        chosen += [t for t in found if t not in chosen]
    return chosen


def resnapshot(cfg: Config, tables: Sequence[str], everything: bool, wait: bool = True,
               show: bool | None = None) -> dict[str, Any]:
    """Request a pass of ``tables`` (every captured table with ``everything``) and, with
    ``wait``, follow the passes until they are done; a report of what was asked and read."""
    if bool(tables) == everything:
        raise InvalidInput("name the tables to read again, or give --all (not both)")
    source = adapters.open_source(cfg.source.url, cfg.source.tables, cfg.source.keys, **adapters.source_options(cfg))
    try:
        captured = sorted(source.schemas())
        chosen = captured if everything else chosen_tables(captured, tables)
        progress = getattr(source, "resnapshot_progress", None)  # sources whose passes can be followed
        before = progress(chosen) if progress else {}
        source.request_resnapshot(chosen)
        report: dict[str, Any] = {"requested": chosen}
        if wait and progress:
            report["rows_read"] = _follow(progress, chosen, before, sys.stderr.isatty() if show is None else show)
        return report
    finally:
        source.close()


def _follow(progress, tables: list[str], before: dict, show: bool) -> dict[str, int]:
    """Show the passes of ``tables`` started after ``before`` until all are done; the rows each read."""
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[state]}"))
    with Progress(*columns, console=Console(stderr=True), disable=not show) as bar:
        tasks = {t: bar.add_task(t, total=None, state="waiting for the node to read the request") for t in tables}
        while True:
            passes = progress(tables)
            started = {t: p for t, p in passes.items() if p.number > before[t].number}
            for table, task in tasks.items():
                p = started.get(table)
                if p is not None:
                    bar.update(task, completed=p.rows, total=p.rows if p.done else max(p.estimate, p.rows),
                               state="done" if p.done else "reading")
            if len(started) == len(tables) and all(p.done for p in started.values()):
                return {t: p.rows for t, p in started.items()}
            time.sleep(POLL)
