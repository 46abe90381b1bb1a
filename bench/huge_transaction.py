"""Node memory and rate while it captures one huge source transaction.

A private cluster holds a table of ``--rows`` rows, which the
node snapshots first; then ONE ``UPDATE`` changes every row.  The node (a
real process, SQLite store, no hub: capture does not wait for shipping) is
sampled every half second until it has stored an event per updated row.

Prints, per row count, the node's resident memory before the update, its
peak while it captured the update (VmHWM, reset before the update), the
events stored, the time capture took after the commit and the rate, as
JSON.  ``--old DIR`` also runs the node from another checkout of the
project (e.g. ``git archive <commit> | tar -x -C DIR``), side by side;
``--code DIR`` runs the measured node from one too (default: this one).
``--work-mem`` is the server's ``logical_decoding_work_mem``: below the
transaction's size the server streams it while it runs.

    .venv/bin/python bench/huge_transaction.py [--rows 200000 1000000] [--old DIR] [--work-mem 64kB]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.postgres import start_cluster  # noqa: E402

from exchange.demos.pipeline import free_port, stop  # noqa: E402

AGENCY = "91310000MB2F31887X"


def memory_mib(pid: int, field: str) -> float:
    """VmRSS or VmHWM of process ``pid``, MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stored(store: Path) -> int:
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True) as conn:
            return conn.execute(f'SELECT count(*) FROM "events_{AGENCY}"').fetchone()[0]
    except sqlite3.Error:
        return 0


def wait_stored(process, store: Path, count: int, timeout: float) -> float:
    """Seconds until the node store holds ``count`` events."""
    started = time.monotonic()
    while stored(store) < count:
        if process.poll() is not None:
            raise SystemExit(f"the node exited with code {process.returncode}")
        if time.monotonic() - started > timeout:
            raise SystemExit(f"the node stored {stored(store)} of {count} events in {timeout:.0f} s")
        time.sleep(0.5)
    return time.monotonic() - started


def start_node(config: Path, log_path: Path, code: Path | None) -> subprocess.Popen:
    """``exchange node run``, from ``code`` (another checkout) when given."""
    env = dict(os.environ)
    if code is not None:
        env["PYTHONPATH"] = str(code)
    with open(log_path, "ab") as log:
        return subprocess.Popen([sys.executable, "-m", "exchange", "node", "run", "--config", str(config)],
                                stdout=log, stderr=subprocess.STDOUT, env=env, cwd=code or ROOT)


def reset_peak(pid: int) -> None:
    """Start VmHWM again from the current resident memory."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def measure(rows: int, code: Path | None, label: str, work_mem: str, timeout: float) -> dict:
    """One run: snapshot ``rows`` rows, update them all in one transaction, measure the node."""
    cluster = start_cluster(logical_decoding_work_mem=f"'{work_mem}'", max_wal_size="'4GB'")
    directory = Path(tempfile.mkdtemp(prefix="exchange-huge-"))
    node = None
    try:
        db = cluster.create_database("huge")
        cluster.execute("CREATE TABLE items (id integer PRIMARY KEY, n integer, label text)", dbname=db)
        cluster.execute("INSERT INTO items SELECT i, 0, 'item ' || i FROM generate_series(1, %s) i",
                        (rows,), dbname=db)
        store = directory / "node.db"
        config = directory / "node.toml"
        config.write_text(
            f'agency = "{AGENCY}"\n[source]\nurl = "{cluster.url(db)}"\ntables = ["items"]\npoll_interval = 0.05\n'
            f'[store]\nurl = "sqlite:///{store}"\n[hub]\naddress = "127.0.0.1:{free_port()}"\ninsecure = true\n'
            f"[metrics]\nport = 0\n")
        node = start_node(config, directory / "node.log", code)
        snapshot_seconds = wait_stored(node, store, rows + 1, timeout)
        before = memory_mib(node.pid, "VmRSS")
        reset_peak(node.pid)
        update_started = time.monotonic()
        cluster.execute("UPDATE items SET n = n + 1", dbname=db)
        update_seconds = time.monotonic() - update_started
        capture_seconds = wait_stored(node, store, 2 * rows + 1, timeout)
        return {
            "code": label,
            "logical_decoding_work_mem": work_mem,
            "rows": rows,
            "snapshot_seconds": round(snapshot_seconds, 1),
            "update_seconds": round(update_seconds, 1),
            "capture_seconds_after_commit": round(capture_seconds, 1),
            "changes_per_second": round(rows / max(capture_seconds, 0.001)),
            "node_rss_before_update_mib": round(before, 1),
            "node_peak_rss_mib": round(memory_mib(node.pid, "VmHWM"), 1),
            "events_stored": stored(store),
        }
    finally:
        if node is not None:
            stop(node)
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[5_000_000])
    parser.add_argument("--old", type=Path, help="also run the node from this checkout, for comparison")
    parser.add_argument("--code", type=Path, help="run the measured node from this checkout")
    parser.add_argument("--work-mem", default="64kB", help="the server's logical_decoding_work_mem")
    parser.add_argument("--timeout", type=float, default=7200)
    args = parser.parse_args()
    variants = [("new", args.code.resolve() if args.code else None)]
    if args.old:
        variants.append(("old", args.old.resolve()))
    results = []
    for rows in args.rows:
        for label, code in variants:
            results.append(measure(rows, code, label, args.work_mem, args.timeout))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
