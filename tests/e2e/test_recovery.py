"""Disaster recovery: a node rebuilt from the hub, a hub rebuilt from the nodes."""

from __future__ import annotations

import json
from pathlib import Path

from test_exchange_e2e import (
    assert_exactly_once,
    assert_replay_equals,
    exchange,
    run_in_background,
    status,
    store_url,
    wait_caught_up,
)

from exchange.demos.sample import TABLES


def remove_store(url: str) -> None:
    path = Path(url.removeprefix("sqlite:///"))
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def test_a_node_that_lost_its_disk_is_rebuilt_from_the_hub(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    agency.run(400)
    at_hub = wait_caught_up(node)["hub_position"]
    hub.kill()
    agency.run(200)  # captured and stored by the node, never shipped: lost with its disk
    while status(node)["source_pending"]:
        pass
    node.kill()
    remove_store(store_url(node))
    agency.run(100)  # made while the node is down
    hub = launch.restart(hub)

    restored = json.loads(exchange("node", "restore", "--config", str(node.config_path)).stdout)
    assert restored["events"] == restored["hub_position"] == at_hub
    node = launch.restart(node)
    run_in_background(agency, 300).join()
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "after-node-restore")


def test_restore_refuses_the_store_of_a_live_node(launch, agency):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    wait_caught_up(node)
    result = exchange("node", "restore", "--config", str(node.config_path), check=False)
    assert result.returncode == 2
    assert "restore needs the empty store" in result.stderr


def test_a_hub_that_lost_its_disk_is_rebuilt_from_the_nodes(launch, agency, tmp_path):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES)
    agency.run(400)
    wait_caught_up(node)
    hub.kill()
    remove_store(store_url(hub))
    agency.run(200)
    hub = launch.restart(hub)
    report = wait_caught_up(node)
    assert report["hub_position"] == report["events_stored"]
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "after-hub-rebuild")
