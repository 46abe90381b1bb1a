"""pgbench on a captured PostgreSQL database, through node and hub processes,
replayed into a fresh PostgreSQL database and verified equal."""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.request

from test_exchange_e2e import AGENCY, assert_exactly_once, exchange, status, store_url, wait_caught_up

from exchange.transport.rpc.health import http_answers

TABLES = ["pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"]


def pgbench(postgres, db: str, *args: str) -> None:
    subprocess.run([str(postgres.bin / "pgbench"), "-h", "127.0.0.1", "-p", str(postgres.port), "-U", "postgres",
                    *args, db], check=True, capture_output=True)


def test_pgbench_through_the_exchange_replays_equal_into_postgres(launch, postgres, tmp_path):
    db = postgres.create_database("bench_source")
    pgbench(postgres, db, "-i", "-q", "-s", "1")
    postgres.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL", dbname=db)
    # Keep the snapshot small: updates of the accounts removed here change no row.
    postgres.execute("DELETE FROM pgbench_accounts WHERE aid > 5000", dbname=db)
    hub = launch.hub()
    node = launch.node(hub.grpc_address, postgres.url(db), TABLES)
    workload = threading.Thread(target=pgbench, args=(postgres, db, "-c", "2", "-t", "300", "-n"))
    workload.start()
    while status(node)["events_stored"] < 5_000 + 300:  # the snapshot, then some of the workload
        time.sleep(0.1)
    node.kill()  # kill -9 of the node mid-capture
    node = launch.restart(node)
    workload.join()
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    url = f"http://127.0.0.1:{node.config['metrics']['port']}/metrics"
    deadline = time.monotonic() + 120
    while not http_answers(url):  # the restarted node serves metrics once it has set up capture again
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.2)
    metrics = urllib.request.urlopen(url, timeout=30).read().decode()
    assert re.search(r"^exchange_node_slot_retained_wal_bytes \d", metrics, re.M)

    target = postgres.create_database("bench_replayed")
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", postgres.url(target))
    result = exchange("verify", "--source", postgres.url(db), "--target", postgres.url(target),
                      "--tables", *TABLES, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_default_pgbench_with_its_truncate_replays_equal_from_the_hub(launch, postgres):
    """pgbench without -n vacuums and TRUNCATEs pgbench_history before it runs, as ETL jobs empty staging
    tables: capture goes on, and the hub's copy replays equal to the source."""
    db = postgres.create_database("bench_default")
    pgbench(postgres, db, "-i", "-q", "-s", "1")
    postgres.execute("ALTER TABLE pgbench_history REPLICA IDENTITY FULL", dbname=db)
    postgres.execute("DELETE FROM pgbench_accounts WHERE aid > 5000", dbname=db)  # a small snapshot
    postgres.execute("INSERT INTO pgbench_history VALUES (1, 1, 1, 5, now(), 'before the run')", dbname=db)
    hub = launch.hub()
    node = launch.node(hub.grpc_address, postgres.url(db), TABLES)
    before = wait_caught_up(node)["events_stored"]
    workload = threading.Thread(target=pgbench, args=(postgres, db, "-c", "4", "-T", "5"))
    workload.start()
    deadline = time.monotonic() + 120
    while status(node)["events_stored"] < before + 300:  # the truncate and some of the run
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.1)
    node.kill()  # kill -9 of node and hub mid-capture
    hub.kill()
    hub = launch.restart(hub)
    node = launch.restart(node)
    workload.join()
    wait_caught_up(node)
    assert_exactly_once(node, hub)

    target = postgres.create_database("bench_default_replayed")
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", postgres.url(target))
    result = exchange("verify", "--source", postgres.url(db), "--target", postgres.url(target),
                      "--tables", *TABLES, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    history = postgres.execute("SELECT count(*) FROM pgbench_history WHERE filler = 'before the run'",
                               dbname=target)
    assert history == [(0,)]  # the row pgbench truncated is gone from the hub's copy too
