"""The consumer node and the offline consumer exchange, with real hub, node and consumer processes."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import pytest
from test_exchange_e2e import AGENCY, exchange, run_in_background, wait_caught_up

from exchange.contracts.events import make_mapper
from exchange.demos.sample import SampleAgency
from exchange.store import EventStore
from exchange.transport.rpc.health import http_answers
from hub.catalog.catalog import Catalog
from hub.workdays import WorkingCalendar

CONSUMER = "11310000002421001L"
COLUMNS = {"persons": ["id_number", "name", "gender", "birth_date", "address", "phone"],
           "legal_persons": ["uscc", "name", "legal_representative", "registered_capital", "established", "address"],
           "licences": ["licence_no", "kind", "holder_uscc", "responsible_person", "issued", "expires", "status", "seal"]}
KEYS = {"persons": "id_number", "legal_persons": "uscc", "licences": "licence_no"}
# What the consumer is entitled to: legal persons (unconditional) in full, two items of licences (approved).
ENTITLED = {"legal_persons": COLUMNS["legal_persons"], "licences": ["licence_no", "kind", "status"]}


def publish_catalog(store_url: str) -> None:
    """Entries for the sample agency's tables: legal persons unconditional, licences conditional, persons not shared."""
    catalog = Catalog(store_url, WorkingCalendar())
    try:
        for number, (table, share_type) in enumerate([("legal_persons", 1), ("licences", 2), ("persons", 3)], 1):
            content = {
                "code": f"101001/{number:04d}", "name": table, "agency": AGENCY, "provider": "Sample agency",
                "provider_uscc": "91310000MA1FL0000N", "resource": table, "summary": f"the {table} table",
                "format": "database", "share_type": share_type,
                "share_condition": "administrative licensing" if share_type == 2 else "",
                "not_shared_basis": "Personal Information Protection Law" if share_type == 3 else "",
                "share_modes": ["platform:interface"], "open_to_public": False, "update_cycle": "realtime",
                "items": [{"name": c, "type": "C", "length": 64} for c in COLUMNS[table]],
            }
            catalog.edit(AGENCY, content, submit=True)
            catalog.record_secrecy_review(content["code"], "reviewer", True)
            catalog.review_items(content["code"], "reviewer", {c: "" for c in COLUMNS[table]})
            catalog.publish(content["code"], "reviewer")
    finally:
        catalog.close()


def approve_licences(hub) -> None:
    """The consumer requests licences and the provider approves two of the items asked for."""
    address = hub.config["listen"]["address"]
    asked = json.loads(exchange("share", "request", "--hub", address, "--insecure", "--agency", CONSUMER, "--provider", AGENCY,
                                "--resource", "licences", "--scope", "all", "--purpose", "licensing",
                                "--items", "kind", "status", "issued").stdout)
    approved = json.loads(exchange("share", "approve", asked["id"], "--hub", address, "--insecure", "--agency", AGENCY,
                                   "--items", "kind", "status").stdout)
    assert approved["status"] == "approved" and approved["approved_items"] == ["kind", "status"]


def projected(source: Path) -> dict:
    with sqlite3.connect(source) as db:
        return {t: [list(r) for r in db.execute(f"SELECT {', '.join(c)} FROM {t} ORDER BY {KEYS[t]}")]
                for t, c in ENTITLED.items()}


def replica_content(replica: Path) -> dict:
    if not replica.exists():
        return {}
    with sqlite3.connect(replica) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table' "
                                           "AND name NOT LIKE '\\_exchange\\_%' ESCAPE '\\'")]
        found = {}
        for t in tables:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{t}")')]
            assert columns == ENTITLED.get(t), f"replica table {t} has columns {columns}"
            found[t] = [list(r) for r in db.execute(f'SELECT * FROM "{t}" ORDER BY 1')]
        return found


