"""Recovery times for the runbook: a node rebuilt from the hub, a hub rebuilt
from a node, and a replay of the hub's copy, for a stated data size.

Builds a sample agency with N changes delivered to a hub (real processes),
then measures, on the same data:
- node restore: `exchange node restore` of a lost node store from the hub,
  until the restarted node is caught up;
- hub rebuild: a hub restarted on an empty store until the node has re-sent
  everything;
- replay: `exchange replay` of the hub's copy into a fresh SQLite database,
  followed by `exchange verify`.

    .venv/bin/python bench/recovery.py [CHANGES]     (default 100000)
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exchange.common.config import Config  # noqa: E402
from exchange.demos.pipeline import AGENCY, start, stop, write_configs  # noqa: E402
from exchange.demos.sample import TABLES, SampleAgency  # noqa: E402
from exchange.transport.rpc.health import http_answers, wait_serving  # noqa: E402
from node import config as node_config  # noqa: E402
from node.status import node_status  # noqa: E402

EXCHANGE = [sys.executable, "-m", "exchange"]


def wait_caught_up(cfg: Config, timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = node_status(cfg)
        if status["caught_up"] and status["hub_reachable"]:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(status)
        time.sleep(0.2)


def remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def main(changes: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-recovery-") as tmp:
        directory = Path(tmp)
        agency = SampleAgency(str(directory / "agency.db"))
        agency.create(persons=5000, legal_persons=2000, licences=3000)
        hub_toml, node_toml, hub_address = write_configs(directory)
        node_toml.write_text(node_toml.read_text().replace("[hub]\n", "[hub]\nreconnect_max = 0.2\n"))
        cfg = node_config.load(node_toml, environ={})
        hub = start("hub", hub_toml, directory / "hub.log")
        node = start("node", node_toml, directory / "node.log")
        wait_serving(hub_address)
        while not http_answers(f"http://127.0.0.1:{cfg.metrics.port}/metrics"):
            time.sleep(0.1)
        agency.run(changes, per_transaction=100)
        events = wait_caught_up(cfg)["events_stored"]
        size = sum(p.stat().st_size for p in directory.glob("hub-store.db*"))
        print(f"data: {events} events ({size / 2**20:.0f} MiB hub store), {len(TABLES)} tables")

        stop(node)
        remove(directory / "node-store.db")
        started = time.perf_counter()
        subprocess.run([*EXCHANGE, "node", "restore", "--config", str(node_toml)], check=True, capture_output=True)
        restored = time.perf_counter() - started
        node = start("node", node_toml, directory / "node.log")
        wait_caught_up(cfg)
        print(f"node restore from the hub: {restored:.1f}s to copy ({events / restored:.0f} events/s), "
              f"{time.perf_counter() - started:.1f}s until the restarted node is caught up; events lost: 0 by design")

        stop(hub)
        remove(directory / "hub-store.db")
        started = time.perf_counter()
        hub = start("hub", hub_toml, directory / "hub.log")
        wait_serving(hub_address)
        wait_caught_up(cfg)
        print(f"hub rebuild from the node: {time.perf_counter() - started:.1f}s until the hub holds all {events} "
              "events again; events lost: 0 by design")
        stop(node)
        stop(hub)

        started = time.perf_counter()
        result = subprocess.run([*EXCHANGE, "replay", "--store", f"sqlite:///{directory}/hub-store.db", "--agency",
                                 AGENCY, "--target", f"sqlite:///{directory}/replayed.db"],
                                check=True, capture_output=True, text=True)
        replayed = time.perf_counter() - started
        verified = subprocess.run([*EXCHANGE, "verify", "--source", f"sqlite:///{agency.path}", "--target",
                                   f"sqlite:///{directory}/replayed.db", "--tables", *TABLES], capture_output=True)
        print(f"replay of the hub's copy: {replayed:.1f}s ({json.loads(result.stdout)['events'] / replayed:.0f} "
              f"events/s), verify {'equal' if verified.returncode == 0 else 'DIFFERENT'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100000)
