"""Replay rate into MariaDB against a bulk load of the same final rows, in the same run.

Builds the sample agency's node store as bench/replay_rate.py does, then
--repeat times: replays it into a fresh MariaDB database, and loads the same
final rows into another fresh database with the tables replay creates and
multi-row INSERTs (PyMySQL's executemany), one transaction.  Prints rows/s
of both, their medians and the ratio bulk-load time / replay time (1.0 = as
fast as a bulk load).  Without --mysql a private server is started (as the
tests start one: tests/support/mariadb.py).

    .venv/bin/python bench/mysql_replay.py [--rows N] [--changes M] [--repeat R] [--mysql mysql://root@HOST:PORT/x]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench"), str(ROOT / "tests")]

from replay_rate import AGENCY, build_store, final_rows  # noqa: E402

from adapters.mysql.connection import MySQLAddress  # noqa: E402
from adapters.mysql.dialect import create_sql, open_database, quote  # noqa: E402
from exchange.demos.sample import TABLES  # noqa: E402
from exchange.tools.replay import replay  # noqa: E402
from exchange.tools.verify import verify  # noqa: E402


def fresh_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; its URL."""
    address = MySQLAddress.parse(server_url)
    name = f"bench_{uuid.uuid4().hex[:8]}"
    db = open_database(server_url)
    with db.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    db.close()
    secret = f":{address.password}" if address.password else ""
    return f"mysql://{address.user}{secret}@{address.host}:{address.port}/{name}"


def bulk_load(url: str, tables: dict[str, tuple]) -> float:
    """Seconds to create the tables and insert ``tables``' rows with multi-row INSERTs."""
    started = time.perf_counter()
    db = open_database(url)
    with db.cursor() as cur:
        for schema, _ in tables.values():
            cur.execute(create_sql(schema), ())
        for schema, rows in tables.values():
            columns = ", ".join(map(quote, schema.column_names))
            cur.executemany(f"INSERT INTO {quote(schema.name)} ({columns}) "
                            f"VALUES ({', '.join(['%s'] * len(schema.columns))})", rows)
    db.commit()
    db.close()
    return time.perf_counter() - started


def measure(server_url: str, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-mysql-replay-") as tmp:
        store_url, source_url, events = build_store(Path(tmp), args.rows, args.changes)
        tables = final_rows(source_url)
        rows = sum(len(r) for _, r in tables.values())
        print(f"history: {events} events; final state: {rows} rows in {len(tables)} tables")
        replay_times, bulk_times = [], []
        for i in range(args.repeat):
            target = fresh_database(server_url)
            started = time.perf_counter()
            replay(store_url, AGENCY, target, progress=False)
            replay_times.append(time.perf_counter() - started)
            bulk_times.append(bulk_load(fresh_database(server_url), tables))
            if i == 0:
                assert verify(source_url, target, tables=TABLES).equal, "replay into MariaDB differs"
        r, b = statistics.median(replay_times), statistics.median(bulk_times)
        print(f"   mariadb: replay {r:6.2f}s = {events / r:8.0f} events/s ({rows / r:8.0f} final rows/s); "
              f"bulk load {b:6.2f}s = {rows / b:8.0f} rows/s; bulk/replay time ratio {b / r:.2f} "
              f"(median of {args.repeat}; runs: replay {', '.join(f'{t:.2f}' for t in replay_times)}s, "
              f"bulk {', '.join(f'{t:.2f}' for t in bulk_times)}s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--changes", type=int, default=20000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--mysql", help="mysql://USER@HOST:PORT/DB of a server to create scratch databases on")
    args = parser.parse_args()
    if args.mysql:
        measure(args.mysql, args)
        return
    from support.mariadb import start_server

    server = start_server()
    try:
        measure(server.url("mysql"), args)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
