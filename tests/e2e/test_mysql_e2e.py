"""A workload on a captured MariaDB database, through node and hub processes, with a kill -9 of
the node and a crash of the database server mid-capture: every event reaches the hub exactly once,
and the hub's copy replays equal to the source."""

from __future__ import annotations

import importlib.util
import random
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from typing import Any

import pymysql
from test_exchange_e2e import AGENCY, assert_exactly_once, exchange, status, store_url, wait_caught_up

import adapters
from adapters.mysql.catalog import load_table
from adapters.mysql.types import convert_row, converters
from exchange.transport.rpc.health import http_answers

TABLES = ["accounts", "history"]
ACCOUNTS = 300
DEADLINE = 180.0


class Workload(threading.Thread):
    """Transfers between accounts, each recorded in history, one transaction each, about 200 a second
    until stopped; goes on through a server restart (a transaction cut by it is retried: the source's
    final state is what counts)."""

    def __init__(self, server: Any, database: str):
        super().__init__(daemon=True)
        self.server, self.database = server, database
        self.done = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        chance = random.Random(7)
        conn = None
        deadline = time.monotonic() + 4 * DEADLINE
        try:
            while not self.stop.wait(0.005):
                try:
                    conn = conn or self.server.connect(self.database, autocommit=False)
                    with conn.cursor() as cur:
                        a, b, amount = chance.randrange(ACCOUNTS), chance.randrange(ACCOUNTS), chance.randrange(100)
                        cur.execute("UPDATE accounts SET balance = balance - %s WHERE id = %s", (amount, a))
                        cur.execute("UPDATE accounts SET balance = balance + %s WHERE id = %s", (amount, b))
                        cur.execute("INSERT INTO history (account, delta, note) VALUES (%s, %s, %s)",
                                    (a, -amount, f"转账 {self.done} 🙂"))
                        if self.done % 50 == 49:
                            cur.execute("DELETE FROM history WHERE id % 7 = 0")
                    conn.commit()
                    self.done += 1
                    deadline = time.monotonic() + 4 * DEADLINE
                except pymysql.err.OperationalError:
                    assert time.monotonic() < deadline, "the server did not come back"
                    conn = None
                    time.sleep(0.1)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e


def source_rows(server: Any, database: str, table: str) -> list[dict[str, Any]]:
    """The table's rows in key order, values as capture emits them."""
    conn = server.connect(database)
    try:
        with conn.cursor() as cur:
            found = load_table(cur, database, table)
            names = [c.name for c in found.columns]
            cur.execute(f"SELECT {', '.join(names)} FROM {table} ORDER BY {', '.join(found.primary_key)}")
            convert = converters(found.columns, binlog=False)
            return [convert_row(convert, dict(zip(names, values))) for values in cur.fetchall()]
    finally:
        conn.close()


def wait_events(node, count: int) -> None:
    deadline = time.monotonic() + DEADLINE
    while status(node)["events_stored"] < count:
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.2)


def test_a_mariadb_workload_survives_node_and_server_crashes_and_replays_equal(launch, mariadb, tmp_path):
    db = mariadb.create_database("e2e_source")
    mariadb.execute("CREATE TABLE accounts (id int PRIMARY KEY, owner varchar(40), balance bigint NOT NULL)",
                    dbname=db)
    mariadb.execute("CREATE TABLE history (id bigint AUTO_INCREMENT PRIMARY KEY, account int NOT NULL, "
                    "delta int NOT NULL, note varchar(60))", dbname=db)
    mariadb.execute("INSERT INTO accounts VALUES " + ", ".join(f"({i}, '户主{i}', 1000)" for i in range(ACCOUNTS)),
                    dbname=db)
    hub = launch.hub()
    node = launch.node(hub.grpc_address, mariadb.url(db), TABLES)
    workload = Workload(mariadb, db)
    workload.start()
    wait_events(node, ACCOUNTS + 200)  # the snapshot, then some of the workload
    node.kill()  # kill -9 of the node mid-capture
    node = launch.restart(node)
    wait_events(node, status(node)["events_stored"] + 300)  # capturing again
    mariadb.restart()  # the database server crashes (kill -9) and comes back, the workload still running
    wait_events(node, status(node)["events_stored"] + 300)  # capturing after the server's restart
    workload.stop.set()
    workload.join(DEADLINE)
    assert not workload.is_alive() and workload.error is None, workload.error
    wait_caught_up(node, timeout=DEADLINE)
    assert_exactly_once(node, hub)
    url = f"http://127.0.0.1:{node.config['metrics']['port']}/metrics"
    assert http_answers(url)
    metrics = urllib.request.urlopen(url, timeout=30).read().decode()
    assert re.search(r"^exchange_node_binlog_lag_bytes 0\.0$", metrics, re.M), metrics
    assert re.search(r"^exchange_node_binlog_lag_seconds 0\.0$", metrics, re.M), metrics
    if shutil.which("promtool"):
        lint = subprocess.run(["promtool", "check", "metrics"], input=metrics, capture_output=True, text=True)
        assert "binlog" not in lint.stdout + lint.stderr, lint.stdout + lint.stderr

    target = tmp_path / "replayed.db"
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", f"sqlite:///{target}")
    reader = adapters.open_reader(f"sqlite:///{target}")
    try:
        for table in TABLES:
            assert list(reader.rows(table)) == source_rows(mariadb, db, table), table
    finally:
        reader.close()
    if importlib.util.find_spec("adapters.mysql.reader") is not None:  # verify reads MariaDB with it
        result = exchange("verify", "--source", mariadb.url(db), "--target", f"sqlite:///{target}",
                          "--tables", *TABLES, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
