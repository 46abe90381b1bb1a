"""Re-snapshot rate of PostgreSQL capture, against a plain COPY of the same table.

On a private cluster started here (fsync on), with a table of N rows
(id, name, score, note) captured by a node (its capture loop in this
process, a SQLite node store):

1. the initial snapshot: rows/s (every row becomes an event);
2. a re-snapshot pass of the unchanged table: rows/s from the request to
   SNAPSHOT_END stored (no row differs: no event);
3. a re-snapshot pass after 1% of the rows were changed behind capture's
   back (the slot moved past the changes): rows/s and events made;
4. the same as 2 while a writer updates and inserts rows unthrottled:
   rows/s of the pass and writes/s of the writer;
5. baseline: COPY (SELECT ... ORDER BY id) TO STDOUT of the table: rows/s.

Prints the figures and the ratios pass / COPY and pass / initial snapshot.
COPY is the ceiling of reading the table; the pass also decodes each row and
compares it with what the node holds (record id, image digest), which is
most of its time.  One run (200,000 rows, 2 busy cores): initial snapshot
10,000 rows/s; pass of the unchanged table 25,900 rows/s (no event); 1%
differing 21,900 rows/s (2,000 events); during writes 14,200 rows/s; COPY
1,410,000 rows/s.

    .venv/bin/python bench/resnapshot.py [--rows 200000] [--chunk 10000]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import psycopg2  # noqa: E402
from support.postgres import start_cluster  # noqa: E402

from adapters.postgres.source import PostgresSource  # noqa: E402
from exchange.store import EventStore  # noqa: E402
from node.capture import Capture  # noqa: E402

AGENCY = "91310000MB2F31887X"
REAL = {"fsync": "on", "full_page_writes": "on", "synchronous_commit": "on"}


def run_pass(url: str, capture: Capture, recorder, number: int) -> tuple[float, int]:
    """Request a pass, capture until it is done; (seconds, events stored)."""
    before = recorder.max_notification_id() or 0
    started = time.perf_counter()
    requester = PostgresSource(url, ["people"])
    requester.request_resnapshot(["people"])
    while True:
        consumed = capture.step()
        found = requester.resnapshot_progress(["people"])["people"]
        if not consumed and found.number >= number and found.done:
            break
    elapsed = time.perf_counter() - started
    requester.close()
    return elapsed, (recorder.max_notification_id() or 0) - before


def writer(url: str, stop: threading.Event, counts: list[int]) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    with conn.cursor() as cur:
        i = 0
        while not stop.is_set():
            cur.execute("UPDATE people SET score = score + 1 WHERE id = %s", (1 + (i * 7919) % 100000,))
            cur.execute("INSERT INTO people VALUES (%s, 'w', 0, NULL)", (10_000_000 + i,))
            i += 1
    counts.append(2 * i)
    conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=10_000, help="snapshot_chunk: rows per chunk")
    args = parser.parse_args()
    cluster = start_cluster(**REAL)
    try:
        cluster.create_database("bench")
        url = cluster.url("bench")
        cluster.execute("CREATE TABLE people (id int PRIMARY KEY, name text, score numeric, note text); "
                        "INSERT INTO people SELECT g, 'person ' || g, g * 1.5, md5(g::text) "
                        "FROM generate_series(1, %s) g", (args.rows,), dbname="bench")
        cluster.execute("VACUUM ANALYZE people", dbname="bench")
        with tempfile.TemporaryDirectory() as directory:
            store = EventStore(f"sqlite:///{Path(directory) / 'node.db'}")
            recorder = store.node_recorder(AGENCY)
            source = PostgresSource(url, ["people"], snapshot_chunk=args.chunk)
            source.prepare()
            capture = Capture(AGENCY, source, recorder, batch_size=args.chunk)
            started = time.perf_counter()
            while capture.step():
                pass
            initial = time.perf_counter() - started
            report(f"initial snapshot: {args.rows} rows", initial, args.rows, recorder.count_after(0))

            unchanged, events = run_pass(url, capture, recorder, 1)
            report("re-snapshot, nothing differs", unchanged, args.rows, events)

            source.close()
            cluster.execute("UPDATE people SET name = name || ' (changed)' WHERE id % 100 = 0", dbname="bench")
            while cluster.execute("SELECT 1 FROM pg_replication_slots WHERE active", dbname="bench"):
                time.sleep(0.1)  # the walsender exits after its client
            cluster.execute("SELECT pg_replication_slot_advance(slot_name, pg_current_wal_lsn()) "
                            "FROM pg_replication_slots WHERE database = 'bench'", dbname="bench")
            source = PostgresSource(url, ["people"], snapshot_chunk=args.chunk)
            capture = Capture(AGENCY, source, recorder, batch_size=args.chunk)
            repaired, events = run_pass(url, capture, recorder, 2)
            report("re-snapshot, 1% differs", repaired, args.rows, events)

            stop, counts = threading.Event(), []
            thread = threading.Thread(target=writer, args=(url, stop, counts))
            thread.start()
            busy, events = run_pass(url, capture, recorder, 3)
            stop.set()
            thread.join()
            report("re-snapshot during writes", busy, args.rows, events)
            print(f"  writer: {counts[0] / busy:,.0f} row writes/s during the pass")
            source.close()
            store.close()

        conn = psycopg2.connect(url)
        started = time.perf_counter()
        with conn.cursor() as cur:
            cur.copy_expert("COPY (SELECT * FROM people ORDER BY id) TO STDOUT", io.StringIO())
        copy = time.perf_counter() - started
        conn.close()
        report("baseline: COPY of the table", copy, args.rows, 0)
        print(f"ratio pass / COPY (rows/s): unchanged {copy / unchanged:.2f}, 1% differs {copy / repaired:.2f}, "
              f"during writes {copy / busy:.2f}")
        print(f"ratio pass / initial snapshot (rows/s): unchanged {initial / unchanged:.2f}, "
              f"1% differs {initial / repaired:.2f}, during writes {initial / busy:.2f}")
    finally:
        cluster.stop()


def report(what: str, seconds: float, rows: int, events: int) -> None:
    print(f"{what}: {seconds:.2f} s, {rows / seconds:,.0f} rows/s, {events} events")


if __name__ == "__main__":
    main()
