"""Run the fast-path benchmarks in one go and print one table of figures beside their baselines.

Each benchmark below runs as its own process with ``--json`` (bench/figures.py);
the figures are gathered into one table, each beside the baseline measured in
the same run, with the ratio and the target, and written with a description
of the machine to ``docs/performance.md`` (``--out``).  ``make bench`` runs it.

    .venv/bin/python bench/report.py [--quick] [--out docs/performance.md]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.postgres import start_cluster  # noqa: E402

Figures = dict[str, dict[str, float]]


@dataclass
class Bench:
    """One benchmark script and its arguments (``{postgres}`` is replaced by a scratch server's URL)."""

    name: str
    script: str
    args: list[str]
    quick_args: list[str]


BENCHES = [
    Bench("postgres_e2e", "postgres_e2e.py", ["--scale", "2", "--seconds", "20"], ["--scale", "1", "--seconds", "10"]),
    Bench("capture_rate", "capture_rate.py", [], ["--rows", "20000", "--changes", "5000"]),
    Bench("replay_rate", "replay_rate.py", ["--postgres", "{postgres}"],
          ["--postgres", "{postgres}", "--rows", "20000", "--changes", "20000"]),
    Bench("hub_ingest", "hub_ingest.py", ["--batches", "5000"], ["--events", "20000", "--batches", "5000",
                                                                 "--repeats", "1"]),
    Bench("snapshot_rate", "snapshot_rate.py", [], ["--scale", "1", "--repeats", "1"]),
]


@dataclass
class Row:
    """A line of the table: a figure, its baseline, and how the ratio or value compares with the target."""

    figure: str
    ours: Callable[[Figures], str]
    baseline: Callable[[Figures], str]
    ratio: Callable[[Figures], str]
    target: str


def value(figures: Figures, bench: str, key: str) -> float | None:
    return figures.get(bench, {}).get(key)


def rate(bench: str, key: str, unit: str = "") -> Callable[[Figures], str]:
    def show(figures: Figures) -> str:
        v = value(figures, bench, key)
        return "n/a" if v is None else f"{v:,.0f}{unit}"
    return show


def seconds(bench: str, key: str) -> Callable[[Figures], str]:
    def show(figures: Figures) -> str:
        v = value(figures, bench, key)
        return "n/a" if v is None else f"{v:.2f} s"
    return show


def ratio(bench: str, ours: str, base_bench: str, base: str) -> Callable[[Figures], str]:
    def show(figures: Figures) -> str:
        a, b = value(figures, bench, ours), value(figures, base_bench, base)
        return "n/a" if a is None or not b else f"{a / b:.3g}"
    return show


def text(words: str) -> Callable[[Figures], str]:
    return lambda figures: words


def latency(figures: Figures) -> str:
    p50, p99 = value(figures, "postgres_e2e", "exchange_p50_s"), value(figures, "postgres_e2e", "exchange_p99_s")
    return "n/a" if p50 is None or p99 is None else f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms"


E2E = "postgres_e2e"
ROWS = [
    Row("row changes/s durably at the hub under `pgbench -c 4`", rate(E2E, "exchange_end_to_end_per_s"),
        rate(E2E, "native_applied_per_s", " (native logical replication applied)"),
        ratio(E2E, "exchange_end_to_end_per_s", E2E, "native_applied_per_s"), "≥ 0.9"),
    Row("what pgbench achieves (row changes/s) with capture attached", rate(E2E, "exchange_generated_per_s"),
        rate(E2E, "native_generated_per_s", " (with native replication attached)"),
        ratio(E2E, "exchange_generated_per_s", E2E, "native_generated_per_s"), "≥ 0.9"),
    Row("catch-up after pgbench stops", seconds(E2E, "exchange_drain_s"),
        seconds(E2E, "native_lag_at_end_s"), text(""), "≤ 1 s"),
    Row("commit → hub latency at ~2,000 changes/s", latency, text(""), text(""), "p99 ≤ 250 ms"),
    Row("initial snapshot into node and hub (rows/s)", rate(E2E, "exchange_snapshot_per_s"),
        rate(E2E, "exchange_copy_per_s", " (`COPY pgbench_accounts TO STDOUT`)"),
        ratio(E2E, "exchange_snapshot_per_s", E2E, "exchange_copy_per_s"), "≥ 50,000 rows/s (≥ 0.03)"),
    Row("node snapshot alone, into its store (rows/s)", rate("snapshot_rate", "snapshot_rows_per_s"),
        rate("snapshot_rate", "copy_rows_per_s", " (COPY)"),
        ratio("snapshot_rate", "snapshot_rows_per_s", "snapshot_rate", "copy_rows_per_s"), "≥ 50,000 rows/s"),
    Row("capture of already-written WAL, to the hub (changes/s)", rate(E2E, "exchange_written_wal_per_s"),
        rate(E2E, "decode_decoded_per_s", " (raw pgoutput decode, pg_recvlogical)"),
        ratio(E2E, "exchange_written_wal_per_s", E2E, "decode_decoded_per_s"), "≥ 25,000/s"),
    Row("capture step alone: recorded changes → node store (changes/s)", rate("capture_rate", "capture_per_s"),
        text(""), text(""), "≥ 25,000/s on one core"),
    Row("hub ingest on a PostgreSQL store, batches of 5,000 (events/s)", rate("hub_ingest", "pg_ingest_5000"),
        rate("hub_ingest", "pg_copy_5000", " (binary COPY of the same rows into a bare table)"),
        ratio("hub_ingest", "pg_ingest_5000", "hub_ingest", "pg_copy_5000"), "≥ 50,000/s"),
    Row("replay into SQLite (final rows/s)", rate("replay_rate", "sqlite_replay_rows_per_s"),
        rate("replay_rate", "sqlite_bulk_rows_per_s", " (executemany of the final rows)"),
        ratio("replay_rate", "sqlite_replay_rows_per_s", "replay_rate", "sqlite_bulk_rows_per_s"), "≥ 0.5"),
    Row("replay into SQLite in 2 processes, `--jobs 2` (final rows/s)",
        rate("replay_rate", "sqlite_replay_jobs_rows_per_s"),
        rate("replay_rate", "sqlite_bulk_rows_per_s", " (executemany of the final rows)"),
        ratio("replay_rate", "sqlite_replay_jobs_rows_per_s", "replay_rate", "sqlite_bulk_rows_per_s"), "≥ 0.5"),
    Row("replay into PostgreSQL (final rows/s)", rate("replay_rate", "postgresql_replay_rows_per_s"),
        rate("replay_rate", "postgresql_bulk_rows_per_s", " (COPY of the final rows)"),
        ratio("replay_rate", "postgresql_replay_rows_per_s", "replay_rate", "postgresql_bulk_rows_per_s"), "≥ 0.5"),
    Row("replay into PostgreSQL in 2 processes, `--jobs 2` (final rows/s)",
        rate("replay_rate", "postgresql_replay_jobs_rows_per_s"),
        rate("replay_rate", "postgresql_bulk_rows_per_s", " (COPY of the final rows)"),
        ratio("replay_rate", "postgresql_replay_jobs_rows_per_s", "replay_rate", "postgresql_bulk_rows_per_s"),
        "≥ 0.5"),
]


def run_all(quick: bool, directory: Path) -> tuple[Figures, dict[str, str], str]:
    """Run every benchmark whose script exists; their figures, why any failed, and the PostgreSQL version."""
    figures: Figures = {}
    failed: dict[str, str] = {}
    cluster = start_cluster()
    try:
        pg = "PostgreSQL " + cluster.execute("SHOW server_version")[0][0]
        for bench in BENCHES:
            script = ROOT / "bench" / bench.script
            if not script.exists():
                continue
            out = directory / f"{bench.name}.json"
            args = [a.replace("{postgres}", cluster.url("postgres")) for a in (bench.quick_args if quick
                                                                             else bench.args)]
            print(f"== {bench.name} {' '.join(args)}", flush=True)
            started = time.perf_counter()
            done = subprocess.run([sys.executable, str(script), *args, "--json", str(out)], cwd=ROOT)
            print(f"== {bench.name}: {time.perf_counter() - started:.0f} s, exit {done.returncode}", flush=True)
            if done.returncode == 0 and out.exists():
                figures[bench.name] = json.loads(out.read_text())
            else:
                failed[bench.name] = f"exit status {done.returncode}"
    finally:
        cluster.stop()
    return figures, failed, pg


def table(figures: Figures) -> str:
    lines = ["| figure | exchange | baseline in the same run | ratio | target |", "|---|---|---|---|---|"]
    lines += [f"| {r.figure} | {r.ours(figures)} | {r.baseline(figures)} | {r.ratio(figures)} | {r.target} |"
              for r in ROWS]
    return "\n".join(lines)


def machine(pg: str, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    """Where the table was measured: CPU, cores, memory, server and Python versions, load."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    memory = next((int(line.split()[1]) // 1024 // 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), 0)
    return (f"{os.cpu_count()} cores ({cpu}), {memory} GiB memory, {platform.system()} {platform.release()}; "
            f"{pg}; Python {platform.python_version()}. Load average (1 min) {load_before[0]:.2f} at the start, "
            f"{load_after[0]:.2f} at the end. Every process (database, load generator, node, hub) shares the "
            "machine, fsync on.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the benchmarks run")
    parser.add_argument("--out", default=str(ROOT / "docs" / "performance.md"), help="where to write the table")
    args = parser.parse_args()
    load_before = os.getloadavg()
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        figures, failed, pg = run_all(args.quick, Path(tmp))
    rendered = table(figures)
    print("\n" + rendered)
    notes = "".join(f"\n- `{name}` did not finish ({why}); its rows say n/a." for name, why in failed.items())
    Path(args.out).write_text(
        "# Performance\n\n"
        "Written by `make bench` (bench/report.py): each figure beside a baseline measured in the same run on "
        "the same machine. Targets are those of the fast-path work; they are for this benchmark, never for "
        "tests. Commands: " + ", ".join(f"`bench/{b.script} {' '.join(b.quick_args if args.quick else b.args)}`"
                                       for b in BENCHES) + ".\n\n"
        f"Measured {when}{' (--quick: small sizes, not comparable)' if args.quick else ''}.\n\n"
        f"{rendered}\n\n## Machine\n\n{machine(pg, load_before, os.getloadavg())}\n{notes}\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
