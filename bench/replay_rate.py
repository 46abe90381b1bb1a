"""Replay rate against a plain bulk load of the same final rows.

Builds a node event store from the sample agency (a snapshot of N initial
rows followed by M mixed changes), then, in the same run:

- replays it into a fresh SQLite database (and, with --postgres URL, into a
  fresh PostgreSQL database), timing the rebuild, in one job and in
  ``--jobs`` processes (exchange/tools/replay_parts.py);
- bulk-loads the same final rows into another fresh database with
  executemany (SQLite) or COPY (PostgreSQL), timing that;

and prints events/s, rows/s, the median of --repeat runs and the ratio
bulk-load time / replay time (1.0 = as fast as a bulk load).

    .venv/bin/python bench/replay_rate.py [--rows N] [--changes M] [--repeat R] [--jobs J] [--postgres URL] [--json PATH]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from figures import add_json_option, save  # noqa: E402

import adapters  # noqa: E402
from adapters.sqlite.source import SQLiteSource  # noqa: E402
from exchange.demos.sample import TABLES, SampleAgency  # noqa: E402
from exchange.store import EventStore  # noqa: E402
from exchange.tools.replay import replay  # noqa: E402
from exchange.tools.replay_parts import replay_in_parts  # noqa: E402
from exchange.tools.verify import verify  # noqa: E402
from node.capture import Capture  # noqa: E402

AGENCY = "91310000MB2F31887X"


def build_store(directory: Path, rows: int, changes: int) -> tuple[str, str, int]:
    """A node store holding the sample agency's history; (store URL, source URL, events)."""
    agency = SampleAgency(str(directory / "agency.db"))
    agency.create(persons=rows // 2, legal_persons=rows // 4, licences=rows - rows // 2 - rows // 4)
    source_url = f"sqlite:///{agency.path}"
    source = SQLiteSource(source_url, TABLES, snapshot_chunk=5000)
    source.prepare()
    agency.run(changes, per_transaction=100)
    store_url = f"sqlite:///{directory / 'node.db'}"
    store = EventStore(store_url)
    capture = Capture(AGENCY, source, store.node_recorder(AGENCY), batch_size=5000)
    while capture.step():
        pass
    events = store.node_recorder(AGENCY).count_after(0)
    store.close()
    source.close()
    return store_url, source_url, events


def final_rows(source_url: str) -> dict[str, tuple]:
    """Each table's schema and rows as they are at the source."""
    reader = adapters.open_reader(source_url)
    try:
        return {t: (reader.table_schema(t), [tuple(r.values()) for r in reader.rows(t)]) for t in TABLES}
    finally:
        reader.close()


def bulk_load_sqlite(path: Path, tables: dict[str, tuple]) -> float:
    from adapters.sqlite.dialect import create_sql  # the same DDL replay uses

    started = time.perf_counter()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for schema, rows in tables.values():
        db.execute(create_sql(schema))
        db.executemany(f'INSERT INTO "{schema.name}" VALUES ({",".join("?" * len(schema.columns))})', rows)
    db.execute("COMMIT")
    db.close()
    return time.perf_counter() - started


def bulk_load_postgres(url: str, tables: dict[str, tuple]) -> float:
    import psycopg

    from exchange.store.postgres import connection_settings

    started = time.perf_counter()
    with psycopg.connect(**connection_settings(url)) as conn:
        for schema, rows in tables.values():
            columns = ", ".join(f'"{c.name}" {_pg_type(c.type)}' for c in schema.columns)
            conn.execute(f'CREATE TABLE "{schema.name}" ({columns}, PRIMARY KEY ("{schema.primary_key[0]}"))')
            with conn.cursor().copy(f'COPY "{schema.name}" FROM STDIN') as copy:
                for row in rows:
                    copy.write_row(row)
    return time.perf_counter() - started


def _pg_type(declared: str) -> str:
    return {"INTEGER": "bigint", "REAL": "double precision", "BLOB": "bytea"}.get(declared.upper(), "text")


def fresh_postgres_db(url: str) -> str:
    import psycopg

    from exchange.store.postgres import connection_settings

    name = f"bench_{uuid.uuid4().hex[:8]}"
    settings = {**connection_settings(url), "dbname": "postgres"}
    with psycopg.connect(**settings, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    return url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=60000)
    parser.add_argument("--changes", type=int, default=60000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2, help="processes of the replay in parts")
    parser.add_argument("--postgres", help="postgresql://USER@HOST:PORT/DB of a server to create scratch databases on")
    add_json_option(parser)
    args = parser.parse_args()
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        directory = Path(tmp)
        store_url, source_url, events = build_store(directory, args.rows, args.changes)
        tables = final_rows(source_url)
        rows = sum(len(r) for _, r in tables.values())
        print(f"history: {events} events; final state: {rows} rows in {len(tables)} tables")
        targets = [("sqlite", lambda i: f"sqlite:///{directory / f'replay{i}.db'}",
                    lambda i: bulk_load_sqlite(directory / f"bulk{i}.db", tables))]
        if args.postgres:
            targets.append(("postgresql", lambda i: fresh_postgres_db(args.postgres),
                            lambda i: bulk_load_postgres(fresh_postgres_db(args.postgres), tables)))
        for name, replay_target, bulk in targets:
            replay_times, parts_times, bulk_times = [], [], []
            for i in range(args.repeat):
                target, in_parts = replay_target(2 * i), replay_target(2 * i + 1)
                started = time.perf_counter()
                replay(store_url, AGENCY, target, progress=False)
                replay_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                replay_in_parts(store_url, AGENCY, in_parts, jobs=args.jobs, progress=False)
                parts_times.append(time.perf_counter() - started)
                bulk_times.append(bulk(i))
                if i == 0:
                    for replayed in (target, in_parts):
                        assert verify(source_url, replayed, tables=TABLES).equal, f"replay into {name} differs"
            r, p, b = (statistics.median(t) for t in (replay_times, parts_times, bulk_times))
            print(f"{name:>10}: replay {r:6.2f}s = {events / r:8.0f} events/s ({rows / r:8.0f} final rows/s); "
                  f"in {args.jobs} jobs {p:6.2f}s ({rows / p:8.0f} final rows/s); "
                  f"bulk load {b:6.2f}s = {rows / b:8.0f} rows/s; bulk/replay time ratio {b / r:.2f}, "
                  f"in {args.jobs} jobs {b / p:.2f} (median of {args.repeat})")
            figures.update({f"{name}_replay_rows_per_s": rows / r, f"{name}_replay_events_per_s": events / r,
                            f"{name}_replay_jobs_rows_per_s": rows / p, f"{name}_bulk_rows_per_s": rows / b,
                            "jobs": args.jobs})
        save(args, figures)


if __name__ == "__main__":
    main()
