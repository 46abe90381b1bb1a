"""End to end from a pgbench workload on a captured PostgreSQL database.

One run, on private clusters started here (fsync on), with the same pgbench
workload each time:

1. exchange: node (logical decoding, pgoutput) and hub as real processes;
   pgbench -c 4 unthrottled: row changes/s durably stored at the hub while
   pgbench runs, the backlog when it stops and the time to drain it; node
   peak memory (VmHWM).
2. exchange, throttled to ~2,000 row changes/s: commit-to-hub latency p50
   and p99, from probe rows committed every 50 ms and seen by a subscriber
   of the hub.
3. baseline: PostgreSQL's own logical replication (publication ->
   subscription on a second cluster): row changes applied/s and the lag at
   the end.
4. baseline: the raw decode rate of a pgoutput slot (pg_recvlogical).

Also, in the exchange part: the initial snapshot of the pgbench tables into
node and hub (rows/s, against ``COPY pgbench_accounts TO STDOUT`` read in the
same run), and capture of already-written WAL: the node stopped while
pgbench runs, then started, timed until the hub holds everything.

Prints the figures and the ratios exchange / baseline; ``--json PATH`` also
writes them for bench/report.py.

    .venv/bin/python bench/postgres_e2e.py [--scale 10] [--seconds 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from figures import add_json_option, save  # noqa: E402
from processes import follow_probes, hub_events, peak_rss_mib, write_configs  # noqa: E402
from support.postgres import start_cluster  # noqa: E402

from exchange.demos.pipeline import start, stop  # noqa: E402
from exchange.transport.rpc.health import http_answers, wait_serving  # noqa: E402
from node import config as node_config  # noqa: E402
from node.status import node_status  # noqa: E402

TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history", "probe"]
CHANGES_PER_TRANSACTION = 4  # tpcb-like: three updates and one insert
REAL = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


def pgbench(cluster, db: str, *args: str) -> int:
    """Run pgbench; the number of transactions it processed."""
    out = subprocess.run([str(cluster.bin / "pgbench"), "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                          *args, db], check=True, capture_output=True, text=True).stdout
    match = re.search(r"number of transactions actually processed: (\d+)", out)
    return int(match.group(1)) if match else 0


def prepare_source(cluster, scale: int) -> str:
    db = cluster.create_database("bench")
    pgbench(cluster, db, "-i", "-q", "-s", str(scale))
    cluster.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL", dbname=db)
    cluster.execute("CREATE TABLE probe (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
                    dbname=db)
    return db


def lsn(cluster, db: str) -> int:
    text = cluster.execute("SELECT pg_current_wal_lsn()", dbname=db)[0][0]
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def copy_rate(cluster, db: str) -> float:
    """Rows/s of ``COPY pgbench_accounts TO STDOUT``, read by the client and dropped."""
    conn = cluster.connect(db)
    rows = 0
    started = time.perf_counter()
    with conn.cursor() as cur:
        cur.copy_expert("COPY pgbench_accounts TO STDOUT", _Counter())
        cur.execute("SELECT count(*) FROM pgbench_accounts")
        rows = cur.fetchone()[0]
    took = time.perf_counter() - started
    conn.close()
    return rows / took


class _Counter:
    """A file-like sink for COPY output."""

    def write(self, data) -> int:
        return len(data)


class Exchange:
    """A hub and a node capturing the source database, as processes."""

    def __init__(self, directory: Path, source_url: str):
        self.directory = directory
        hub_toml, self.node_toml, self.hub_address = write_configs(directory, source_url, TABLES)
        self.cfg = node_config.load(self.node_toml, environ={})
        self.hub = start("hub", hub_toml, directory / "hub.log")
        wait_serving(self.hub_address)
        self.start_node()

    def start_node(self) -> None:
        self.node = start("node", self.node_toml, self.directory / "node.log")
        while not http_answers(f"http://127.0.0.1:{self.cfg.metrics.port}/metrics"):
            time.sleep(0.1)

    def hub_events(self) -> int:
        return hub_events(self.hub_address)

    def wait_caught_up(self) -> None:
        while not (status := node_status(self.cfg))["caught_up"] or not status["hub_reachable"]:
            time.sleep(0.1)

    def close(self) -> None:
        stop(self.node)
        stop(self.hub)


def probe_latencies(ex: Exchange, cluster, db: str, seconds: float) -> list[float]:
    """Insert a probe row every 50 ms; seconds from its commit to its arrival at a hub subscriber."""
    latencies: list[float] = []
    stopping = threading.Event()
    follow_probes(ex.hub_address, "probe",
                  lambda event, at: latencies.append(at - event.commit_time.timestamp()), stopping)
    conn = cluster.connect(db)
    deadline = time.monotonic() + seconds
    with conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("INSERT INTO probe DEFAULT VALUES")
            time.sleep(0.05)
    conn.close()
    ex.wait_caught_up()
    time.sleep(0.5)
    stopping.set()
    return latencies


def run_exchange(directory: Path, cluster, db: str, seconds: int) -> dict:
    snapshot_rows = sum(cluster.execute(f"SELECT count(*) FROM {t}", dbname=db)[0][0] for t in TABLES)
    copy_per_s = copy_rate(cluster, db)
    started = time.perf_counter()
    ex = Exchange(directory, cluster.url(db))
    try:
        ex.wait_caught_up()  # the initial snapshot
        snapshot_s = time.perf_counter() - started
        before = ex.hub_events()
        started = time.perf_counter()
        transactions = pgbench(cluster, db, "-c", "4", "-j", "2", "-T", str(seconds), "-n")
        ran = time.perf_counter() - started
        during = ex.hub_events() - before
        backlog = node_status(ex.cfg)["backlog_events"]
        ex.wait_caught_up()
        drained = time.perf_counter() - started - ran
        changes = transactions * CHANGES_PER_TRANSACTION
        # Throttled: 500 transactions/s = 2,000 row changes/s, with probes.
        rate_thread = threading.Thread(target=pgbench, args=(cluster, db, "-c", "2", "-j", "2", "-R", "500",
                                                              "-T", str(max(10, seconds // 2)), "-n"))
        rate_thread.start()
        latencies = probe_latencies(ex, cluster, db, max(10, seconds // 2))
        rate_thread.join()
        rss = peak_rss_mib(ex.node.pid)
        # Capture of WAL written while the node was down: time from its start until the hub holds it all.
        stop(ex.node)
        backlog_changes = pgbench(cluster, db, "-c", "4", "-j", "2", "-T", str(max(10, seconds // 2)), "-n") \
            * CHANGES_PER_TRANSACTION
        restarted = time.perf_counter()
        ex.start_node()
        ex.wait_caught_up()
        backlog_s = time.perf_counter() - restarted
        return {"changes": changes, "generated_per_s": changes / ran, "stored_during_per_s": during / ran,
                "end_to_end_per_s": changes / (ran + drained), "backlog_at_end": backlog, "drain_s": drained,
                "p50_s": statistics.median(latencies), "p99_s": statistics.quantiles(latencies, n=100)[98],
                "probes": len(latencies), "node_peak_rss_mib": rss,
                "snapshot_rows": snapshot_rows, "snapshot_per_s": snapshot_rows / snapshot_s,
                "copy_per_s": copy_per_s, "written_wal_changes": backlog_changes,
                "written_wal_per_s": backlog_changes / backlog_s}
    finally:
        ex.close()


def run_native(source, subscriber, db: str, seconds: int) -> dict:
    """PostgreSQL's own logical replication of the same workload."""
    schema = subprocess.run([str(source.bin / "pg_dump"), "-s", "-h", "127.0.0.1", "-p", str(source.port), "-U",
                             "postgres", db], check=True, capture_output=True, text=True).stdout
    target = subscriber.create_database("bench")
    conn = subscriber.connect(target)
    with conn.cursor() as cur:  # psql meta-commands (e.g. \restrict) are not SQL
        cur.execute("\n".join(line for line in schema.splitlines() if not line.startswith("\\")))
    source.execute("CREATE PUBLICATION native FOR TABLE " + ", ".join(TABLES), dbname=db)
    with conn.cursor() as cur:
        cur.execute(f"CREATE SUBSCRIPTION native CONNECTION '{source.url(db)}' PUBLICATION native "
                    "WITH (copy_data = false)")
    time.sleep(1)
    started = time.perf_counter()
    transactions = pgbench(source, db, "-c", "4", "-j", "2", "-T", str(seconds), "-n")
    ran = time.perf_counter() - started
    end = lsn(source, db)
    while True:
        with conn.cursor() as cur:
            cur.execute("SELECT latest_end_lsn FROM pg_stat_subscription WHERE subname = 'native'")
            text = cur.fetchone()[0]
        if text:
            high, low = text.split("/")
            if (int(high, 16) << 32) + int(low, 16) >= end:
                break
        time.sleep(0.05)
    lag = time.perf_counter() - started - ran
    with conn.cursor() as cur:
        cur.execute("DROP SUBSCRIPTION native")
    conn.close()
    changes = transactions * CHANGES_PER_TRANSACTION
    return {"changes": changes, "generated_per_s": changes / ran, "applied_per_s": changes / (ran + lag),
            "lag_at_end_s": lag}


