"""Row scope (Art. 15) and lookup (Art. 16) with real hub, provider node and consumer processes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from test_consumer import AGENCY, CONSUMER, provider, sample  # noqa: F401  (fixtures)
from test_exchange_e2e import exchange, run_in_background, wait_caught_up

from exchange.transport.rpc.health import http_answers

OTHER = "91310115MA1H7GQ417"
ITEMS = ["licence_no", "kind", "status"]


def filtered(source: Path, where: str) -> list[list]:
    with sqlite3.connect(source) as db:
        return [list(r) for r in db.execute(f"SELECT {', '.join(ITEMS)} FROM licences WHERE {where} ORDER BY licence_no")]


def replica_rows(replica: Path) -> list[list] | None:
    if not replica.exists():
        return None
    with sqlite3.connect(replica) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'licences'").fetchone():
            return None
        columns = [r[1] for r in db.execute('PRAGMA table_info("licences")')]
        assert columns == ITEMS, f"the replica holds items {columns}"
        return [list(r) for r in db.execute("SELECT * FROM licences ORDER BY licence_no")]


def wait_until(condition, what: str, process=None, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process is None or process.running, process.log()[-3000:]
        assert time.monotonic() < deadline, f"{what}\n{process.log()[-3000:] if process else ''}"
        time.sleep(0.2)


def test_a_scoped_approval_delivers_exactly_the_scoped_rows_and_lookups_stay_within_it(launch, provider, sample,
                                                                                        tmp_path, free_port):
    hub, node = provider
    address = hub.config["listen"]["address"]

    def share(*args, agency=CONSUMER, check=True):
        return exchange("share", *args, "--hub", address, "--insecure", "--agency", agency, check=check)

    bad = share("request", "--provider", AGENCY, "--resource", "licences", "--scope", "valid ones", "--purpose", "x",
                "--items", "kind", "status", "--rows", "status IN ('有效'", check=False)
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr and "at its end" in bad.stderr
    asked = json.loads(share("request", "--provider", AGENCY, "--resource", "licences", "--scope", "valid or suspended",
                             "--purpose", "licensing", "--items", "kind", "status", "issued",
                             "--rows", "status IN ('有效', '暂停')").stdout)
    approved = json.loads(share("approve", asked["id"], "--items", "kind", "status", "--scope", "status = '有效'",
                                agency=AGENCY).stdout)
    assert approved["approved_rows"] == "status IN ('有效', '暂停') AND status = '有效'"

    replica = tmp_path / "replica.db"
    metrics = free_port()
    config = {"agency": CONSUMER, "hub": {"address": address, "reconnect_max": 0.5, "insecure": True},
              "consumer": {"replica": f"sqlite:///{replica}", "resources": [f"{AGENCY}/licences"],
                           "purpose": "licensing"},
              "metrics": {"address": "127.0.0.1", "port": metrics}}
    consumer = launch.start(["node", "subscribe"], config, name="consumer",
                            ready=lambda: http_answers(f"http://127.0.0.1:{metrics}/metrics"))
    source = Path(sample.path)
    valid = "status = '有效'"
    wait_until(lambda: replica_rows(replica) == filtered(source, valid), "the replica is not the scoped rows", consumer)

    # Rows leave the scope, come back, and the random workload moves many more across it.
    leaving = sample.licences[0]
    with sqlite3.connect(source) as db:
        db.execute("UPDATE licences SET status = '吊销' WHERE licence_no = ?", (leaving,))
    wait_until(lambda: leaving not in [r[0] for r in replica_rows(replica) or []], "a row left the scope", consumer)
    with sqlite3.connect(source) as db:
        db.execute("UPDATE licences SET status = '有效', kind = 'changed' WHERE licence_no = ?", (leaving,))
    wait_until(lambda: [leaving, "changed", "有效"] in (replica_rows(replica) or []), "a row re-entered", consumer)
    run_in_background(sample, 600).join()
    wait_caught_up(node)
    wait_until(lambda: replica_rows(replica) == filtered(source, valid), "the replica is not the scoped rows", consumer)

    # Lookups: within the items and rows approved, from the hub's current state.
    def query(*args, agency=CONSUMER, check=True):
        return exchange("share", "query", "--resource", f"{AGENCY}/licences", *args, "--hub", address, "--insecure",
                        "--agency", agency, check=check)

    in_scope = filtered(source, valid)[0]
    [out_of_scope] = [r for r in filtered(source, f"NOT ({valid})")][:1] or [None]
    wait_until(lambda: [r["row"] for r in json.loads(query("--key", f"licence_no={in_scope[0]}").stdout)["rows"]]
               == [dict(zip(ITEMS, in_scope))], "the lookup does not answer the scoped row")
    if out_of_scope is not None:
        assert json.loads(query("--key", f"licence_no={out_of_scope[0]}").stdout)["rows"] == []
    kind = in_scope[1]
    expected = filtered(source, f"{valid} AND kind = '{kind}'")

    def browse() -> list[list]:
        found, token = [], ""
        while True:
            page = json.loads(query("--where", f"kind = '{kind}'", "--page-size", "3",
                                    *(["--page-token", token] if token else [])).stdout)
            found += [[r["row"][i] for i in ITEMS] for r in page["rows"]]
            token = page["next_page_token"]
            if not token:
                return sorted(found)
    wait_until(lambda: browse() == expected, "browsing does not give the scoped rows of one kind")
    outside = query("--where", "issued > '2000-01-01'", check=False)
    assert outside.returncode == 1 and "PERMISSION_DENIED" in outside.stderr and "issued" in outside.stderr
    stranger = query("--key", f"licence_no={in_scope[0]}", agency=OTHER, check=False)
    assert stranger.returncode == 1 and "PERMISSION_DENIED" in stranger.stderr and "no current approval" in stranger.stderr
    # The current state is rebuilt from the logs while the hub runs: the same answers come back.
    exchange("hub", "rebuild-state", "--config", str(hub.config_path), "--agency", AGENCY)
    wait_until(lambda: browse() == expected, "the rebuilt current state does not give the same rows")

    # A second approval widens the scope: the consumer copies the resource anew to match.
    wider = json.loads(share("request", "--provider", AGENCY, "--resource", "licences", "--scope", "suspended",
                             "--purpose", "licensing", "--items", "kind", "status", "--rows", "status = '暂停'").stdout)
    share("approve", wider["id"], agency=AGENCY)
    both = "status IN ('有效', '暂停')"
    wait_until(lambda: replica_rows(replica) == filtered(source, both), "the replica did not follow the new scope",
               consumer)

    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    queries = [e["details"] for e in audit if e["action"] == "share.delivered" and e["details"]["mode"] == "query"]
    assert queries and all(q["consumer"] == CONSUMER and q["purpose"] == "licensing" for q in queries)
    assert {q["rows"] for q in queries} == {approved["approved_rows"]}
    refused = [e for e in audit if e["action"] == "share.refused"]
    assert {e["actor"] for e in refused} >= {CONSUMER, OTHER}


def test_offline_bundles_for_a_consumer_hold_only_the_scoped_rows_and_follow_a_new_scope(launch, provider, sample,
                                                                                        tmp_path, free_port):
    from conftest import to_toml

    hub, node = provider
    address = hub.config["listen"]["address"]

    def share(*args, agency=CONSUMER):
        return json.loads(exchange("share", *args, "--hub", address, "--insecure", "--agency", agency).stdout)

    def grant(rows: str) -> None:
        asked = share("request", "--provider", AGENCY, "--resource", "licences", "--scope", rows, "--purpose",
                      "licensing", "--items", "kind", "status", "--rows", rows)
        share("approve", asked["id"], agency=AGENCY)

    grant("status = '有效'")
    hub_toml, consumer_toml = str(hub.config_path), tmp_path / "consumer.toml"
    replica = tmp_path / "replica.db"
    consumer_toml.write_text(to_toml({
        "agency": CONSUMER, "hub": {"address": address, "insecure": True},
        "consumer": {"replica": f"sqlite:///{replica}", "resources": [f"{AGENCY}/licences"], "purpose": "licensing",
                     "hub_key": str(tmp_path / "hub.pub")},
        "metrics": {"address": "127.0.0.1", "port": free_port()}}))
    exchange("hub", "keygen", "--config", hub_toml)
    source = Path(sample.path)

    def export_and_import(name: str) -> dict:
        report = json.loads(exchange("hub", "export", "--config", hub_toml, "--consumer", CONSUMER, "--to",
                                     str(tmp_path / name), "--resource", f"{AGENCY}/licences",
                                     "--max-events", "20").stdout)
        imported = json.loads(exchange("node", "import", str(tmp_path / name), "--config", str(consumer_toml)).stdout)
        assert imported["errors"] == []
        return report["resources"][f"{AGENCY}/licences"]

    sample.run(300, per_transaction=10)
    wait_caught_up(node)
    export_and_import("media-1")
    assert replica_rows(replica) == filtered(source, "status = '有效'")
    sample.run(300, per_transaction=10)  # moves rows in and out of the scope
    wait_caught_up(node)
    assert export_and_import("media-2")["after"] > 0  # only what is new
    assert replica_rows(replica) == filtered(source, "status = '有效'")
    grant("status = '暂停'")
    assert export_and_import("media-3")["after"] == 0  # a new scope: the resource from the start
    assert replica_rows(replica) == filtered(source, "status IN ('有效', '暂停')")