def wait_replica_equals(source: Path, replica: Path, consumer=None, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while replica_content(replica) != projected(source):
        assert consumer is None or consumer.running, consumer.log()[-3000:]
        assert time.monotonic() < deadline, f"the replica does not match the entitlement\n{consumer and consumer.log()[-3000:]}"
        time.sleep(0.2)


def hub_resources(hub) -> set[str]:
    store = EventStore(hub.config["store"]["url"], create=False)
    try:
        recorder, after, found, mapper = store.recorder(AGENCY), 0, set(), make_mapper()
        while batch := recorder.read(after, 5000):
            found |= {mapper.to_domain_event(n).resource for n in batch}
            after = batch[-1].id
        return found
    finally:
        store.close()


@pytest.fixture
def sample(tmp_path) -> SampleAgency:
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=60, legal_persons=30, licences=40)
    return agency


@pytest.fixture
def provider(launch, sample, tmp_path):
    """A hub with the catalog published and a node keeping persons at home; (hub, node)."""
    hub = launch.hub(config={"bundles": {"ack_key": str(tmp_path / "hub.key")}})
    publish_catalog(hub.config["store"]["url"])
    node = launch.node(hub.grpc_address, sample.path, ["persons", "legal_persons", "licences"],
                       config={"source": {"not_shared": ["persons"]}})
    return hub, node


def consumer_config(tmp_path, hub, free_port) -> dict:
    return {"agency": CONSUMER,
            "hub": {"address": hub.config["listen"]["address"], "reconnect_max": 0.5, "insecure": True},
            "consumer": {"replica": f"sqlite:///{tmp_path / 'replica.db'}",
                         "resources": [f"{AGENCY}/legal_persons", f"{AGENCY}/licences", f"{AGENCY}/persons"],
                         "purpose": "licensing", "hub_key": str(tmp_path / "hub.pub")},
            "metrics": {"address": "127.0.0.1", "port": free_port()}}


def test_a_consumer_killed_mid_stream_resumes_without_gap_or_duplicate(launch, provider, sample, tmp_path, free_port):
    hub, node = provider
    approve_licences(hub)
    config = consumer_config(tmp_path, hub, free_port)
    metrics_url = f"http://127.0.0.1:{config['metrics']['port']}/metrics"
    consumer = launch.start(["node", "subscribe"], config, name="consumer", ready=lambda: http_answers(metrics_url))
    workload = run_in_background(sample, 1500)
    for _ in range(3):
        time.sleep(1.0)
        consumer = launch.restart(consumer, ready=lambda: http_answers(metrics_url))  # SIGKILL, then start again
    workload.join()
    wait_caught_up(node)
    wait_replica_equals(Path(sample.path), tmp_path / "replica.db", consumer)
    assert "persons" not in hub_resources(hub)  # kept at the node, never published
    assert "not shared" in consumer.log()  # the hub refused persons, and the replica holds none


def test_tables_emptied_or_dropped_and_created_again_reach_the_consumer(launch, provider, sample, tmp_path,
                                                                         free_port):
    hub, node = provider
    approve_licences(hub)
    config = consumer_config(tmp_path, hub, free_port)
    metrics_url = f"http://127.0.0.1:{config['metrics']['port']}/metrics"
    consumer = launch.start(["node", "subscribe"], config, name="consumer", ready=lambda: http_answers(metrics_url))
    wait_replica_equals(Path(sample.path), tmp_path / "replica.db", consumer)
    with sqlite3.connect(sample.path, isolation_level=None) as db:
        db.execute("DELETE FROM legal_persons")
        create = db.execute("SELECT sql FROM sqlite_master WHERE name = 'licences'").fetchone()[0]
        kept = db.execute("SELECT * FROM licences ORDER BY licence_no LIMIT 5").fetchall()
        db.execute("DROP TABLE licences")  # its rows go without a trigger firing
        db.execute(create)
        db.executemany(f"INSERT INTO licences VALUES ({', '.join('?' * len(kept[0]))})", kept)
    wait_caught_up(node)
    wait_replica_equals(Path(sample.path), tmp_path / "replica.db", consumer)
    assert replica_content(tmp_path / "replica.db")["legal_persons"] == []
    assert len(replica_content(tmp_path / "replica.db")["licences"]) == 5


