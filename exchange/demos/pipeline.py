"""``exchange demo``: the whole exchange on embedded defaults.

Creates a sample agency SQLite database in a temp dir, starts a hub and a
node as separate processes, makes a stream of inserts, updates and deletes
while showing live progress, waits until the hub holds everything, then
replays the hub's copy into a fresh database and verifies it against the
source.  The last line printed is one JSON object; exit status 0 only when
the replay verified equal.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn

from exchange.common.config import Config
from exchange.contracts.changes import SourceNotReady
from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import StoreError
from exchange.tools import replay, verify
from exchange.transport.rpc.health import wait_serving
from node import config as node_config
from node.status import node_status

AGENCY = "91310000MB2F31887X"  # a valid unified social credit code


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_configs(directory: Path) -> tuple[Path, Path, str]:
    """Hub and node TOML files for the demo; returns their paths and the hub address."""
    hub_address = f"127.0.0.1:{free_port()}"
    hub_toml = directory / "hub.toml"
    hub_toml.write_text(
        f'[store]\nurl = "sqlite:///{directory}/hub-store.db"\n'
        f'[listen]\naddress = "{hub_address}"\ninsecure = true  # loopback only, for the demo\n'
        f"[metrics]\nport = {free_port()}\n"
    )
    node_toml = directory / "node.toml"
    node_toml.write_text(
        f'agency = "{AGENCY}"\n'
        f'[source]\nurl = "sqlite:///{directory}/agency.db"\ntables = {json.dumps(TABLES)}\npoll_interval = 0.05\n'
        f'[store]\nurl = "sqlite:///{directory}/node-store.db"\n'
        f'[hub]\naddress = "{hub_address}"\ninsecure = true\n'
        f"[metrics]\nport = {free_port()}\n"
    )
    return hub_toml, node_toml, hub_address


def start(role: str, config: Path, log_path: Path) -> subprocess.Popen:
    """Start ``exchange <role> run`` as a separate process."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "exchange", role, "run", "--config", str(config)],
        stdout=log, stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run(changes: int = 20000, directory: str | None = None) -> int:
    """Run the demo; returns the exit status."""
    console = Console(stderr=True)
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="exchange-demo-") as tmp:
            return _run(Path(tmp), changes, console)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    return _run(path, changes, console)


def _run(directory: Path, changes: int, console: Console) -> int:
    agency = SampleAgency(str(directory / "agency.db"))
    initial = agency.create()
    hub_toml, node_toml, hub_address = write_configs(directory)
    cfg = node_config.load(node_toml, environ={})
    console.print(f"[bold]demo[/] in {directory}: agency {AGENCY}, {initial} initial rows, {changes} changes to make")
    hub = start("hub", hub_toml, directory / "hub.log")
    node = start("node", node_toml, directory / "node.log")
    try:
        wait_serving(hub_address)
        before = _wait_caught_up(cfg, node)["hub_position"]  # the initial snapshot: time the workload alone
        started = time.monotonic()
        delivered = _make_changes_and_watch(agency, cfg, changes, console, node, before)
        seconds = time.monotonic() - started
    finally:
        stop(node)
        stop(hub)
    console.print(f"{changes} changes delivered in {seconds:.1f}s; the hub holds {delivered} events; replaying them")
    target = directory / "replayed.db"
    replayed = replay.replay(f"sqlite:///{directory}/hub-store.db", AGENCY, f"sqlite:///{target}", progress=False)
    report = verify.verify(f"sqlite:///{directory}/agency.db", f"sqlite:///{target}", tables=TABLES)
    console.print(report.render())
    total = initial + changes
    print(json.dumps({
        "changes": total,
        "delivered": delivered,
        "replayed_events": replayed["events"],
        "workload_seconds": round(seconds, 2),
        "changes_per_second": round(changes / seconds, 1) if seconds else None,
        "replay_verified": report.equal,
    }))
    return 0 if report.equal else 1


def _check_running(node: subprocess.Popen) -> None:
    if node.poll() is not None:
        raise RuntimeError(f"node exited with status {node.returncode}; see node.log")


def _wait_caught_up(cfg: Config, node: subprocess.Popen) -> dict:
    while True:
        _check_running(node)
        try:
            status = node_status(cfg)
        except (StoreError, SourceNotReady):  # the node has not created its store or set up capture yet
            status = {"caught_up": False}
        if status["caught_up"] and status.get("hub_reachable"):
            return status
        time.sleep(0.1)


def _make_changes_and_watch(agency: SampleAgency, cfg: Config, changes: int, console: Console,
                            node: subprocess.Popen, before: int) -> int:
    """Make the workload while showing progress; wait until the hub holds
    everything and return the number of events it holds."""
    columns = (TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn())
    failures: list[BaseException] = []

    def work() -> None:
        try:
            agency.run(changes, on_commit=lambda n: progress.update(made, completed=n))
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    with Progress(*columns, console=console, disable=not console.is_terminal) as progress:
        made = progress.add_task("changes made at source", total=changes)
        shipped = progress.add_task("delivered to hub", total=changes)
        workload = threading.Thread(target=work)
        workload.start()
        while True:
            _check_running(node)
            workload_done = not workload.is_alive()  # read before the status, so the status is newer
            status = node_status(cfg)
            progress.update(shipped, completed=status["hub_position"] - before)
            if workload_done and status["caught_up"] and status["hub_reachable"]:
                if failures:
                    raise failures[0]
                return status["hub_position"]
            time.sleep(0.2)
