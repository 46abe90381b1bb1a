"""Capture rate of the node: source changes -> events in a SQLite node store.

Reads the sample agency's change stream (a snapshot of N rows, then M mixed
changes) from its SQLite source once, into memory, then times only
``Capture.step`` turning those changes into events in a fresh node store,
--repeat times, and prints changes/s per run and the median.  With
--profile FILE it also writes a cProfile of one more run.

    .venv/bin/python bench/capture_rate.py [--rows N] [--changes M] [--repeat R] [--profile FILE] [--json PATH]
"""

from __future__ import annotations

import argparse
import cProfile
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from figures import add_json_option, save  # noqa: E402

from adapters.sqlite.source import SQLiteSource  # noqa: E402
from exchange.contracts import changes as ch  # noqa: E402
from exchange.demos.sample import TABLES, SampleAgency  # noqa: E402
from exchange.store import open_store  # noqa: E402
from node.capture import Capture  # noqa: E402

AGENCY = "91310000MB2F31887X"
BATCH = 2000


class Recorded:
    """A capture source replaying batches read before (no source work while timed)."""

    def __init__(self, schemas: dict[str, ch.TableSchema], batches: list[list[ch.Change]]):
        self._schemas = schemas
        ends = [ch.Position(0)] + [b[-1].position for b in batches]
        self._after = dict(zip(ends, batches))  # capture asks for what follows each batch it stored

    def schemas(self) -> dict[str, ch.TableSchema]:
        return self._schemas

    def read(self, after: ch.Position, limit: int) -> list[ch.Change]:
        return self._after.get(after, [])

    def acknowledge(self, position: ch.Position) -> None:
        pass


def record(directory: Path, rows: int, changes: int) -> Recorded:
    """The sample agency's change stream, read in capture-sized batches."""
    agency = SampleAgency(str(directory / "agency.db"))
    agency.create(persons=rows // 2, legal_persons=rows // 4, licences=rows - rows // 2 - rows // 4)
    source = SQLiteSource(f"sqlite:///{agency.path}", TABLES, snapshot_chunk=5000)
    source.prepare()
    agency.run(changes, per_transaction=100)
    batches, after = [], ch.Position(0)
    while batch := source.read(after, BATCH):
        batches.append(batch)
        after = batch[-1].position
    schemas = source.schemas()
    source.close()
    return Recorded(schemas, batches)


def one_run(directory: Path, source: Recorded, run: int) -> tuple[int, float]:
    store = open_store(f"sqlite:///{directory / f'node-{run}.db'}")
    capture = Capture(AGENCY, source, store.node_recorder(AGENCY), batch_size=BATCH)
    captured = 0
    started = time.perf_counter()
    while n := capture.step():
        captured += n
    seconds = time.perf_counter() - started
    store.close()
    return captured, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile")
    add_json_option(parser)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-capture-") as tmp:
        source = record(Path(tmp), args.rows, args.changes)
        rates = []
        for run in range(args.repeat):
            captured, seconds = one_run(Path(tmp), source, run)
            rates.append(captured / seconds)
            print(f"run {run + 1}: {captured} changes in {seconds:.2f} s, {captured / seconds:.0f} changes/s")
        print(f"median {statistics.median(rates):.0f} changes/s")
        save(args, {"capture_per_s": statistics.median(rates), "runs": args.repeat})
        if args.profile:
            cProfile.runctx("one_run(Path(tmp), source, args.repeat)", globals(), locals(), args.profile)


if __name__ == "__main__":
    main()
