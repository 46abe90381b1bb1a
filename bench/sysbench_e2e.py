"""End to end from sysbench on a captured MariaDB database, beside native replication.

One run, on private mariadbd servers started here (innodb_flush_log_at_trx_commit
= 1 and sync_binlog = 1 on both), with the same sysbench workloads
(oltp_read_write, then oltp_insert) in each configuration, repeated
``--repeat`` times, the order of the configurations turning each time:

a. exchange: node (row binlog) and hub as real processes: row changes/s
   durably stored at the hub while sysbench runs, the backlog (row changes
   committed but not yet at the hub) when it stops and the time until the
   hub holds them all; at a fixed rate (sysbench --rate, with
   probe rows committed every 50 ms and seen by a subscriber of the hub),
   commit-to-hub latency p50/p99; node peak memory (VmHWM).
b. native: a second mariadbd as a replica (MASTER_USE_GTID = slave_pos):
   sysbench with the replica attached and the replica's catch-up time when
   sysbench stops.
c. sysbench with nothing attached to the source.
d. initial snapshot of the sysbench tables by the node (rows/s into the node's
   store and at the hub) against ``mariadb-dump`` of the same tables to
   /dev/null.

Prints a table of the medians over the repetitions and the ratios.

    .venv/bin/python bench/sysbench_e2e.py [--table-size 100000] [--tables 1] [--seconds 10]
        [--threads 4] [--repeat 3] [--rate 250]
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from processes import follow_probes, hub_events, peak_rss_mib, write_configs  # noqa: E402
from support.mariadb import start_server  # noqa: E402

from exchange.demos.pipeline import start, stop  # noqa: E402
from exchange.transport.rpc.health import http_answers, wait_serving  # noqa: E402
from node import config as node_config  # noqa: E402
from node.status import node_status  # noqa: E402

DATABASE = "sbtest"
WORKLOADS = ("oltp_read_write", "oltp_insert")
CONFIGURATIONS = ("exchange", "alone", "native")  # a, c and b of the docstring
# Durable commits, as a production source and replica run them.
DURABLE = {"innodb_flush_log_at_trx_commit": 1, "sync_binlog": 1, "innodb_buffer_pool_size": "256M",
           "innodb_log_file_size": "256M"}
REPLICATION_USER, REPLICATION_PASSWORD = "replication", "replication-bench"
PROBE_INTERVAL = 0.05
CATCH_UP_TIMEOUT = 1800.0


@dataclass(frozen=True)
class SysbenchRun:
    """What one ``sysbench ... run`` reported."""

    transactions: int
    writes: int  # write statements: each changes one row in these workloads
    seconds: float  # wall time of the run

    @property
    def tps(self) -> float:
        return self.transactions / self.seconds

    @property
    def changes_per_s(self) -> float:
        return self.writes / self.seconds


class Sysbench:
    """sysbench against one database of a server."""

    def __init__(self, server, tables: int, table_size: int):
        self.common = ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={server.port}",
                       "--mysql-user=root", f"--mysql-db={DATABASE}", f"--tables={tables}",
                       f"--table-size={table_size}"]

    def prepare(self) -> None:
        subprocess.run([*self.common, "--threads=2", "oltp_read_write", "prepare"], check=True,
                       capture_output=True, text=True)

    def run(self, workload: str, seconds: int, threads: int, rate: int = 0) -> SysbenchRun:
        started = time.perf_counter()
        result = subprocess.run([*self.common, f"--threads={threads}", f"--time={seconds}", f"--rate={rate}",
                                 "--report-interval=0", workload, "run"], capture_output=True, text=True)
        took = time.perf_counter() - started
        if result.returncode != 0:
            raise RuntimeError(f"sysbench {workload} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
        transactions = int(re.search(r"transactions:\s+(\d+)", result.stdout).group(1))
        writes = int(re.search(r"write:\s+(\d+)", result.stdout).group(1))
        ran = float(re.search(r"total time:\s+([\d.]+)s", result.stdout).group(1))
        return SysbenchRun(transactions, writes, min(ran, took))


def gtid_position(server) -> str:
    return server.execute("SELECT @@gtid_binlog_pos")[0][0]


def table_rows(server, tables: list[str]) -> int:
    return sum(server.execute(f"SELECT count(*) FROM `{t}`", dbname=DATABASE)[0][0] for t in tables)


def say(message: str) -> None:
    """A progress line on standard error."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


def wait_until(check, what: str, timeout: float = CATCH_UP_TIMEOUT, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} after {timeout:.0f}s")
        time.sleep(interval)


# -- a. the exchange ----------------------------------------------------------------------------------------


