"""The embedded exchange end to end: SQLite source -> node -> gRPC -> hub -> replay.

Hub and node run as real processes talking gRPC; crashes are real SIGKILLs.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import EventStore

AGENCY = "91310000MB2F31887X"
EXCHANGE = [sys.executable, "-m", "exchange"]


def exchange(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``exchange ARGS``; with ``check``, fail showing its output unless it exits 0."""
    result = subprocess.run([*EXCHANGE, *args], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, f"exchange {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def status(node) -> dict:
    return json.loads(exchange("node", "status", "--config", str(node.config_path), "--json").stdout)


def wait_caught_up(node, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        assert node.running, node.log()[-3000:]
        report = status(node)
        if report["caught_up"] and report["hub_reachable"]:
            return report
        assert time.monotonic() < deadline, f"not caught up: {report}\n{node.log()[-3000:]}"
        time.sleep(0.2)


def stored(store_url: str, agency: str = AGENCY) -> list[tuple]:
    """Every event of ``agency`` in the store, in notification order."""
    store = EventStore(store_url, create=False)
    try:
        recorder = store.recorder(agency)
        events, position = [], 0
        while batch := recorder.read(position, 5000):
            events += [(n.originator_id, n.originator_version, n.topic, n.state) for n in batch]
            position = batch[-1].id
        return events
    finally:
        store.close()


def store_url(process) -> str:
    return process.config["store"]["url"]


def assert_exactly_once(node, hub, agency: str = AGENCY) -> None:
    at_node, at_hub = stored(store_url(node), agency), stored(store_url(hub), agency)
    assert len(at_hub) == len(set((e[0], e[1]) for e in at_hub)), "an event is stored twice at the hub"
    assert at_hub == at_node, "the hub's log differs from the node's"


def assert_replay_equals(store: str, source: Path, tmp_path: Path, name: str) -> None:
    target = tmp_path / f"{name}.db"
    exchange("replay", "--store", store, "--agency", AGENCY, "--target", f"sqlite:///{target}")
    result = exchange("verify", "--source", f"sqlite:///{source}", "--target", f"sqlite:///{target}",
                      "--tables", *TABLES, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def assert_replays_equal(hub, source_url: str, target_url: str, tables: list[str]) -> str:
    """Replay the hub's copy into the (fresh) database at ``target_url`` and verify ``tables`` against
    the source; verify's report."""
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", target_url)
    result = exchange("verify", "--source", source_url, "--target", target_url, "--tables", *tables, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def run_in_background(agency: SampleAgency, changes: int) -> threading.Thread:
    worker = threading.Thread(target=agency.run, args=(changes,), kwargs={"per_transaction": 10})
    worker.start()
    return worker


def test_changes_made_while_the_hub_is_down_arrive_after_it_starts(launch, free_port, agency, tmp_path):
    hub_address = f"127.0.0.1:{free_port()}"
    node = launch.node(hub_address, Path(agency.path), TABLES)
    agency.run(300)
    report = status(node)
    assert not report["hub_reachable"] and not report["caught_up"]
    hub = launch.hub(config={"listen": {"address": hub_address}})
    report = wait_caught_up(node)
    assert report["backlog_events"] == 0
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "from-hub")


def change_log_size(agency: SampleAgency) -> int:
    with sqlite3.connect(agency.path) as conn:
        return conn.execute("SELECT count(*) FROM _exchange_changelog").fetchone()[0]


def test_the_source_keeps_its_changes_until_the_hub_holds_them(launch, free_port, agency):
    hub_address = f"127.0.0.1:{free_port()}"
    node = launch.node(hub_address, Path(agency.path), TABLES)
    agency.run(200)
    deadline = time.monotonic() + 60
    while status(node)["source_pending"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert change_log_size(agency) >= 200  # stored at the node, but the hub has none of it yet
    launch.hub(config={"listen": {"address": hub_address}})
    wait_caught_up(node)
    while change_log_size(agency):
        assert time.monotonic() < deadline + 60, "the change log was not pruned after the hub acknowledged"
        time.sleep(0.1)


def test_hub_killed_mid_stream_restarts_and_every_event_arrives_once(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES, config={"hub": {"batch_size": 50}})
    worker = run_in_background(agency, 3000)
    while status(node)["hub_position"] == 0:
        time.sleep(0.05)
    hub.kill()
    time.sleep(0.5)
    hub = launch.restart(hub)
    worker.join()
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "from-hub")


def test_node_killed_mid_capture_restarts_with_nothing_lost_or_duplicated(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES, config={"source": {"batch_size": 50}})
    worker = run_in_background(agency, 3000)
    while status(node)["events_stored"] < 500:
        time.sleep(0.05)
    node.kill()
    time.sleep(0.3)
    node = launch.restart(node)
    worker.join()
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(node), Path(agency.path), tmp_path, "from-node")
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "from-hub")


def test_point_in_time_replay_equals_the_source_as_it_was(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    agency.run(400)
    wait_caught_up(node)
    time.sleep(0.05)
    moment = datetime.now(timezone.utc)
    then = tmp_path / "source-then.db"
    with sqlite3.connect(agency.path) as live, sqlite3.connect(then) as copy:
        live.backup(copy)
    time.sleep(0.05)
    agency.run(400)
    wait_caught_up(node)

    target = tmp_path / "until.db"
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", f"sqlite:///{target}",
             "--until", moment.isoformat())
    as_then = exchange("verify", "--source", f"sqlite:///{then}", "--target", f"sqlite:///{target}",
                       "--tables", *TABLES, check=False)
    assert as_then.returncode == 0, as_then.stdout
    as_now = exchange("verify", "--source", f"sqlite:///{agency.path}", "--target", f"sqlite:///{target}",
                      "--tables", *TABLES, check=False)
    assert as_now.returncode == 1, "the later changes should be missing from a replay until the earlier time"


def test_a_schema_change_at_the_source_reaches_the_replay(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    agency.run(100)
    wait_caught_up(node)
    conn = agency.connect()
    conn.execute("ALTER TABLE persons ADD COLUMN nationality TEXT DEFAULT '汉族'")
    conn.execute("UPDATE persons SET nationality='回族' WHERE rowid % 7 = 0")
    conn.close()
    agency.run(100)
    wait_caught_up(node)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "after-alter")


def test_replay_refuses_a_target_that_is_not_empty(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    wait_caught_up(node)
    result = exchange("replay", "--store", store_url(hub), "--agency", AGENCY,
                      "--target", f"sqlite:///{agency.path}", check=False)
    assert result.returncode == 2
    assert "is not empty" in result.stderr


def test_node_refuses_a_table_without_a_primary_key(launch, free_port, tmp_path):
    source = tmp_path / "ledger.db"
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE ledger (entry TEXT, amount REAL)")
    node = launch.node(f"127.0.0.1:{free_port()}", source, ["ledger"], wait_ready=False)
    assert node.popen.wait(30) == 2
    assert "ledger" in node.log() and "PRIMARY KEY" in node.log()


def test_node_serves_prometheus_metrics(launch, agency):
    import urllib.request

    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    wait_caught_up(node)
    port = node.config["metrics"]["port"]
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    for name in ("exchange_node_changes_captured_total", "exchange_node_events_stored_total",
                 "exchange_node_events_shipped_total", "exchange_node_events_acknowledged_total",
                 "exchange_node_backlog_events", "exchange_node_backlog_seconds", "exchange_node_hub_connected",
                 "exchange_node_errors_total"):
        assert name in text
    assert "exchange_node_hub_connected 1.0" in text


def test_demo_verifies_its_replay(tmp_path):
    result = exchange("demo", "--changes", "500", "--dir", str(tmp_path / "demo"), check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["replay_verified"] is True
    assert summary["delivered"] == summary["replayed_events"] >= summary["changes"]
