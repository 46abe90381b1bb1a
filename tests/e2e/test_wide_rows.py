"""Wide rows through node and hub processes on PostgreSQL stores: one source transaction of
500 rows of 45 KB text, and 20 MB bytea values; the node killed inside the transaction."""

from __future__ import annotations

import time

import psycopg2
from test_exchange_e2e import AGENCY, assert_exactly_once, exchange, store_url, wait_caught_up

ROWS, WIDTH = 500, 45_000
TABLES = ["docs", "blobs"]


def count_events(url: str) -> int:
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"events_{AGENCY}"',))
        if not cur.fetchone()[0]:
            return 0
        cur.execute(f'SELECT count(*) FROM "events_{AGENCY}"')
        return cur.fetchone()[0]


def test_wide_rows_in_one_transaction_arrive_once_through_postgres_stores(launch, postgres, tmp_path):
    source = postgres.url(postgres.create_database("wide_source"))
    with psycopg2.connect(source) as conn, conn.cursor() as cur:
        cur.execute("CREATE TABLE docs (id integer PRIMARY KEY, body text)")
        cur.execute("CREATE TABLE blobs (id integer PRIMARY KEY, data bytea)")
    hub = launch.hub(config={"store": {"url": postgres.url(postgres.create_database("wide_hub")),
                                       "batch_bytes": 2 * 1024 * 1024},
                             "audit": {"path": str(tmp_path / "audit.log")}})
    node_store = postgres.url(postgres.create_database("wide_node"))
    config = {"store": {"url": node_store}, "source": {"batch_bytes": 256 * 1024}}
    node = launch.node(hub.grpc_address, source, TABLES, config=config)
    with psycopg2.connect(source) as conn, conn.cursor() as cur:  # one transaction of ~22 MB
        cur.executemany("INSERT INTO docs VALUES (%s, %s)",
                        [(i, f"{i:05d}" + "x" * (WIDTH - 5)) for i in range(ROWS)])
    with psycopg2.connect(source) as conn, conn.cursor() as cur:
        cur.executemany("INSERT INTO blobs VALUES (%s, %s)",
                        [(i, bytes([i]) * 20_000_000) for i in range(2)])
    deadline = time.monotonic() + 300
    while count_events(node_store) < 50:  # some of the transaction's store transactions are done
        assert node.running and time.monotonic() < deadline, node.log()[-3000:]
        time.sleep(0.05)
    node.kill()  # kill -9 inside the source transaction
    node = launch.restart(node)
    wait_caught_up(node, timeout=600)
    assert_exactly_once(node, hub)
    assert count_events(store_url(hub)) == 2 + ROWS + 2  # two schemas, the rows, the blobs
    target = postgres.create_database("wide_replayed")
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", postgres.url(target))
    result = exchange("verify", "--source", source, "--target", postgres.url(target), "--tables", *TABLES,
                      check=False)
    assert result.returncode == 0, result.stdout + result.stderr