class Exchange:
    """A hub, and a node capturing the source database, as processes (the node can be stopped and started)."""

    def __init__(self, directory: Path, source_url: str, tables: list[str]):
        self.directory = directory
        hub_toml, self.node_toml, self.hub_address = write_configs(directory, source_url, tables)
        self.cfg = node_config.load(self.node_toml, environ={})
        self.hub = start("hub", hub_toml, directory / "hub.log")
        wait_serving(self.hub_address)
        self.node: subprocess.Popen | None = None
        self.node_peak_mib = 0.0

    def start_node(self) -> None:
        self.node = start("node", self.node_toml, self.directory / "node.log")
        wait_until(lambda: self._node_alive() and http_answers(f"http://127.0.0.1:{self.cfg.metrics.port}/metrics"),
                   "the node does not serve /metrics", timeout=300)

    def stop_node(self) -> None:
        if self.node is not None:
            self.node_peak_mib = max(self.node_peak_mib, peak_rss_mib(self.node.pid))
            stop(self.node)
            self.node = None

    def _node_alive(self) -> bool:
        if self.node is not None and self.node.poll() is not None:
            log = (self.directory / "node.log").read_text(errors="replace")[-3000:]
            raise RuntimeError(f"the node exited ({self.node.returncode}):\n{log}")
        return True

    def hub_events(self) -> int:
        return hub_events(self.hub_address)

    def status(self) -> dict:
        self._node_alive()
        return node_status(self.cfg)

    def caught_up(self) -> bool:
        status = self.status()
        return status["caught_up"] and status["hub_reachable"]

    def wait_caught_up(self) -> None:
        wait_until(self.caught_up, "the node has not caught up", interval=0.2)

    def close(self) -> None:
        self.stop_node()
        stop(self.hub)


def snapshot_by_node(ex: Exchange, rows: int) -> dict:
    """Start the node on the prepared tables: rows/s of its initial snapshot into its store and at the hub."""
    started = time.perf_counter()
    ex.start_node()
    wait_until(lambda: ex.status()["events_stored"] >= rows, "the node has not stored the snapshot", interval=0.2)
    stored = time.perf_counter() - started
    wait_until(lambda: ex.hub_events() >= rows, "the hub does not hold the snapshot")
    at_hub = time.perf_counter() - started
    return {"rows": rows, "node_rows_per_s": rows / stored, "hub_rows_per_s": rows / at_hub}


def exchange_run(ex: Exchange, bench: Sysbench, workload: str, seconds: int, threads: int) -> dict:
    """One sysbench run captured by the node. Each write statement of these workloads changes one row, so
    the hub holds everything once it holds as many events more as sysbench wrote (or, should a statement
    have changed nothing, once the node has caught up)."""
    ex.wait_caught_up()
    before = ex.hub_events()
    run = bench.run(workload, seconds, threads)
    ended = time.perf_counter()
    during = ex.hub_events() - before
    expected = before + run.writes
    wait_until(lambda: ex.hub_events() >= expected or ex.caught_up(), "the hub has not caught up")
    catch_up = time.perf_counter() - ended
    changes = ex.hub_events() - before
    return {"tps": run.tps, "changes_per_s": run.changes_per_s, "at_hub_during_per_s": during / run.seconds,
            "backlog_events": max(0, run.writes - during), "catch_up_s": catch_up,
            "end_to_end_per_s": changes / (run.seconds + catch_up), "changes": changes}


def probe_latencies(ex: Exchange, source, bench: Sysbench, seconds: int, threads: int, rate: int) -> dict:
    """sysbench at ``rate`` transactions/s and a probe row every 50 ms: seconds from each probe's commit
    (when the server acknowledged it) to its arrival at a subscriber of the hub."""
    committed: dict[int, float] = {}
    arrived: dict[int, float] = {}
    stopping = threading.Event()
    ex.wait_caught_up()
    follow_probes(ex.hub_address, "probe", lambda event, at: arrived.setdefault(int(event.key["id"]), at), stopping)
    runs: list[SysbenchRun] = []
    load = threading.Thread(target=lambda: runs.append(bench.run("oltp_read_write", seconds, threads, rate)))
    load.start()
    conn = source.connect(DATABASE)
    deadline = time.monotonic() + seconds
    with conn.cursor() as cur:
        while time.monotonic() < deadline:
            cur.execute("INSERT INTO probe () VALUES ()")
            committed[cur.lastrowid] = time.time()
            time.sleep(PROBE_INTERVAL)
    conn.close()
    load.join()
    wait_until(lambda: committed.keys() <= arrived.keys(), "probe rows have not reached the hub's subscriber")
    stopping.set()
    latencies = [arrived[i] - t for i, t in committed.items()]
    return {"p50_s": statistics.median(latencies), "p99_s": statistics.quantiles(latencies, n=100)[98],
            "probes": len(latencies), "changes_per_s": runs[0].changes_per_s if runs else float("nan")}


