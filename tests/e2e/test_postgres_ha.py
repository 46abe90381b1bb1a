"""The hub on a PostgreSQL primary with a synchronous streaming standby: the primary crashes in the
middle of a workload, the standby is promoted, and the hub (a multi-host URL with
``target_session_attrs=read-write``) carries on against it without losing or repeating an event."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from support.postgres import crash, promote, start_standby
from test_exchange_e2e import AGENCY, assert_replay_equals, stored, wait_caught_up
from test_hub_failover import eventually, metric

from exchange.demos.sample import TABLES, SampleAgency

DEADLINE = 180  # seconds: a safety net for a busy machine, not a timing assertion


@pytest.fixture
def primary(postgres):
    cluster = postgres.copy()
    yield cluster
    cluster.stop()


def test_a_hub_survives_the_promotion_of_a_synchronous_standby_without_loss_or_duplicate(launch, primary, tmp_path):
    primary.create_database("hub_ha")
    standby = start_standby(primary, "standby1")
    try:
        # Nothing is acknowledged before the standby has flushed it (docs/scaling.md).
        primary.execute("ALTER SYSTEM SET synchronous_standby_names = 'FIRST 1 (standby1)'")
        primary.execute("ALTER SYSTEM SET synchronous_commit = 'on'")
        primary.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + DEADLINE
        while primary.execute("SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby1'") \
                != [("sync",)]:
            assert time.monotonic() < deadline, "the standby never became synchronous"
            time.sleep(0.1)
        url = (f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/hub_ha"
               "?target_session_attrs=read-write")
        hub = launch.hub(config={"store": {"url": url}, "audit": {"path": str(tmp_path / "audit.log")}})
        sample = SampleAgency(str(tmp_path / "agency.db"))
        sample.create(persons=20, legal_persons=10, licences=10)
        node = launch.node(hub.grpc_address, Path(sample.path), TABLES)
        wait_caught_up(node, DEADLINE)
        before = metric(node, "exchange_node_events_acknowledged_total")
        workload = threading.Thread(target=sample.run, args=(1500,), kwargs={"per_transaction": 5})
        workload.start()
        eventually(lambda: metric(node, "exchange_node_events_acknowledged_total") > before,
                   "the node ships part of the workload")
        crash(primary)  # in the middle of the workload
        crashed = time.monotonic()
        promote(standby)
        promoted = time.monotonic() - crashed
        workload.join()
        wait_caught_up(node, DEADLINE)
        caught_up = time.monotonic() - crashed
        assert hub.running, hub.log()[-3000:]
        assert "may be missing on a promoted standby" not in hub.log()
        at_hub, at_node = stored(url, AGENCY), stored(node.config["store"]["url"], AGENCY)
        assert len(at_hub) == len({(e[0], e[1]) for e in at_hub}), "an event is stored twice"
        assert at_hub == at_node, "the new primary's log differs from the node's"
        assert_replay_equals(url, Path(sample.path), tmp_path, "replayed")
        print(f"\npostgres failover: promoted {promoted:.1f} s after the crash; node caught up {caught_up:.1f} s after")
    finally:
        standby.stop()


def test_a_hub_naming_standbys_without_synchronous_commit_warns_at_start(launch, postgres, free_port, tmp_path):
    database = postgres.create_database("hub_async")
    url = f"postgresql://postgres@127.0.0.1:{postgres.port},127.0.0.1:{free_port()}/{database}"
    hub = launch.hub(config={"store": {"url": url}, "audit": {"path": str(tmp_path / "audit.log")}})
    assert "synchronous_standby_names is empty" in hub.log()
    assert "may be missing on a promoted standby" in hub.log()
