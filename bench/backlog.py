"""Node memory and delivery rate against the size of its backlog.

For each backlog size: the node captures N changes while the hub is down
(so they pile up in its store), then the hub starts and the node delivers
the whole backlog.  Reports the delivery rate and the node's peak resident
memory (VmHWM), side by side with the plain write rate of the same workload
on an uncaptured copy of the database (the baseline), and the ratios.

    .venv/bin/python bench/backlog.py [N ...]      (default: 20000 200000)
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exchange.demos.pipeline import start, stop, write_configs  # noqa: E402
from exchange.demos.sample import SampleAgency  # noqa: E402
from exchange.transport.rpc.health import http_answers, wait_serving  # noqa: E402
from node import config as node_config  # noqa: E402
from node.status import node_status  # noqa: E402


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wait_until(predicate, timeout: float = 1800) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.2)


def baseline_rate(directory: Path, changes: int) -> float:
    """Changes/s of the workload on a database nobody captures."""
    agency = SampleAgency(str(directory / "plain.db"))
    agency.create()
    started = time.perf_counter()
    agency.run(changes)
    return changes / (time.perf_counter() - started)


def one_run(directory: Path, changes: int) -> dict:
    agency = SampleAgency(str(directory / "agency.db"))
    initial = agency.create()
    hub_toml, node_toml, hub_address = write_configs(directory)
    # Retry the hub often, so the delivery time measures shipping, not backoff.
    node_toml.write_text(node_toml.read_text().replace("[hub]\n", "[hub]\nreconnect_max = 0.2\n"))
    cfg = node_config.load(node_toml, environ={})
    node = start("node", node_toml, directory / "node.log")
    try:
        metrics_url = f"http://127.0.0.1:{cfg.metrics.port}/metrics"
        wait_until(lambda: http_answers(metrics_url), timeout=30)  # triggers installed: every change is captured
        started = time.perf_counter()
        agency.run(changes)
        write_seconds = time.perf_counter() - started
        wait_until(lambda: node_status(cfg, hub_timeout=0.2)["source_pending"] == 0)
        capture_seconds = time.perf_counter() - started
        backlog = node_status(cfg, hub_timeout=0.2)["backlog_events"]
        rss_captured = peak_rss_mib(node.pid)
        hub = start("hub", hub_toml, directory / "hub.log")
        try:
            wait_serving(hub_address)
            shipping = time.perf_counter()
            wait_until(lambda: node_status(cfg)["caught_up"])
            ship_seconds = time.perf_counter() - shipping
            rss_peak = peak_rss_mib(node.pid)
        finally:
            stop(hub)
    finally:
        stop(node)
    return {
        "changes": changes,
        "backlog_events": backlog,
        "captured_per_s": (initial + changes) / capture_seconds,
        "source_writes_per_s": changes / write_seconds,
        "delivered_per_s": backlog / ship_seconds,
        "node_peak_rss_mib_after_capture": rss_captured,
        "node_peak_rss_mib": rss_peak,
    }


def main(sizes: list[int]) -> None:
    rows = []
    for changes in sizes:
        with tempfile.TemporaryDirectory(prefix="bench-backlog-") as tmp:
            base = baseline_rate(Path(tmp), changes)
            run = one_run(Path(tmp), changes)
            run["baseline_writes_per_s"] = base
            rows.append(run)
    print(f"{'backlog':>9} {'baseline w/s':>13} {'captured w/s':>13} {'capture/base':>12} "
          f"{'delivered/s':>12} {'node RSS MiB':>13}")
    for r in rows:
        print(f"{r['backlog_events']:>9} {r['baseline_writes_per_s']:>13.0f} {r['source_writes_per_s']:>13.0f} "
              f"{r['source_writes_per_s'] / r['baseline_writes_per_s']:>12.2f} {r['delivered_per_s']:>12.0f} "
              f"{r['node_peak_rss_mib']:>13.1f}")
    if len(rows) > 1:
        print(f"peak RSS ratio largest/smallest backlog: {rows[-1]['node_peak_rss_mib'] / rows[0]['node_peak_rss_mib']:.2f} "
              f"for a {rows[-1]['backlog_events'] / rows[0]['backlog_events']:.0f}x larger backlog; "
              f"median delivery {statistics.median(r['delivered_per_s'] for r in rows):.0f} events/s")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20000, 200000])