# -- b. native replication ----------------------------------------------------------------------------------


def attach_replica(source, replica) -> None:
    """The replica follows the source from its first binlog, by GTID, stopped until used."""
    source.execute(f"CREATE USER '{REPLICATION_USER}'@'127.0.0.1' IDENTIFIED BY '{REPLICATION_PASSWORD}'")
    source.execute(f"GRANT REPLICATION SLAVE ON *.* TO '{REPLICATION_USER}'@'127.0.0.1'")
    replica.execute(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {source.port}, "
                    f"MASTER_USER = '{REPLICATION_USER}', MASTER_PASSWORD = '{REPLICATION_PASSWORD}', "
                    "MASTER_USE_GTID = slave_pos")


def replica_catch_up(source, replica) -> float:
    """Seconds until the replica has applied everything the source has committed now."""
    target = gtid_position(source)
    started = time.perf_counter()
    result = replica.execute("SELECT MASTER_GTID_WAIT(%s, %s)", (target, CATCH_UP_TIMEOUT))[0][0]
    if result != 0:
        status = replica.execute("SHOW SLAVE STATUS")
        raise TimeoutError(f"the replica has not reached {target}: {status}")
    return time.perf_counter() - started


def native_run(source, replica, bench: Sysbench, workload: str, seconds: int, threads: int) -> dict:
    replica.execute("START SLAVE")
    replica_catch_up(source, replica)  # what earlier runs committed while it was stopped
    run = bench.run(workload, seconds, threads)
    catch_up = replica_catch_up(source, replica)
    replica.execute("STOP SLAVE")
    return {"tps": run.tps, "changes_per_s": run.changes_per_s, "catch_up_s": catch_up,
            "end_to_end_per_s": run.writes / (run.seconds + catch_up)}


# -- c. nothing attached ------------------------------------------------------------------------------------


def alone_run(bench: Sysbench, workload: str, seconds: int, threads: int) -> dict:
    run = bench.run(workload, seconds, threads)
    return {"tps": run.tps, "changes_per_s": run.changes_per_s}


# -- d. mariadb-dump ----------------------------------------------------------------------------------------


def dump_rate(source, tables: list[str], rows: int) -> float:
    """Rows/s of ``mariadb-dump --single-transaction`` of the tables to /dev/null."""
    started = time.perf_counter()
    subprocess.run([shutil.which("mariadb-dump") or "mariadb-dump", "-h", "127.0.0.1", "-P", str(source.port),
                    "-u", "root", "--single-transaction", "--skip-lock-tables", DATABASE, *tables],
                   check=True, stdout=subprocess.DEVNULL)
    return rows / (time.perf_counter() - started)


# -- the run ------------------------------------------------------------------------------------------------


