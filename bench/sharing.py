"""What entitlement checks and projection cost a subscriber, side by side with the provider's own subscription.

Stores N events of a provider (three resources, interleaved) in a hub store,
serves the real Exchange service in process on loopback, and reads the log
to its end three ways in the same run: the provider's whole log (the
baseline, no projection), a consumer's conditional resource projected to
two of four items (a third of the events), and a consumer's unconditional
resource (every item, a third of the events).

    .venv/bin/python bench/sharing.py [N]   (default 60000, on a temp SQLite file)
"""

from __future__ import annotations

import json
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from test_sharing import CONSUMER, PROVIDER  # noqa: E402
from test_sharing_stream import Hub, approve  # noqa: E402

from protos.exchange.v1 import exchange_pb2 as pb  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_to_end(stream, head: int) -> tuple[int, float]:
    """(events received, seconds) until a batch reaches hub id ``head``."""
    started, events = time.perf_counter(), 0
    for batch in stream:
        events += len(batch.events)
        reached = batch.reached or (batch.events[-1].notification_id if batch.events else 0)
        if reached >= head:
            break
    stream.cancel()
    return events, time.perf_counter() - started


def main(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-sharing-") as tmp:
        hub = Hub(Path(tmp), free_port())
        try:
            hub.publish(hub.schema("licences"), hub.schema("open"), hub.schema("secret"))
            for start in range(0, n // 3, 1000):
                keys = range(start, min(start + 1000, n // 3))
                hub.publish(*[e for k in keys for e in (hub.rows("licences", [k]) + hub.rows("open", [k])
                                                        + hub.rows("secret", [k]))])
            approve(hub, items=("name", "born"))
            head = hub.ingest.hub_position(PROVIDER)
            runs = {
                "provider whole log": hub.stub.Subscribe(pb.SubscribeRequest(agency=PROVIDER, max_batch=1000)),
                "consumer conditional, 2 of 4 items": hub.subscribe("licences", max_batch=1000),
                "consumer unconditional, all items": hub.subscribe("open", consumer=CONSUMER, max_batch=1000),
            }
            results = {}
            for name, stream in runs.items():
                events, seconds = read_to_end(stream, head)
                results[name] = {"events": events, "seconds": round(seconds, 2),
                                 "log_events_per_second": round(head / seconds),
                                 "delivered_per_second": round(events / seconds)}
            print(json.dumps({"log_events": head, "runs": results}, indent=2))
        finally:
            hub.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 60000)
