"""sysbench on a captured MariaDB database, through node and hub processes with the node
killed mid-run, replayed from the hub into a fresh MariaDB database and verified equal."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time

import pytest
from test_exchange_e2e import AGENCY, assert_exactly_once, exchange, status, store_url, wait_caught_up

TABLES = ["sbtest1", "sbtest2"]
TABLE_SIZE = 2_000
TRANSACTIONS = 1_500  # about 6,000 row changes: each updates two rows, deletes one and inserts it again
DEADLINE = 180.0  # seconds; a busy 2-core machine is slow, a healthy one needs a few

pytestmark = pytest.mark.skipif(shutil.which("sysbench") is None,
                                reason="sysbench is not installed (apt-get install sysbench)")


def sysbench(mariadb, db: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={mariadb.port}",
                             "--mysql-user=root", f"--mysql-db={db}", f"--tables={len(TABLES)}",
                             f"--table-size={TABLE_SIZE}", *args], capture_output=True, text=True)


def test_sysbench_through_the_exchange_with_the_node_killed_replays_equal_into_mariadb(launch, mariadb):
    db = mariadb.create_database("sysbench_source")
    prepared = sysbench(mariadb, db, "oltp_read_write", "prepare")
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    hub = launch.hub()
    node = launch.node(hub.grpc_address, mariadb.url(db), TABLES)
    runs: list[subprocess.CompletedProcess] = []
    workload = threading.Thread(target=lambda: runs.append(sysbench(
        mariadb, db, "--threads=2", "--time=0", f"--events={TRANSACTIONS}", "oltp_read_write", "run")))
    workload.start()
    deadline = time.monotonic() + DEADLINE
    while status(node)["events_stored"] < len(TABLES) * TABLE_SIZE + 400:  # the snapshot, then some of the run
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.1)
    node.kill()  # kill -9 of the node mid-run
    node = launch.restart(node)
    workload.join()
    assert runs and runs[0].returncode == 0, runs and runs[0].stdout + runs[0].stderr
    wait_caught_up(node, timeout=DEADLINE)
    assert_exactly_once(node, hub)

    target = mariadb.create_database("sysbench_replayed")
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", mariadb.url(target))
    result = exchange("verify", "--source", mariadb.url(db), "--target", mariadb.url(target),
                      "--tables", *TABLES, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
