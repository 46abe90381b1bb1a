"""Many agencies starting at once against one hub with a SQLite store: every batch waits its turn, none fails."""

from __future__ import annotations

import time
from pathlib import Path

from test_exchange_e2e import assert_exactly_once, wait_caught_up

from exchange.contracts.identifiers import uscc_check_char
from exchange.demos.sample import TABLES, SampleAgency
from exchange.transport.rpc.health import http_answers

NODES = 10


def test_ten_nodes_starting_at_once_are_all_stored_without_a_locked_database(launch, tmp_path):
    hub = launch.hub()
    nodes = []
    for i in range(NODES):
        agency = f"9131000{i:02d}MA1FL000"[:17]
        agency += uscc_check_char(agency)
        sample = SampleAgency(str(tmp_path / f"agency{i}.db"))
        sample.create(persons=30, legal_persons=10, licences=10)
        nodes.append(launch.node(hub.grpc_address, Path(sample.path), TABLES, name=f"node{i}", agency=agency,
                                 wait_ready=False))
    deadline = time.monotonic() + 180
    for node in nodes:  # started together; each is ready once it serves /metrics
        while not http_answers(f"http://127.0.0.1:{node.config['metrics']['port']}/metrics"):
            assert node.running and time.monotonic() < deadline, node.log()[-3000:]
            time.sleep(0.2)
    for node in nodes:
        wait_caught_up(node)
    for node in nodes:
        assert_exactly_once(node, hub, agency=node.config["agency"])
    log = hub.log()
    assert "database is locked" not in log and "refused a batch" not in log, log[-3000:]
