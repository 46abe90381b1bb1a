"""How fast the node turns a truncate into deletes, and in how much memory.

Captures a file-drop table of N rows into a fresh node store (SQLite, or
PostgreSQL with --store URL), then drops an empty export of it (a
TRUNCATE) and times the capture of the truncate: one TableTruncated event
and N deletes, paged from the record-state table.  Prints deletes/s and the
process's peak RSS before and after the truncate.

    .venv/bin/python bench/truncate_sweep.py [--rows N] [--batch B] [--store URL]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import adapters  # noqa: E402
from exchange.store import EventStore  # noqa: E402
from node.capture import Capture  # noqa: E402

AGENCY = "91310000MB2F31887X"


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(rows: int, batch: int, store_url: str | None) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        drops = Path(tmp) / "drops"
        drops.mkdir()
        with open(drops / "persons.csv", "w", encoding="utf-8") as f:
            f.write("id,name,city\n")
            f.writelines(f"{i},person {i},city {i % 97}\n" for i in range(rows))
        store = EventStore(store_url or f"sqlite:///{tmp}/node.db")
        source = adapters.open_source(f"files://{drops}", ["persons"], {"persons": ["id"]}, settle_seconds=0)
        try:
            capture = Capture(AGENCY, source, store.node_recorder(AGENCY), batch_size=batch)
            started = time.perf_counter()
            while capture.step():
                pass
            loaded = time.perf_counter() - started
            before = peak_mib()
            (drops / "persons-empty.csv").write_text("id,name,city\n", encoding="utf-8")
            started = time.perf_counter()
            while capture.step():
                pass
            swept = time.perf_counter() - started
        finally:
            source.close()
            store.close()
    print(f"{rows} rows captured in {loaded:.1f} s ({rows / loaded:,.0f}/s); truncate: {rows} deletes in "
          f"{swept:.1f} s ({rows / swept:,.0f} deletes/s); peak RSS {before:.0f} MiB before the truncate, "
          f"{peak_mib():.0f} MiB after")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=2000, help="capture batch size (and sweep page)")
    parser.add_argument("--store", help="a postgresql:// node store URL (default: SQLite in a temp dir)")
    args = parser.parse_args()
    run(args.rows, args.batch, args.store)


if __name__ == "__main__":
    main()
