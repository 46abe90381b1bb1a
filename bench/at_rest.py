"""Cost of encryption at rest: store writes and reads with and without a cipher key.

    .venv/bin/python bench/at_rest.py [--events N]

Writes N sample-sized record events into a fresh SQLite store in batches of
2,000 (one transaction each, as capture does), then reads them all back in
batches of 5,000 (as the shipper and replay do), once plaintext and once
encrypted, side by side in the same run; prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from eventsourcing.persistence import StoredEvent  # noqa: E402

from exchange.store import EventStore  # noqa: E402
from exchange.store.at_rest import StateCipher  # noqa: E402

AGENCY = "91310000MB2F31887X"
STATE = json.dumps({"agency": AGENCY, "resource": "persons", "key": {"id_number": "310101199001011234"},
                    "row": {"id_number": "310101199001011234", "name": "王建华", "gender": "男",
                            "birth_date": "1990-01-01", "address": "上海市浦东新区世纪大道100号", "phone": "13800000000"},
                    "position": 1, "commit_time": None, "txid": "", "schema_version": 1,
                    "event_schema_version": 1}, ensure_ascii=False).encode()


def run(directory: Path, events: int, cipher: StateCipher | None) -> dict[str, float]:
    store = EventStore(f"sqlite:///{directory / ('enc' if cipher else 'plain')}.db", cipher=cipher)
    recorder = store.recorder(AGENCY)
    started = time.perf_counter()
    for first in range(0, events, 2000):
        recorder.insert_events([StoredEvent(originator_id=uuid.uuid4(), originator_version=1,
                                            topic="exchange.record:Created", state=STATE)
                                for _ in range(min(2000, events - first))])
    written = time.perf_counter() - started
    started, position, read = time.perf_counter(), 0, 0
    while batch := recorder.read(position, 5000):
        position, read = batch[-1].id, read + len(batch)
    elapsed = time.perf_counter() - started
    store.close()
    assert read == events
    return {"write_events_per_s": round(events / written), "read_events_per_s": round(events / elapsed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        plain = run(Path(directory), args.events, None)
        encrypted = run(Path(directory), args.events, StateCipher(os.urandom(32)))
    print(json.dumps({"events": args.events, "state_bytes": len(STATE), "plaintext": plain, "encrypted": encrypted}))


if __name__ == "__main__":
    main()