def test_the_hub_refuses_published_events_of_a_not_shared_resource(launch, sample, tmp_path):
    hub = launch.hub()
    publish_catalog(hub.config["store"]["url"])
    node = launch.node(hub.grpc_address, sample.path, ["persons", "legal_persons"])  # no [source] not_shared
    deadline = time.monotonic() + 60
    while "not shared" not in hub.log():
        assert time.monotonic() < deadline, hub.log()[-3000:]
        time.sleep(0.2)
    assert "persons" not in hub_resources(hub)
    audit = [json.loads(line)["action"] for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert "share.not_shared_refused" in audit
    node.kill()
    node.config["source"]["not_shared"] = ["persons"]
    node = launch.start(node.args, node.config, name="node-fixed")
    wait_caught_up(node)
    assert hub_resources(hub) == {"legal_persons"}


def test_offline_export_and_import_give_the_consumer_its_entitlement_once(launch, provider, sample, tmp_path, free_port):
    hub, node = provider
    approve_licences(hub)
    wait_caught_up(node)
    hub_toml, consumer_toml = str(hub.config_path), tmp_path / "consumer.toml"
    from conftest import to_toml
    consumer_toml.write_text(to_toml(consumer_config(tmp_path, hub, free_port)))
    keys = json.loads(exchange("hub", "keygen", "--config", hub_toml).stdout)
    assert Path(keys["ack_key"]["public_key"]) == tmp_path / "hub.pub"

    first = tmp_path / "media-1"
    report = json.loads(exchange("hub", "export", "--config", hub_toml, "--consumer", CONSUMER, "--to", str(first),
                                 "--purpose", "licensing", "--max-events", "25").stdout)
    assert set(report["resources"]) == {f"{AGENCY}/legal_persons", f"{AGENCY}/licences"}
    assert "not shared" in report["refused"][f"{AGENCY}/persons"]
    imported = json.loads(exchange("node", "import", str(first), "--config", str(consumer_toml)).stdout)
    assert imported["errors"] == []
    assert replica_content(tmp_path / "replica.db") == projected(Path(sample.path))
    again = json.loads(exchange("node", "import", str(first), "--config", str(consumer_toml)).stdout)
    assert [r["events"] for r in again["resources"].values()] == [0, 0]  # idempotent

    sample.run(300, per_transaction=10)
    wait_caught_up(node)
    second = tmp_path / "media-2"
    report = json.loads(exchange("hub", "export", "--config", hub_toml, "--consumer", CONSUMER, "--to", str(second),
                                 "--purpose", "licensing", "--max-events", "25").stdout)
    licences = report["resources"][f"{AGENCY}/licences"]
    assert licences["after"] > 0 and licences["bundles"] > 1  # only what is new, in several bundles
    bundles = sorted((second / CONSUMER / AGENCY / "licences").glob("*.bundle"))
    held_back = bundles[0].read_bytes()
    bundles[0].unlink()
    missing = exchange("node", "import", str(second), "--config", str(consumer_toml), check=False)
    assert missing.returncode == 1 and "a bundle is missing" in missing.stdout
    tampered = bytearray(held_back)
    tampered[-100] ^= 0xFF
    bundles[0].write_bytes(bytes(tampered))
    refused = exchange("node", "import", str(second), "--config", str(consumer_toml), check=False)
    assert refused.returncode == 1 and bundles[0].name in refused.stdout
    bundles[0].write_bytes(held_back)
    exchange("node", "import", str(second), "--config", str(consumer_toml))
    assert replica_content(tmp_path / "replica.db") == projected(Path(sample.path))


def test_the_consumer_example_config_loads_and_names_its_resources():
    from consumer.subscriber import wanted
    from node import config

    cfg = config.load_consumer(Path(__file__).resolve().parents[2] / "deploy/config/consumer.example.toml",
                               environ={})
    assert [(w.provider, w.resource) for w in wanted(cfg)] == [(AGENCY, "legal_persons"), (AGENCY, "licences")]


@pytest.mark.parametrize("resources, message", [
    ([f"{AGENCY}/licences", f"{CONSUMER}/licences"], "would share one replica table"),
    (["licences"], "not PROVIDER/RESOURCE"),
    ([], "lists nothing"),
])
def test_consumer_resources_that_cannot_work_are_refused(resources, message):
    from consumer.subscriber import wanted
    from exchange.common.config import from_values
    from node import config

    cfg = from_values(config.CONSUMER_SETTINGS, {"agency": CONSUMER, "consumer.replica": "sqlite:///replica.db",
                                                 "consumer.resources": resources})
    with pytest.raises(ValueError, match=message):
        wanted(cfg)


def test_a_node_keeping_not_shared_events_is_restored_from_the_hub_without_losing_shared_ones(launch, provider,
                                                                                              sample, tmp_path):
    from test_recovery import remove_store

    hub, node = provider
    sample.run(300, per_transaction=10)
    with sqlite3.connect(sample.path) as db:  # the latest events are ones the node keeps
        db.execute("UPDATE persons SET phone = '021-0000' WHERE rowid IN (SELECT rowid FROM persons LIMIT 5)")
    wait_caught_up(node)  # settled at the node, though the hub holds less
    node.kill()
    remove_store(node.config["store"]["url"])
    restored = json.loads(exchange("node", "restore", "--config", str(node.config_path)).stdout)
    assert restored["events"] < restored["hub_position"]  # the node ids of the events it kept are not at the hub
    node = launch.restart(node)
    sample.run(300, per_transaction=10)
    wait_caught_up(node)
    target = tmp_path / "rebuilt.db"
    exchange("replay", "--store", hub.config["store"]["url"], "--agency", AGENCY, "--target", f"sqlite:///{target}")
    exchange("verify", "--source", f"sqlite:///{sample.path}", "--target", f"sqlite:///{target}",
             "--tables", "legal_persons", "licences")
    assert "persons" not in hub_resources(hub)


def test_hub_import_quarantines_a_bundle_holding_a_not_shared_resource(launch, sample, tmp_path, free_port):
    from conftest import to_toml

    node = launch.node(f"127.0.0.1:{free_port()}", sample.path, ["persons", "legal_persons"],  # no hub, no not_shared
                       config={"bundles": {"key": str(tmp_path / "node.key")}})
    exchange("node", "keygen", "--config", str(node.config_path))
    deadline = time.monotonic() + 60
    while json.loads(exchange("node", "status", "--config", str(node.config_path), "--json").stdout)["source_pending"]:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    exchange("node", "export", "--config", str(node.config_path), "--to", str(tmp_path / "media"))
    hub_toml = tmp_path / "hub.toml"
    store = f"sqlite:///{tmp_path / 'hub-store.db'}"
    hub_toml.write_text(to_toml({"store": {"url": store},
                                 "bundles": {"trusted_keys": {AGENCY: str(tmp_path / f"{AGENCY}.pub")}}}))
    publish_catalog(store)
    refused = exchange("hub", "import", str(tmp_path / "media"), "--config", str(hub_toml), check=False)
    report = json.loads(refused.stdout)
    assert refused.returncode == 1 and len(report["quarantined"]) == 1
    assert "persons" in json.dumps(report["quarantined"]) and "not shared" in json.dumps(report["quarantined"])


def test_a_consumer_without_tls_settings_exits_2_naming_them(tmp_path):
    import subprocess
    import sys

    config = tmp_path / "consumer.toml"
    config.write_text(f'agency = "{CONSUMER}"\n[hub]\naddress = "hub.example.gov.cn:50051"\n'
                      f'[consumer]\nreplica = "sqlite:///{tmp_path / "replica.db"}"\nresources = ["{AGENCY}/licences"]\n')
    started = subprocess.run([sys.executable, "-m", "exchange", "node", "subscribe", "--config", str(config)],
                             capture_output=True, text=True, timeout=120)
    assert started.returncode == 2, started.stderr
    assert "[tls]" in started.stderr and "Traceback" not in started.stderr
