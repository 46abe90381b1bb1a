"""Hub and node processes for the end-to-end benchmarks (postgres_e2e.py, sysbench_e2e.py).

``write_configs`` writes a hub's and a node's TOML in a directory (SQLite
stores, plain gRPC on loopback); ``peak_rss_mib`` reads a process's peak
memory; ``follow_probes`` subscribes to the hub and reports each created
record of a table as it arrives.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable

import grpc

from exchange.contracts.events import RecordCreated, make_mapper
from exchange.demos.pipeline import free_port
from exchange.transport.wire import from_wire
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

AGENCY = "91310000MB2F31887X"


def write_configs(directory: Path, source_url: str, tables: list[str]) -> tuple[Path, Path, str]:
    """``hub.toml`` and ``node.toml`` in ``directory``; their paths and the hub's address."""
    hub_address = f"127.0.0.1:{free_port()}"
    hub_toml = directory / "hub.toml"
    hub_toml.write_text(f'[store]\nurl = "sqlite:///{directory}/hub.db"\n[listen]\naddress = "{hub_address}"\n'
                        f"insecure = true\n[metrics]\nport = {free_port()}\n")
    node_toml = directory / "node.toml"
    node_toml.write_text(f'agency = "{AGENCY}"\n[source]\nurl = "{source_url}"\ntables = {json.dumps(tables)}\n'
                         f'poll_interval = 0.02\n[store]\nurl = "sqlite:///{directory}/node.db"\n'
                         f'[hub]\naddress = "{hub_address}"\nreconnect_max = 0.2\ninsecure = true\n'
                         f"[metrics]\nport = {free_port()}\n")
    return hub_toml, node_toml, hub_address


def hub_events(hub_address: str) -> int:
    """How many events of the agency the hub holds."""
    with grpc.insecure_channel(hub_address) as channel:
        return pb_grpc.ExchangeStub(channel).GetPosition(pb.PositionRequest(agency=AGENCY)).hub_position


def peak_rss_mib(pid: int) -> float:
    """A running process's peak resident memory (VmHWM), MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def follow_probes(hub_address: str, table: str, seen: Callable[[RecordCreated, float], None],
                  stopping: threading.Event) -> threading.Thread:
    """A started thread calling ``seen(event, arrival time.time())`` for each record of ``table``
    created at the hub from now on, until ``stopping`` is set (checked at each batch)."""
    after = hub_events(hub_address)
    mapper = make_mapper()

    def subscribe() -> None:
        with grpc.insecure_channel(hub_address) as channel:
            stream = pb_grpc.ExchangeStub(channel).Subscribe(pb.SubscribeRequest(agency=AGENCY, after=after))
            try:
                for batch in stream:
                    arrived = time.time()
                    for e in batch.events:
                        event = mapper.to_domain_event(from_wire(e))
                        if isinstance(event, RecordCreated) and event.resource.rpartition(".")[2] == table:
                            seen(event, arrived)
                    if stopping.is_set():
                        stream.cancel()
                        return
            except grpc.RpcError:
                if not stopping.is_set():
                    raise

    subscriber = threading.Thread(target=subscribe, daemon=True)
    subscriber.start()
    return subscriber
