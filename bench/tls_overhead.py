"""What mutual TLS and the per-batch identity checks cost the hub's ingest.

Publishes the same events (500 per batch, ~500-byte states, windowed like a
node) to a fresh hub process over plain gRPC (``[listen] insecure``, the
baseline) and over mutual TLS with a revocation list, and reports events/s
for each and their ratio.  Several rounds, alternating, median reported.

    .venv/bin/python bench/tls_overhead.py [EVENTS] [ROUNDS]   (default: 100000 3)
"""

from __future__ import annotations

import json
import queue
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exchange import ca  # noqa: E402
from exchange.common.config import Config, from_values  # noqa: E402
from exchange.demos.pipeline import free_port, stop  # noqa: E402
from exchange.transport.rpc.channel import CLIENT_SETTINGS, open_channel  # noqa: E402
from exchange.transport.rpc.health import wait_serving  # noqa: E402
from protos.exchange.v1 import exchange_pb2 as pb  # noqa: E402
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc  # noqa: E402

AGENCY = "91310000MB2F31887X"
BATCH = 500
WINDOW = 4
STATE = json.dumps({"agency": AGENCY, "resource": "persons", "row": {"name": "x" * 400}}).encode()


def batches(events: int):
    record_ids = [uuid.uuid4() for _ in range(events // 10)]
    versions: dict = {}
    for start in range(0, events, BATCH):
        evs = []
        for n in range(start + 1, min(events, start + BATCH) + 1):
            record = record_ids[n % len(record_ids)]
            versions[record] = versions.get(record, 0) + 1
            evs.append(pb.Event(notification_id=n, originator_id=str(record), originator_version=versions[record],
                                topic="exchange.record:Created", state=STATE))
        yield pb.EventBatch(after=start, events=evs)


def publish_all(address: str, client_cfg: Config, events: int) -> float:
    """Seconds to publish ``events`` with at most WINDOW batches unacknowledged."""
    prepared = list(batches(events))
    requests: queue.Queue = queue.Queue()
    with open_channel(address, client_cfg) as channel:
        requests.put(pb.PublishRequest(hello=pb.Hello(agency=AGENCY)))
        responses = pb_grpc.ExchangeStub(channel).Publish(iter(requests.get, None))
        next(responses)
        started = time.perf_counter()
        sent = acknowledged = 0
        while acknowledged < len(prepared):
            while sent < len(prepared) and sent - acknowledged < WINDOW:
                requests.put(pb.PublishRequest(batch=prepared[sent]))
                sent += 1
            next(responses)
            acknowledged += 1
        seconds = time.perf_counter() - started
        requests.put(None)
        responses.cancel()
    return seconds


def one_round(directory: Path, secure: bool, events: int, certs: dict) -> float:
    address = f"127.0.0.1:{free_port()}"
    name = "tls" if secure else "plain"
    hub_toml = directory / f"hub-{name}.toml"
    listen = f'[listen]\naddress = "{address}"\n' + ("" if secure else "insecure = true\n")
    tls_section = "".join(f'{k} = "{v}"\n' for k, v in certs["hub"].items()) if secure else ""
    hub_toml.write_text(f'[store]\nurl = "sqlite:///{directory}/hub-{name}-{uuid.uuid4().hex}.db"\n{listen}'
                        f"[metrics]\nport = 0\n" + (f"[tls]\n{tls_section}" if secure else ""))
    hub = subprocess.Popen([sys.executable, "-m", "exchange", "hub", "run", "--config", str(hub_toml)],
                           stdout=subprocess.DEVNULL, stderr=open(directory / f"hub-{name}.log", "ab"))
    tls = {f"tls.{k}": v for k, v in certs["node"].items() if k in ("ca", "cert", "key")}
    client_cfg = from_values(CLIENT_SETTINGS, tls if secure else {"hub.insecure": True})
    try:
        wait_serving(address, cfg=client_cfg if secure else None)
        return events / publish_all(address, client_cfg, events)
    finally:
        stop(hub)


def main(events: int = 100_000, rounds: int = 3) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as tmp:
        directory = Path(tmp)
        ca.init(directory / "ca")
        hub = ca.issue(directory / "ca", "hub", "hub")
        node = ca.issue(directory / "ca", "agency", AGENCY)
        certs = {"hub": {"ca": hub["ca"], "cert": hub["cert"], "key": hub["key"], "crl": str(directory / "ca" / "crl.pem")},
                 "node": {"ca": node["ca"], "cert": node["cert"], "key": node["key"]}}
        rates: dict[str, list[float]] = {"plain": [], "tls": []}
        for _ in range(rounds):
            for secure in (False, True):
                rates["tls" if secure else "plain"].append(one_round(directory, secure, events, certs))
        plain, secure = statistics.median(rates["plain"]), statistics.median(rates["tls"])
        print(json.dumps({"events": events, "rounds": rounds, "plain_events_per_second": round(plain),
                          "tls_events_per_second": round(secure), "tls_to_plain": round(secure / plain, 3),
                          "all": {k: [round(r) for r in v] for k, v in rates.items()}}))


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:]))
