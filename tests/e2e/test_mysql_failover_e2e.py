"""A failover of a captured MariaDB source to its GTID replica, as docs/mariadb.md tells the
operator to handle it: stop the node, point it at the promoted replica, ``exchange node
resnapshot --all``, start it; the hub's copy then replays equal to the new primary."""

from __future__ import annotations

import pytest
from conftest import to_toml
from support.mariadb import start_server
from test_exchange_e2e import assert_replays_equal, exchange, status, wait_caught_up

TABLES = ["licences"]


def rows(server, db: str, *values: tuple[int, str]) -> None:
    server.execute(f"INSERT INTO `{db}`.licences VALUES " + ", ".join(["(%s, %s)"] * len(values)),
                   [v for pair in values for v in pair])


@pytest.mark.xfail(strict=True, reason="capture does not recognise the old primary's binlog position as lost on the "
                                       "new primary when the new primary has a binlog file of a lower number, so "
                                       "resnapshot --all writes a plain request and capture stays stopped")
def test_failover_to_the_gtid_replica_then_resnapshot_all_replays_equal(launch):
    primary = start_server(log_slave_updates="ON")
    replica = start_server(server_id=2, log_slave_updates="ON")
    try:
        primary.execute("CREATE USER 'replication'@'127.0.0.1' IDENTIFIED BY 'replication'")
        primary.execute("GRANT REPLICATION SLAVE ON *.* TO 'replication'@'127.0.0.1'")
        replica.execute(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary.port}, "
                        "MASTER_USER = 'replication', MASTER_PASSWORD = 'replication', MASTER_USE_GTID = slave_pos")
        replica.execute("START SLAVE")
        db = primary.create_database("licensing")
        primary.execute("CREATE TABLE licences (id INT PRIMARY KEY, holder VARCHAR(40) NOT NULL)", dbname=db)
        rows(primary, db, *[(i, f"holder {i}") for i in range(1, 101)])
        for _ in range(3):  # the primary has run longer: its binlog files are numbered beyond the replica's
            primary.execute("FLUSH BINARY LOGS")
        hub = launch.hub()
        node = launch.node(hub.grpc_address, primary.url(db), TABLES)
        primary.execute("UPDATE licences SET holder = 'renewed' WHERE id <= 10", dbname=db)
        primary.execute("DELETE FROM licences WHERE id > 95", dbname=db)
        wait_caught_up(node)
        applied = replica.execute("SELECT MASTER_GTID_WAIT(%s, 120)", (primary.execute("SELECT @@gtid_binlog_pos")[0][0],))
        assert applied == [(0,)], replica.execute("SHOW SLAVE STATUS")

        node.terminate()  # the operator stops the node; the primary is lost
        primary.kill()
        replica.execute("STOP SLAVE")
        replica.execute("RESET SLAVE ALL")  # promoted: applications write here now
        rows(replica, db, (1000, "after the failover"))
        replica.execute("UPDATE licences SET holder = 'moved' WHERE id = 50", dbname=db)
        replica.execute("DELETE FROM licences WHERE id = 7", dbname=db)

        node.config["source"]["url"] = replica.url(db)
        node.config_path.write_text(to_toml(node.config))
        exchange("node", "resnapshot", "--config", str(node.config_path), "--all", "--no-wait")
        node = launch.node(hub.grpc_address, replica.url(db), TABLES)  # the same store
        wait_caught_up(node)
        assert status(node)["capture_running"], node.log()[-3000:]

        target = replica.create_database("licensing_replayed")
        assert_replays_equal(hub, replica.url(db), replica.url(target), TABLES)
    finally:
        replica.stop()
        primary.stop()
