"""Pattern capture and ``exchange node resnapshot`` through node and hub processes on PostgreSQL,
replayed from the hub and verified equal."""

from __future__ import annotations

import time

from test_exchange_e2e import AGENCY, exchange, store_url, wait_caught_up

TIMEOUT = 180


def replayed_equal(postgres, db: str, hub, tables: list[str], name: str) -> str:
    target = postgres.create_database(name)
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", postgres.url(target))
    result = exchange("verify", "--source", postgres.url(db), "--target", postgres.url(target),
                      "--tables", *tables, check=False)
    return "" if result.returncode == 0 else result.stdout + result.stderr


def released_slot(postgres, db: str) -> str:
    """The database's capture slot once the stopped node's walsender let it go."""
    deadline = time.monotonic() + TIMEOUT
    while postgres.execute("SELECT 1 FROM pg_replication_slots WHERE database = %s AND active", (db,), dbname=db):
        assert time.monotonic() < deadline, "the slot stays active"
        time.sleep(0.1)
    return postgres.execute("SELECT slot_name FROM pg_replication_slots WHERE database = %s", (db,), dbname=db)[0][0]


def test_patterns_resnapshot_and_a_lost_slot_through_the_processes(launch, postgres):
    db = postgres.create_database("resnapshot_source")
    postgres.execute("CREATE TABLE people (id int PRIMARY KEY, name text); "
                     "INSERT INTO people SELECT g, 'p' || g FROM generate_series(1, 200) g; "
                     "CREATE TABLE scratch_tmp (id int PRIMARY KEY); INSERT INTO scratch_tmp VALUES (1)", dbname=db)
    hub = launch.hub()
    node = launch.node(hub.grpc_address, postgres.url(db), ["public.*"], config={"source": {"exclude": ["scratch_*"]}})
    wait_caught_up(node)

    # A table created while the node runs, rows in its creating transaction.
    postgres.execute("BEGIN; CREATE TABLE orders (id int PRIMARY KEY, total numeric); "
                     "INSERT INTO orders VALUES (1, 9.5), (2, 3); COMMIT", dbname=db)
    postgres.execute("INSERT INTO orders VALUES (3, 1)", dbname=db)
    deadline = time.monotonic() + TIMEOUT
    while replayed_equal(postgres, db, hub, ["people", "orders"], "resnapshot_check"):
        assert time.monotonic() < deadline and node.running, node.log()[-3000:]
        time.sleep(1)

    # Changes the node never sees (the slot is moved past them while it is stopped), repaired by resnapshot.
    node.terminate()
    postgres.execute("UPDATE people SET name = 'skipped' WHERE id <= 5; INSERT INTO orders VALUES (4, 4)", dbname=db)
    postgres.execute("SELECT pg_replication_slot_advance(%s, pg_current_wal_lsn())", (released_slot(postgres, db),),
                     dbname=db)
    node = launch.restart(node)
    requested = exchange("node", "resnapshot", "--config", str(node.config_path), "people", "ord*")
    assert '"requested": ["people", "orders"]' in requested.stdout
    wait_caught_up(node)
    assert replayed_equal(postgres, db, hub, ["people", "orders"], "resnapshot_repaired") == ""

    # The slot is dropped: the node refuses to start, naming the repair; resnapshot --all repairs.
    node.terminate()
    postgres.execute("UPDATE people SET name = 'while lost' WHERE id = 7", dbname=db)
    postgres.execute("SELECT pg_drop_replication_slot(%s)", (released_slot(postgres, db),), dbname=db)
    refused = exchange("node", "run", "--config", str(node.config_path), check=False)
    assert refused.returncode == 2 and "exchange node resnapshot --config NODE.toml --all" in refused.stderr
    exchange("node", "resnapshot", "--config", str(node.config_path), "--all", "--no-wait")
    node = launch.restart(node)
    wait_caught_up(node)
    assert replayed_equal(postgres, db, hub, ["people", "orders"], "resnapshot_recovered") == ""
