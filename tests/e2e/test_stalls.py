"""Stalls and stops, with real processes on PostgreSQL stores: a stalled step is logged, counted
and shown by the status commands; a stopped capture is loud once, then quiet, and says why;
the hub stops within its bound on SIGTERM whatever its workers wait on."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import psycopg2
from test_exchange_e2e import AGENCY, assert_exactly_once, exchange, status, store_url, wait_caught_up

from exchange.demos.sample import TABLES

EVENTS = f'"events_{AGENCY}"'


def metric(process, name: str, labels: str = "") -> float | None:
    """The value of the sample ``name{labels}`` the process serves now (None when absent or not answering)."""
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{process.config['metrics']['port']}/metrics",
                                      timeout=10).read().decode()
    except OSError:
        return None
    pattern = "^" + re.escape(name) + (r"\{" + re.escape(labels) + r"\}" if labels else "") + r" (\S+)$"
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else None


def wait_until(process, check, what: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert process.running, process.log()[-3000:]
        assert time.monotonic() < deadline, f"not {what}:\n{process.log()[-3000:]}"
        time.sleep(0.2)


def has_events_table(url: str) -> bool:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (EVENTS,))
        return cur.fetchone()[0]


def test_a_stopped_capture_says_why_once_and_resumes(launch, postgres, agency):
    hub = launch.hub()
    node_store = postgres.url(postgres.create_database("capture_down_node"))
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES, config={"store": {"url": node_store}})
    wait_until(node, lambda: has_events_table(node_store), "storing")
    refuse = psycopg2.connect(node_store)
    refuse.autocommit = True
    with refuse.cursor() as cur:  # every insert into the node's log now fails
        cur.execute(f"ALTER TABLE {EVENTS} ADD CONSTRAINT refuse_all CHECK (originator_version < 0) NOT VALID")
    agency.run(20)
    wait_until(node, lambda: (metric(node, "exchange_node_errors_total", 'kind="capture"') or 0) >= 10,
               "failing ten times")
    assert metric(node, "exchange_node_capture_up") == 0
    report = status(node)
    assert report["capture_running"] is False
    assert "refuse_all" in report["capture_stopped_reason"]
    assert report["capture_stopped_since"]
    text = exchange("node", "status", "--config", str(node.config_path)).stdout
    assert re.search(r"capture running\s+no", text) and "refuse_all" in text
    log = node.log()
    assert log.count("capture stopped: IntegrityError") == 1, log[-3000:]  # with its traceback, once
    later = log[log.index("capture still stopped"):]
    assert "Traceback" not in later, later
    attempts = metric(node, "exchange_node_errors_total", 'kind="capture"') or 0
    assert later.count("capture still stopped") < attempts - 1  # not one line per attempt
    with refuse.cursor() as cur:
        cur.execute(f"ALTER TABLE {EVENTS} DROP CONSTRAINT refuse_all")
    refuse.close()
    wait_until(node, lambda: metric(node, "exchange_node_capture_up") == 1, "capturing again", timeout=60)
    wait_caught_up(node)
    assert status(node)["capture_running"] is True
    assert_exactly_once(node, hub)


def test_a_stalled_ingest_is_reported_and_sigterm_stops_the_hub_within_its_bound(launch, postgres, agency,
                                                                                   tmp_path):
    hub_store = postgres.url(postgres.create_database("stalled_hub"))
    hub = launch.hub(config={"store": {"url": hub_store}, "audit": {"path": str(tmp_path / "audit.log")},
                             "watchdog": {"stall_seconds": 1.0, "stop_seconds": 3.0}})
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES,
                       config={"watchdog": {"stall_seconds": 1.0}})
    wait_caught_up(node)
    lock = psycopg2.connect(hub_store)
    try:
        with lock.cursor() as cur:  # held open: the hub's next insert waits for it (reads do not)
            cur.execute(f"LOCK TABLE {EVENTS} IN EXCLUSIVE MODE")
        agency.run(10)
        wait_until(hub, lambda: (metric(hub, "exchange_hub_stalls_total", 'step="ingest"') or 0) >= 1,
                   "counting a stalled ingest")
        assert re.search(r"ingest step has made no progress for \d+ seconds: waiting on the hub store to take",
                         hub.log())
        report = json.loads(exchange("hub", "status", "--config", str(hub.config_path), "--json").stdout)
        assert report["stalled_steps"][0]["step"] == "ingest"
        wait_until(node, lambda: (metric(node, "exchange_node_stalls_total", 'step="ship"') or 0) >= 1,
                   "counting a stalled ship step")
        assert status(node)["stalled_steps"][0]["step"] == "ship"
        assert hub.terminate(timeout=120) == 1  # the worker still waits: the hub exits regardless
        assert "hub did not stop within 3 seconds of the stop signal (ingest waiting on the hub store" in hub.log()
    finally:
        lock.close()
    hub = launch.restart(hub)
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert store_url(hub) == hub_store