def run_decode(source, db: str, seconds: int) -> dict:
    """Raw decode rate of a pgoutput slot over the same workload's WAL."""
    source.execute("SELECT pg_create_logical_replication_slot('raw', 'pgoutput')", dbname=db)
    transactions = pgbench(source, db, "-c", "4", "-j", "2", "-T", str(seconds), "-n")
    end = source.execute("SELECT pg_current_wal_lsn()::text", dbname=db)[0][0]
    started = time.perf_counter()
    subprocess.run([str(source.bin / "pg_recvlogical"), "-h", "127.0.0.1", "-p", str(source.port), "-U", "postgres",
                    "-d", db, "--slot", "raw", "--start", "--endpos", end, "-o", "proto_version=1",
                    "-o", "publication_names=native", "-f", "/dev/null", "--no-loop"], check=True)
    took = time.perf_counter() - started
    source.execute("SELECT pg_drop_replication_slot('raw')", dbname=db)
    changes = transactions * CHANGES_PER_TRANSACTION
    return {"changes": changes, "decoded_per_s": changes / took}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--seconds", type=int, default=30)
    add_json_option(parser)
    args = parser.parse_args()
    source = start_cluster(**REAL)
    subscriber = source.copy(**REAL)
    try:
        db = prepare_source(source, args.scale)
        with tempfile.TemporaryDirectory(prefix="bench-pg-") as tmp:
            ours = run_exchange(Path(tmp), source, db, args.seconds)
        native = run_native(source, subscriber, db, args.seconds)
        decode = run_decode(source, db, args.seconds)
    finally:
        subscriber.stop()
        source.stop()
    print(f"pgbench -c 4 for {args.seconds}s at scale {args.scale} (2 cores, fsync on)")
    print(f"exchange: pgbench made {ours['generated_per_s']:.0f} row changes/s; hub stored {ours['stored_during_per_s']:.0f}/s "
          f"while it ran; backlog at its end {ours['backlog_at_end']} events, drained in {ours['drain_s']:.1f}s; "
          f"end to end {ours['end_to_end_per_s']:.0f} changes/s; node peak RSS {ours['node_peak_rss_mib']:.0f} MiB")
    print(f"exchange at ~2,000 changes/s: commit-to-hub p50 {ours['p50_s'] * 1000:.0f} ms, "
          f"p99 {ours['p99_s'] * 1000:.0f} ms ({ours['probes']} probes)")
    print(f"native logical replication: {native['applied_per_s']:.0f} changes/s applied, lag at end "
          f"{native['lag_at_end_s']:.1f}s")
    print(f"raw pgoutput decode (pg_recvlogical): {decode['decoded_per_s']:.0f} changes/s")
    print(f"initial snapshot: {ours['snapshot_rows']} rows at {ours['snapshot_per_s']:.0f} rows/s into node and hub; "
          f"COPY reads {ours['copy_per_s']:.0f} rows/s")
    print(f"capture of WAL written while the node was stopped: {ours['written_wal_changes']} changes at "
          f"{ours['written_wal_per_s']:.0f} changes/s to the hub")
    print(f"ratios: exchange end to end / native replication = {ours['end_to_end_per_s'] / native['applied_per_s']:.2f}; "
          f"exchange / raw decode = {ours['end_to_end_per_s'] / decode['decoded_per_s']:.2f}")
    save(args, {"scale": args.scale, "seconds": args.seconds,
                **{f"exchange_{k}": v for k, v in ours.items()},
                **{f"native_{k}": v for k, v in native.items()},
                **{f"decode_{k}": v for k, v in decode.items()}})


if __name__ == "__main__":
    main()
