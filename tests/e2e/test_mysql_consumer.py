"""A consumer keeping its replica in MariaDB, with real hub, node and consumer processes."""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

from test_consumer import (  # noqa: F401 (fixtures)
    ENTITLED,
    KEYS,
    approve_licences,
    consumer_config,
    projected,
    provider,
    sample,
)
from test_exchange_e2e import run_in_background, wait_caught_up

import adapters
from exchange.transport.rpc.health import http_answers


def replica_content(url: str) -> dict:
    """The replica's tables as lists of rows in key order, each table's columns checked."""
    reader = adapters.open_reader(url)
    try:
        found = {}
        for t in reader.tables():
            assert list(reader.table_schema(t).column_names) == ENTITLED.get(t), f"replica table {t}"
            found[t] = [list(r.values()) for r in reader.rows(t, order_by=[KEYS[t]])]
        return found
    finally:
        reader.close()


def wait_replica_equals(source: Path, url: str, consumer, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while replica_content(url) != projected(source):
        assert consumer.running, consumer.log()[-3000:]
        assert time.monotonic() < deadline, f"the replica does not match the entitlement\n{consumer.log()[-3000:]}"
        time.sleep(0.2)


def test_a_mariadb_replica_follows_the_entitlement_through_a_crash_and_an_emptied_table(
        launch, provider, sample, tmp_path, free_port, mariadb):  # noqa: F811
    hub, node = provider
    approve_licences(hub)
    url = mariadb.url(mariadb.create_database(f"replica_{uuid.uuid4().hex[:8]}"))
    config = consumer_config(tmp_path, hub, free_port)
    config["consumer"]["replica"] = url
    metrics_url = f"http://127.0.0.1:{config['metrics']['port']}/metrics"
    consumer = launch.start(["node", "subscribe"], config, name="consumer", ready=lambda: http_answers(metrics_url))
    workload = run_in_background(sample, 400)
    deadline = time.monotonic() + 120
    while not replica_content(url).get("licences"):  # killed once it has applied something
        assert consumer.running and time.monotonic() < deadline, consumer.log()[-3000:]
        time.sleep(0.1)
    consumer = launch.restart(consumer, ready=lambda: http_answers(metrics_url))  # SIGKILL, then start again
    workload.join()
    wait_caught_up(node)
    wait_replica_equals(Path(sample.path), url, consumer)

    with sqlite3.connect(sample.path, isolation_level=None) as db:
        db.execute("DELETE FROM legal_persons")
    wait_caught_up(node)
    wait_replica_equals(Path(sample.path), url, consumer)
    assert replica_content(url)["legal_persons"] == []