def median(runs: list[dict], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table-size", type=int, default=100_000, help="rows per sysbench table")
    parser.add_argument("--tables", type=int, default=1, help="sysbench tables")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of each sysbench run")
    parser.add_argument("--threads", type=int, default=4, help="sysbench threads")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each configuration (medians are reported)")
    parser.add_argument("--rate", type=int, default=250, help="sysbench transactions/s for the latency probes")
    parser.add_argument("--baseline-only", action="store_true", help="leave the exchange out (b, c and the dump)")
    args = parser.parse_args()
    tables = [f"sbtest{i}" for i in range(1, args.tables + 1)]
    source = start_server(**DURABLE)
    replica = start_server(server_id=2, **DURABLE)
    ex: Exchange | None = None
    snapshot: dict = {}
    latency: dict = {}
    peak = float("nan")
    results: dict[str, dict[str, list[dict]]] = {kind: {w: [] for w in WORKLOADS} for kind in CONFIGURATIONS}
    try:
        attach_replica(source, replica)
        source.create_database(DATABASE)
        bench = Sysbench(source, args.tables, args.table_size)
        say(f"sysbench prepare: {args.tables} table(s) of {args.table_size} rows")
        bench.prepare()
        source.execute("CREATE TABLE probe (id BIGINT AUTO_INCREMENT PRIMARY KEY, "
                       "at DATETIME(6) NOT NULL DEFAULT NOW(6))", dbname=DATABASE)
        rows = table_rows(source, tables)
        say("d. mariadb-dump of the tables")
        dumps = [dump_rate(source, tables, rows) for _ in range(3)]
        with tempfile.TemporaryDirectory(prefix="bench-sysbench-") as tmp:
            if not args.baseline_only:
                say("d. the node's initial snapshot")
                ex = Exchange(Path(tmp), source.url(DATABASE), [*tables, "probe"])
                snapshot = snapshot_by_node(ex, rows)
            for repetition in range(1, args.repeat + 1):
                # The order turns with each repetition, so that neither the database's growth nor the
                # machine's other load favours one configuration.
                order = CONFIGURATIONS[repetition % 3:] + CONFIGURATIONS[:repetition % 3]
                say(f"run {repetition} of {args.repeat}: " + ", then ".join(order))
                for kind in order:
                    if kind == "exchange" and ex is not None:
                        if ex.node is None:
                            ex.start_node()
                        for workload in WORKLOADS:
                            results["exchange"][workload].append(exchange_run(ex, bench, workload, args.seconds,
                                                                              args.threads))
                        ex.wait_caught_up()
                        ex.stop_node()
                    elif kind == "alone":
                        for workload in WORKLOADS:
                            results["alone"][workload].append(alone_run(bench, workload, args.seconds, args.threads))
                    elif kind == "native":
                        for workload in WORKLOADS:
                            results["native"][workload].append(native_run(source, replica, bench, workload,
                                                                          args.seconds, args.threads))
            if ex is not None:
                say(f"a. commit-to-hub latency at sysbench --rate {args.rate}")
                ex.start_node()
                latency = probe_latencies(ex, source, bench, max(10, args.seconds), args.threads, args.rate)
                ex.close()
                peak = ex.node_peak_mib
                ex = None
    finally:
        if ex is not None:
            ex.close()
        replica.stop()
        source.stop()
    report(args, results, snapshot, statistics.median(dumps), latency, rows, peak)


def report(args, results: dict, snapshot: dict, dump_per_s: float, latency: dict, rows: int, peak: float) -> None:
    print(f"sysbench --threads {args.threads}, {args.seconds}s per run, {args.tables} table(s) of {args.table_size} rows, "
          f"medians of {args.repeat} run(s); MariaDB with innodb_flush_log_at_trx_commit=1, sync_binlog=1")
    header = ("workload", "attached", "tps", "changes/s", "at hub during/s", "backlog", "catch-up s", "end to end/s")
    lines = [header]
    for workload in WORKLOADS:
        alone, native, ours = (results[k][workload] for k in ("alone", "native", "exchange"))
        lines.append((workload, "nothing", f"{median(alone, 'tps'):.0f}", f"{median(alone, 'changes_per_s'):.0f}",
                      "", "", "", ""))
        lines.append((workload, "replica", f"{median(native, 'tps'):.0f}", f"{median(native, 'changes_per_s'):.0f}",
                      "", "", f"{median(native, 'catch_up_s'):.1f}", f"{median(native, 'end_to_end_per_s'):.0f}"))
        if ours:
            lines.append((workload, "exchange", f"{median(ours, 'tps'):.0f}", f"{median(ours, 'changes_per_s'):.0f}",
                          f"{median(ours, 'at_hub_during_per_s'):.0f}", f"{median(ours, 'backlog_events'):.0f}",
                          f"{median(ours, 'catch_up_s'):.1f}", f"{median(ours, 'end_to_end_per_s'):.0f}"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
    print()
    print("ratios:")
    for workload in WORKLOADS:
        alone, native, ours = (results[k][workload] for k in ("alone", "native", "exchange"))
        parts = [f"sysbench tps with replica / nothing attached {median(native, 'tps') / median(alone, 'tps'):.2f}"]
        if ours:
            parts += [f"with exchange / nothing attached {median(ours, 'tps') / median(alone, 'tps'):.2f}",
                      "end to end changes/s exchange / replica "
                      f"{median(ours, 'end_to_end_per_s') / median(native, 'end_to_end_per_s'):.2f}",
                      f"catch-up exchange {median(ours, 'catch_up_s'):.1f}s, replica {median(native, 'catch_up_s'):.1f}s"]
        print(f"  {workload}: " + "; ".join(parts))
    print(f"initial snapshot of {rows} rows: mariadb-dump {dump_per_s:.0f} rows/s", end="")
    if snapshot:
        print(f"; node {snapshot['node_rows_per_s']:.0f} rows/s into its store, {snapshot['hub_rows_per_s']:.0f} "
              f"rows/s at the hub; node (at the hub) / dump = {snapshot['hub_rows_per_s'] / dump_per_s:.3f}")
    else:
        print()
    if latency:
        print(f"commit-to-hub at sysbench --rate {args.rate} ({latency['changes_per_s']:.0f} changes/s) and a probe "
              f"row every {PROBE_INTERVAL * 1000:.0f} ms: p50 {latency['p50_s'] * 1000:.0f} ms, "
              f"p99 {latency['p99_s'] * 1000:.0f} ms ({latency['probes']} probes); node peak RSS {peak:.0f} MiB")


if __name__ == "__main__":
    main()
