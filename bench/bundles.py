"""Offline bundles against plain JSON lines of the same events.

Builds a node event store from the sample agency (N initial rows, then M
mixed changes: about N + M events), then, in each of --repeat runs:

- export: ``exchange node export`` (node/bundles.py) of every event into
  signed, zstd-compressed bundles of --max-events events, timed;
- read: ``read_bundle`` (verify signature and hash, decompress, decode) of
  every bundle, timed;
- import: ``exchange hub import`` (hub/bundle_import.py) of the bundles into
  a fresh hub store: verify, store through Ingest, move, acknowledge, timed;
- baseline: the same events read from the same store and written as plain
  JSON lines (one object per event, its state as JSON), fsynced, timed;
  then read back with ``json.loads`` line by line, timed.

Prints events/s (median of the runs) and bytes per event for each, and the
ratios bundle/JSON (a rate ratio above 1 is faster than JSON; a size ratio
below 1 is smaller).

    .venv/bin/python bench/bundles.py [--rows N] [--changes M] [--repeat R] [--max-events E]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from replay_rate import AGENCY, build_store  # noqa: E402

from exchange.common.config import from_values  # noqa: E402
from exchange.store import EventStore  # noqa: E402
from exchange.transport.offline.bundles import SUFFIX, generate_key, load_trusted_keys, read_bundle  # noqa: E402
from hub import config as hub_config  # noqa: E402
from hub.bundle_import import import_directory  # noqa: E402
from node import config as node_config  # noqa: E402
from node.bundles import export  # noqa: E402


def timed(action) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def bundle_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(SUFFIX))


def read_bundles(paths: list[Path], trusted: dict) -> int:
    return sum(len(read_bundle(path, trusted)[1].events) for path in paths)


def write_json_lines(store_url: str, path: Path, batch: int) -> int:
    """Every event of the store as one JSON object per line, fsynced; the number written."""
    store = EventStore(store_url, create=False)
    count, position = 0, 0
    try:
        recorder = store.recorder(AGENCY)
        with open(path, "w", encoding="utf-8") as f:
            while notifications := recorder.read(position, batch):
                for n in notifications:
                    f.write(json.dumps({"id": n.id, "originator_id": str(n.originator_id),
                                        "originator_version": n.originator_version, "topic": n.topic,
                                        "state": json.loads(n.state)}, ensure_ascii=False) + "\n")
                count += len(notifications)
                position = notifications[-1].id
            f.flush()
            os.fsync(f.fileno())
    finally:
        store.close()
    return count


def read_json_lines(path: Path) -> int:
    with open(path, encoding="utf-8") as f:
        return sum(1 for line in f if json.loads(line))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50000)
    parser.add_argument("--changes", type=int, default=50000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--max-events", type=int, default=10000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-bundles-") as tmp:
        directory = Path(tmp)
        store_url, _, events = build_store(directory, args.rows, args.changes)
        key, public = directory / "node.pem", directory / f"{AGENCY}.pub"
        generate_key(key, public)
        trusted = load_trusted_keys({AGENCY: str(public)})
        node_cfg = from_values(node_config.SETTINGS, {"agency": AGENCY, "bundles.key": str(key), "store.url": store_url,
                                                      "source.url": "sqlite:///unused.db", "source.tables": ["unused"],
                                                      "hub.address": "127.0.0.1:1"})
        times: dict[str, list[float]] = {"export": [], "read": [], "import": [], "json write": [], "json read": []}
        sizes: dict[str, int] = {}
        for i in range(args.repeat):
            out = directory / f"bundles{i}"
            seconds, report = timed(lambda: export(node_cfg, out, max_events=args.max_events))
            assert report["events"] == events, report
            times["export"].append(seconds)
            paths = bundle_files(out)
            sizes["bundle"] = sum(p.stat().st_size for p in paths)
            seconds, count = timed(lambda: read_bundles(paths, trusted))
            assert count == events
            times["read"].append(seconds)
            hub_cfg = from_values(hub_config.SETTINGS, {"store.url": f"sqlite:///{directory / f'hub{i}.db'}",
                                                        "bundles.trusted_keys": {AGENCY: str(public)}})
            seconds, result = timed(lambda: import_directory(hub_cfg, out))
            assert sum(b["stored"] for b in result["imported"]) == events and not result["quarantined"], result
            times["import"].append(seconds)

            lines = directory / f"events{i}.jsonl"
            seconds, count = timed(lambda: write_json_lines(store_url, lines, args.max_events))
            assert count == events
            times["json write"].append(seconds)
            sizes["json"] = lines.stat().st_size
            seconds, count = timed(lambda: read_json_lines(lines))
            assert count == events
            times["json read"].append(seconds)

        rate = {name: events / statistics.median(values) for name, values in times.items()}
        print(f"{events} events, bundles of at most {args.max_events}; medians of {args.repeat} runs")
        for name in times:
            print(f"  {name:>10}: {rate[name]:9.0f} events/s")
        print(f"  size: bundles {sizes['bundle'] / events:6.1f} bytes/event, "
              f"raw JSON {sizes['json'] / events:6.1f} bytes/event, ratio {sizes['bundle'] / sizes['json']:.3f}")
        print(f"  ratios bundle/JSON: export/json write {rate['export'] / rate['json write']:.2f}, "
              f"read/json read {rate['read'] / rate['json read']:.2f}, "
              f"import/json read {rate['import'] / rate['json read']:.2f}")


if __name__ == "__main__":
    main()
