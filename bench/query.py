"""Lookup and browse (Art. 16): key lookups and filtered pages on a large resource, through real gRPC.

Stores N created events of one provider resource in a hub store (SQLite
file), folds them into the current-state table with the hub's follower,
approves a consumer for two of four items and a row filter matching half
of the rows, and serves the Query and Exchange services in process on
loopback.  Then it times, as the consumer:

- key lookups of random records (``Query.Find`` with a key): p50/p95/p99;
- browse pages of 100 rows with a filter (``Query.Find`` with where);
- the floor: a gRPC health check to the same server (an empty call);
- what a consumer had to do before: stream the whole resource (Subscribe).

    .venv/bin/python bench/query.py [N] [LOOKUPS]   (default 1000000 rows, 2000 lookups)
"""

from __future__ import annotations

import json
import random
import socket
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "unit"))

from test_sharing import CONSUMER, PROVIDER  # noqa: E402
from test_sharing_stream import Hub  # noqa: E402

from exchange.contracts.events import RecordCreated  # noqa: E402
from hub.sharing.current import CurrentState, Follower  # noqa: E402
from hub.sharing.query import QueryServicer  # noqa: E402
from protos.exchange.v1 import query_pb2 as qpb  # noqa: E402
from protos.exchange.v1 import query_pb2_grpc as qpb_grpc  # noqa: E402

DISTRICTS = ["黄浦区", "徐汇区", "长宁区", "静安区"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": round(at(0.50), 3), "p95_ms": round(at(0.95), 3), "p99_ms": round(at(0.99), 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


def timed(call, count: int) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        call(i)
        samples.append(time.perf_counter() - started)
    return samples


def main(n: int, lookups: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-query-") as tmp:
        hub = Hub(Path(tmp), free_port())
        try:
            started = time.perf_counter()
            hub.publish(hub.schema("licences"))
            for start in range(0, n, 5000):
                hub.publish(*[hub.event(RecordCreated, "licences", k, row={
                    "id": k, "name": f"持证人{k}", "born": f"19{k % 100:02d}", "district": DISTRICTS[k % 4]})
                    for k in range(start, min(start + 5000, n))])
            stored = time.perf_counter() - started
            current = CurrentState(hub.store)
            hub.ledger.current = current
            started = time.perf_counter()
            Follower(current, hub.ingest).catch_up()
            folded = time.perf_counter() - started
            asked = hub.ledger.request(CONSUMER, PROVIDER, "licences", scope="two districts", purpose="permits",
                                       items=["name", "district"], rows="district IN ('黄浦区', '长宁区')")
            hub.ledger.approve(str(asked.id), PROVIDER)

            executor = ThreadPoolExecutor(max_workers=4)
            server = grpc.server(executor)
            qpb_grpc.add_QueryServicer_to_server(QueryServicer(hub.ledger, current), server)
            health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
            port = free_port()
            server.add_insecure_port(f"127.0.0.1:{port}")
            server.start()
            channel = grpc.insecure_channel(f"127.0.0.1:{port}")
            stub, probe = qpb_grpc.QueryStub(channel), health_pb2_grpc.HealthStub(channel)
            rng = random.Random(2016)
            keys = [rng.randrange(n) for _ in range(lookups)]

            def lookup(i: int) -> None:
                page = stub.Find(qpb.QueryRequest(agency=CONSUMER, provider=PROVIDER, resource="licences",
                                                  key=[qpb.KeyPart(item="id", value=str(keys[i]))]))
                assert len(page.rows) == (1 if keys[i] % 2 == 0 else 0), (keys[i], page)  # districts 0, 2 in scope

            def browse(i: int) -> None:
                page = stub.Find(qpb.QueryRequest(agency=CONSUMER, provider=PROVIDER, resource="licences",
                                                  where="district = '长宁区'", page_size=100,
                                                  page_token=tokens[-1]))
                tokens.append(page.next_page_token)

            timed(lookup, min(200, lookups))  # warm the caches and the channel
            lookup_times = timed(lookup, lookups)
            tokens = [""]
            browse_times = timed(browse, max(50, lookups // 20))
            floor = timed(lambda i: probe.Check(health_pb2.HealthCheckRequest()), lookups)

            started = time.perf_counter()
            stream = hub.subscribe("licences")
            head, received = hub.ingest.hub_position(PROVIDER), 0
            for batch in stream:
                received += len(batch.events)
                if batch.reached >= head:
                    break
            stream.cancel()
            replicate = time.perf_counter() - started
            channel.close()
            server.stop(None).wait(10)
            executor.shutdown(wait=True)

            key = percentiles(lookup_times)
            print(json.dumps({
                "rows": n, "lookups": lookups, "store": "sqlite",
                "store_events_s": round(stored, 1), "fold_rows_per_s": round(n / folded),
                "key_lookup": key, "browse_page_100": percentiles(browse_times),
                "grpc_floor": percentiles(floor),
                "replicate_whole_resource_s": round(replicate, 1), "replicated_events": received,
                "lookup_p99_over_floor_p99": round(key["p99_ms"] / percentiles(floor)["p99_ms"], 1),
                "replicate_over_lookup_p99": round(replicate * 1000 / key["p99_ms"]),
                "target_p99_ms": 20, "met": key["p99_ms"] <= 20,
            }, ensure_ascii=False))
        finally:
            hub.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000, int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
