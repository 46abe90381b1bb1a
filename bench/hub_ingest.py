"""Hub ingest rate: Ingest.ingest on a PostgreSQL store beside a plain COPY of the same rows.

One agency's published batches (record events as a node makes them, 200-400
bytes of state: creates of ``--records`` records, then updates of them; made
with the node's mapper and ``to_wire``, so with envelopes) are
built first, then fed to the hub's ``Ingest.ingest`` batch after batch, each
batch its own transaction as in the running hub.  Per batch size and repeat a
fresh database of a private PostgreSQL cluster with fsync on.  Figures:

    pg_ingest        hub ingest into PostgreSQL, events/s
    pg_ciphered      the same with the store sealed at rest (AES-GCM)
    pg_guarded       the same with the hub's not-shared guard (reads each event's resource from its state)
    pg_copy          baseline: per batch, one transaction with a binary COPY of the same rows
                     (notification_id, originator_id, version, topic, state; converted from the wire
                     beforehand) into a bare table (no index, no key)
    pg_copy_indexed  the same into a table with the hub's keys (primary key and notification id index)
    sqlite_ingest    hub ingest into a SQLite store, for comparison
    ratio            pg_ingest / pg_copy

Medians of ``--repeats`` runs.  ``--profile`` prints a cProfile of one PostgreSQL ingest run.

    .venv/bin/python bench/hub_ingest.py [--events 100000] [--batches 1000,5000] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import psycopg  # noqa: E402
from eventsourcing.persistence import Notification  # noqa: E402
from postgres_e2e import REAL  # noqa: E402
from support.postgres import PostgresCluster, start_cluster  # noqa: E402

from exchange.contracts.events import RecordCreated, RecordUpdated, make_mapper  # noqa: E402
from exchange.store import open_store  # noqa: E402
from exchange.store.at_rest import StateCipher  # noqa: E402
from exchange.transport.wire import to_wire  # noqa: E402
from hub.ingest import Ingest  # noqa: E402
from hub.sharing.guard import NotSharedGuard  # noqa: E402
from protos.exchange.v1 import exchange_pb2 as pb  # noqa: E402

AGENCY = "91310000MA00000019"
COLUMNS = "notification_id, originator_id, originator_version, topic, state"


def make_batches(events: int, records: int, batch_size: int) -> list[pb.EventBatch]:
    """``events`` wire events of one agency cut into batches: creates of ``records`` records, then updates."""
    mapper = make_mapper()
    wire = []
    for i in range(1, events + 1):
        record, version = (i - 1) % records, (i - 1) // records + 1
        if version == 1:
            kind, fields = RecordCreated, {"row": {
                "id": record, "name": f"上海市第{record}食品有限公司", "status": "有效", "kind": "食品经营许可证",
                "licence_no": f"JY131010100{record:05d}", "issued": "2023-04-01", "expires": "2028-03-31"}}
        else:
            kind, fields = RecordUpdated, {"changed": {"status": ("有效", "暂停")[version % 2],
                                                       "expires": f"20{28 + version}-03-31"}}
        stored = mapper.to_stored_event(kind(
            originator_id=uuid.uuid5(uuid.NAMESPACE_OID, f"{AGENCY}/{record}"), originator_version=version,
            timestamp=datetime.now(timezone.utc), agency=AGENCY, resource="licences", key={"id": record},
            position=i, commit_time=datetime.now(timezone.utc).isoformat(), txid=str(1000 + i // 7),
            schema_version=1, event_schema_version=1, **fields))
        wire.append(Notification(id=i, originator_id=stored.originator_id, originator_version=version,
                                 topic=stored.topic, state=stored.state))
    return [to_wire(wire[start:start + batch_size], after=start, head=events) for start in range(0, events, batch_size)]


class NoTerms:
    """A catalog in which no resource is published as not shared."""

    def terms(self, agency: str, resource: str) -> None:
        return None


def ingest_rate(url: str, batches: list[pb.EventBatch], cipher: StateCipher | None = None,
                guarded: bool = False) -> float:
    """Events/s of Ingest.ingest storing ``batches`` into the store at ``url`` (its log created beforehand),
    with the hub's not-shared guard if ``guarded``."""
    store = open_store(url, cipher=cipher)
    try:
        ingest = Ingest(store)
        if guarded:
            ingest.guards.append(NotSharedGuard(NoTerms()))
        ingest.recorder(AGENCY)
        began = time.perf_counter()
        for batch in batches:
            ingest.ingest(AGENCY, batch)
        elapsed = time.perf_counter() - began
        assert ingest.position(AGENCY) == batches[-1].events[-1].notification_id
        return sum(len(b.events) for b in batches) / elapsed
    finally:
        store.close()


