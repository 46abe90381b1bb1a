"""sysbench on a captured MariaDB database, through node and hub processes with the node
killed mid-run, replayed from the hub into a fresh MariaDB database and verified equal."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from test_exchange_e2e import assert_exactly_once, assert_replays_equal, status, wait_caught_up
from test_mysql_e2e import wait_events

TABLES = ["sbtest1", "sbtest2"]
TABLE_SIZE = 2_000
DEADLINE = 180.0  # seconds; a busy 2-core machine is slow, a healthy one needs a few
SAFETY_LIMIT = 900  # seconds sysbench may run at most, should the test fail to stop it

pytestmark = pytest.mark.skipif(shutil.which("sysbench") is None,
                                reason="sysbench is not installed (apt-get install sysbench)")


def sysbench_command(mariadb, db: str, *args: str) -> list[str]:
    return ["sysbench", "--db-driver=mysql", "--mysql-host=127.0.0.1", f"--mysql-port={mariadb.port}",
            "--mysql-user=root", f"--mysql-db={db}", f"--tables={len(TABLES)}", f"--table-size={TABLE_SIZE}", *args]


def test_sysbench_through_the_exchange_with_the_node_killed_replays_equal_into_mariadb(launch, mariadb, tmp_path):
    db = mariadb.create_database("sysbench_source")
    prepared = subprocess.run(sysbench_command(mariadb, db, "oltp_read_write", "prepare"), capture_output=True,
                              text=True)
    assert prepared.returncode == 0, prepared.stdout + prepared.stderr
    hub = launch.hub()
    node = launch.node(hub.grpc_address, mariadb.url(db), TABLES)
    # oltp_read_write until stopped below: each transaction updates two rows, deletes one and inserts it again.
    with open(tmp_path / "sysbench.log", "wb") as log:
        workload = subprocess.Popen(sysbench_command(mariadb, db, "--threads=2", f"--time={SAFETY_LIMIT}",
                                                     "oltp_read_write", "run"), stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_events(node, len(TABLES) * TABLE_SIZE + 400)  # the snapshot, then some of the run
        assert workload.poll() is None, (tmp_path / "sysbench.log").read_text()
        node.kill()  # kill -9 of the node mid-run
        killed_at = status(node)["events_stored"]
        node = launch.restart(node)
        wait_events(node, killed_at + 400)  # the restarted node captures the run going on
        assert workload.poll() is None, (tmp_path / "sysbench.log").read_text()
    finally:
        workload.terminate()  # transactions in flight roll back at the server
        workload.wait()
    wait_caught_up(node, timeout=DEADLINE)
    assert_exactly_once(node, hub)

    target = mariadb.create_database("sysbench_replayed")
    report = assert_replays_equal(hub, mariadb.url(db), mariadb.url(target), TABLES)
    assert report.count(" OK") == len(TABLES), report
