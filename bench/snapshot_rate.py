"""Initial snapshot rate of PostgreSQL capture, against a plain COPY of the same table.

On a private cluster started here (fsync on), ``pgbench -i --scale N``
(N x 100,000 pgbench_accounts rows, plus branches, tellers and an empty
keyless pgbench_history), then, each ``--repeats`` times:

1. the node's initial snapshot of the four tables: its capture loop (as in
   the node, a SQLite node store, the node's default batch sizes) in a child
   process of its own, from
   ``PostgresSource.prepare`` until every row is stored as an event; rows/s,
   rows per CPU second of the node (its user and system time: steadier than
   rows/s on a machine other jobs share) and the child's peak resident memory;
2. baseline: ``COPY pgbench_accounts TO STDOUT`` read by psycopg into
   nothing: rows/s.

Prints the medians and the ratio snapshot / COPY; ``--json PATH`` writes
them.  ``--profile PATH`` runs one more snapshot under cProfile and writes
its statistics (``python -m pstats PATH``).

    .venv/bin/python bench/snapshot_rate.py [--scale 2] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psycopg  # noqa: E402
from postgres_e2e import pgbench  # noqa: E402
from support.postgres import start_cluster  # noqa: E402

from node.config import SETTINGS  # noqa: E402

AGENCY = "91310000MB2F31887X"
TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]
REAL = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


def snapshot(url: str, slot: str, store_path: str, chunk: int, batch: int, snapshot_batch: int) -> dict:
    """One initial snapshot into a fresh node store (in this process); its figures."""
    from adapters.postgres.source import PostgresSource
    from exchange.store import open_store
    from node.capture import Capture

    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime  # what imports took
    store = open_store(f"sqlite:///{store_path}")
    recorder = store.node_recorder(AGENCY)
    started = time.perf_counter()
    source = PostgresSource(url, TABLES, snapshot_chunk=chunk, slot=slot)
    source.prepare()
    capture = Capture(AGENCY, source, recorder, batch_size=batch, snapshot_batch_size=snapshot_batch)
    while capture.step() or source.pending(capture.position):
        pass
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    events = recorder.count_after(0)
    source.close()
    store.close()
    return {"seconds": seconds, "events": events, "cpu_seconds": usage.ru_utime + usage.ru_stime - cpu,
            "peak_rss_mib": usage.ru_maxrss / 1024}


def run_child(url: str, slot: str, args: argparse.Namespace, profile: str | None = None) -> dict:
    """``snapshot`` in a child process (its own peak memory), then drop its slot."""
    with tempfile.TemporaryDirectory(prefix="bench-snap-") as tmp:
        command = [sys.executable, __file__, "--child", url, slot, f"{tmp}/node.db", str(args.chunk), str(args.batch),
                   str(args.snapshot_batch)]
        if profile:
            command[1:1] = ["-m", "cProfile", "-o", profile]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
                     (slot,))
    return json.loads(out.splitlines()[-1])


def copy_rate(url: str, rows: int) -> float:
    """Rows/s of ``COPY pgbench_accounts TO STDOUT`` read by psycopg, the data dropped."""
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        started = time.perf_counter()
        with cur.copy("COPY pgbench_accounts TO STDOUT") as copy:
            for _ in copy:
                pass
        return rows / (time.perf_counter() - started)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        url, slot, store_path, chunk, batch, snapshot_batch = sys.argv[2:8]
        print(json.dumps(snapshot(url, slot, store_path, int(chunk), int(batch), int(snapshot_batch))))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=2, help="pgbench scale: 100,000 accounts rows each")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk", type=int, default=10_000, help="snapshot_chunk: rows per chunk read")
    parser.add_argument("--batch", type=int, default=SETTINGS["source.batch_size"].default,
                        help="[source] batch_size (the node's default)")
    parser.add_argument("--snapshot-batch", type=int, default=SETTINGS["source.snapshot_batch_size"].default,
                        help="[source] snapshot_batch_size (the node's default)")
    parser.add_argument("--json", help="write the figures to this file as a JSON object")
    parser.add_argument("--profile", help="also profile one snapshot with cProfile, statistics to this file")
    args = parser.parse_args()
    cluster = start_cluster(**REAL)
    try:
        db = cluster.create_database("bench")
        pgbench(cluster, db, "-i", "-q", "-s", str(args.scale))
        cluster.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL", dbname=db)
        cluster.execute("VACUUM ANALYZE", dbname=db)
        url = cluster.url(db)
        rows = sum(cluster.execute(f"SELECT count(*) FROM {t}", dbname=db)[0][0] for t in TABLES)
        accounts = cluster.execute("SELECT count(*) FROM pgbench_accounts", dbname=db)[0][0]
        snapshots, copies = [], []
        for i in range(args.repeats):
            snapshots.append(run_child(url, f"bench_snapshot_{i}", args))
            copies.append(copy_rate(url, accounts))
            print(f"run {i + 1}: snapshot {rows / snapshots[-1]['seconds']:,.0f} rows/s, "
                  f"{rows / snapshots[-1]['cpu_seconds']:,.0f} rows per node CPU second "
                  f"({snapshots[-1]['events']} events, peak RSS {snapshots[-1]['peak_rss_mib']:.0f} MiB); "
                  f"COPY {copies[-1]:,.0f} rows/s", flush=True)
        if args.profile:
            run_child(url, "bench_snapshot_profile", args, args.profile)
    finally:
        cluster.stop()
    snapshot_rate = statistics.median(rows / s["seconds"] for s in snapshots)
    figures = {
        "snapshot_rows": rows,
        "snapshot_rows_per_s": snapshot_rate,
        "copy_rows_per_s": statistics.median(copies),
        "snapshot_to_copy": snapshot_rate / statistics.median(copies),
        "snapshot_seconds": statistics.median(s["seconds"] for s in snapshots),
        "snapshot_rows_per_cpu_s": statistics.median(rows / s["cpu_seconds"] for s in snapshots),
        "node_peak_rss_mib": statistics.median(s["peak_rss_mib"] for s in snapshots),
    }
    print(f"initial snapshot of pgbench scale {args.scale} ({rows:,} rows, median of {args.repeats}): "
          f"{figures['snapshot_rows_per_s']:,.0f} rows/s in {figures['snapshot_seconds']:.1f} s, "
          f"{figures['snapshot_rows_per_cpu_s']:,.0f} rows per node CPU second, "
          f"peak RSS {figures['node_peak_rss_mib']:.0f} MiB")
    print(f"baseline COPY pgbench_accounts TO STDOUT (psycopg): {figures['copy_rows_per_s']:,.0f} rows/s")
    print(f"ratio snapshot / COPY: {figures['snapshot_to_copy']:.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