def copy_rate(url: str, batches: list[pb.EventBatch], indexed: bool) -> float:
    """Events/s of a binary COPY of the batches' rows (made beforehand), one transaction per batch,
    into a bare table (or one with the hub's keys)."""
    rows = [[(e.notification_id, uuid.UUID(e.originator_id), e.originator_version, e.topic, e.state)
             for e in b.events] for b in batches]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE bare (notification_id bigint, originator_id uuid, originator_version bigint, "
                     "topic text, state bytea)")
        if indexed:
            conn.execute("ALTER TABLE bare ADD PRIMARY KEY (originator_id, originator_version)")
            conn.execute("CREATE UNIQUE INDEX ON bare (notification_id)")
        began = time.perf_counter()
        for batch in rows:
            with conn.transaction(), conn.cursor().copy(f"COPY bare ({COLUMNS}) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int8", "uuid", "int8", "text", "bytea"])
                for row in batch:
                    copy.write_row(row)
        elapsed = time.perf_counter() - began
    return sum(len(b) for b in rows) / elapsed


def median_of(repeats: int, run: Callable[[int], float]) -> float:
    return statistics.median(run(i) for i in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--batches", default="1000,5000", help="batch sizes, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one PostgreSQL ingest run")
    parser.add_argument("--json", type=Path, help="write the figures to this file as a JSON object")
    args = parser.parse_args()

    cluster: PostgresCluster = start_cluster(**REAL)
    figures: dict[str, float] = {}
    counter = iter(range(10**6))

    def fresh() -> str:
        return cluster.url(cluster.create_database(f"bench{next(counter)}"))

    try:
        cipher = StateCipher(b"k" * 32)
        for size in (int(s) for s in args.batches.split(",")):
            batches = make_batches(args.events, args.records, size)
            if args.profile:
                profiler = cProfile.Profile()
                profiler.enable()
                ingest_rate(fresh(), batches)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(35)
                pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            with tempfile.TemporaryDirectory(prefix="bench-hub-ingest-") as tmp:
                rates = {
                    "pg_ingest": median_of(args.repeats, lambda i: ingest_rate(fresh(), batches)),
                    "pg_ciphered": median_of(args.repeats, lambda i: ingest_rate(fresh(), batches, cipher)),
                    "pg_guarded": median_of(args.repeats, lambda i: ingest_rate(fresh(), batches, guarded=True)),
                    "pg_copy": median_of(args.repeats, lambda i: copy_rate(fresh(), batches, indexed=False)),
                    "pg_copy_indexed": median_of(args.repeats, lambda i: copy_rate(fresh(), batches, indexed=True)),
                    "sqlite_ingest": median_of(args.repeats, lambda i: ingest_rate(
                        f"sqlite:///{tmp}/hub{i}.db", batches)),
                }
            rates["ratio"] = rates["pg_ingest"] / rates["pg_copy"]
            size_bytes = sum(len(e.state) for b in batches for e in b.events) / args.events
            print(f"\nbatches of {size} events ({args.events} events, mean state {size_bytes:.0f} bytes), "
                  f"medians of {args.repeats}:")
            for name, value in rates.items():
                print(f"  {name:16} {value:12.2f}" if name == "ratio" else f"  {name:16} {value:12,.0f} events/s")
                figures[f"{name}_{size}"] = round(value, 3)
    finally:
        cluster.stop()
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
