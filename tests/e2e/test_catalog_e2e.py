"""The catalog through real processes: a node drafts entry files, the agency submits them, administrators review
over gRPC, a schema change at the source flags the entry, and the hub reports; identifiers are checked at capture."""

from __future__ import annotations

import json
import re
import sqlite3
import time
import tomllib
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from test_exchange_e2e import AGENCY, exchange, wait_caught_up

from exchange.demos.sample import TABLES, SampleAgency
from exchange.transport.rpc.health import is_serving
from protos.exchange.v1 import catalog_pb2, catalog_pb2_grpc

USCC = "91310000MB2F31887X"
INVALID_ID = "110105194912310021"  # the valid check character is X
IDENTIFIERS = {"persons": {"id_number": "resident_id"}, "legal_persons": {"uscc": "uscc"}}


@pytest.fixture(scope="module")
def exchange_pair(module_launch, tmp_path_factory):
    directory = tmp_path_factory.mktemp("catalog-agency")
    agency = SampleAgency(str(directory / "agency.db"))
    agency.create(persons=20, legal_persons=10, licences=10)
    with sqlite3.connect(agency.path) as conn:
        conn.execute("INSERT INTO persons (id_number, name, gender, birth_date) VALUES (?, '王伟', '男', '1949-12-31')",
                     (INVALID_ID,))
        conn.execute("INSERT INTO legal_persons (uscc, name) VALUES ('91310000MB2F31887A', '测试贸易有限公司')")
    hub = module_launch.hub(name="catalog-hub")
    node = module_launch.node(hub.grpc_address, Path(agency.path), TABLES, name="catalog-node",
                              config={"source": {"identifiers": IDENTIFIERS}})
    wait_caught_up(node)
    return hub, node, agency, directory


def fill(text: str, **values: str) -> str:
    """Set top-level keys of an entry file (the first line of each key)."""
    for key, value in values.items():
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {value}", text, count=1, flags=re.M)
        assert n == 1, key
    return text


def catalog(*args: str, hub, check: bool = True):
    return exchange("catalog", *args, "--hub", hub.grpc_address, "--insecure", check=check)


def wait_for(check, what: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def test_the_catalog_service_is_served_with_health_and_reflection(exchange_pair):
    hub = exchange_pair[0]
    assert is_serving(hub.grpc_address, "exchange.v1.Catalog")
    with grpc.insecure_channel(hub.grpc_address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        [answer] = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        assert "exchange.v1.Catalog" in {s.name for s in answer.list_services_response.service}


def test_draft_submit_review_publish_flag_and_report(exchange_pair):
    hub, node, agency, directory = exchange_pair
    drafts = directory / "drafts"
    written = json.loads(exchange("catalog", "draft", "--config", str(node.config_path), "--to", str(drafts)).stdout)
    assert sorted(Path(p).name for p in written["written"]) == ["legal_persons.toml", "licences.toml", "persons.toml"]
    persons = drafts / "persons.toml"
    draft = tomllib.loads(persons.read_text())
    assert draft["resource"] == "persons" and draft["agency"] == AGENCY
    assert [(i["name"], i["type"]) for i in draft["items"]][:2] == [("id_number", "C"), ("name", "C")]
    licences = tomllib.loads((drafts / "licences.toml").read_text())
    assert ("seal", "B") in [(i["name"], i["type"]) for i in licences["items"]]

    # An unedited draft: every problem named with file, field and rule, and nothing submitted.
    refused = catalog("submit", str(persons), str(drafts / "licences.toml"), hub=hub, check=False)
    assert refused.returncode == 2
    assert f"{persons}: code: required: e.g. 101001/0001" in refused.stderr
    assert f"{persons}: share_type: required: 1 (unconditional), 2 (conditional) or 3 (not shared)" in refused.stderr
    assert "nothing submitted: 2 of 2 files have problems" in refused.stderr
    assert json.loads(catalog("list", "--json", hub=hub).stdout) == []

    persons.write_text(fill(persons.read_text(), code='"101001/0001"', name='"Resident persons"',
                            provider='"Market regulation"', provider_uscc=f'"{USCC}"',
                            summary='"Persons registered"', share_type="1"))
    submitted = json.loads(catalog("submit", str(persons), hub=hub).stdout)
    assert submitted["status"] == "submitted"

    early = catalog("publish", "101001/0001", hub=hub, check=False)
    assert early.returncode == 1 and "without a recorded secrecy review" in early.stderr
    catalog("secrecy", "101001/0001", "--cleared", "--sensitivity", "personal", hub=hub)
    catalog("review", "101001/0001", "--accept-all", hub=hub)
    published = json.loads(catalog("publish", "101001/0001", hub=hub).stdout)
    assert published["status"] == "published"
    [listed] = json.loads(catalog("list", "--json", "--status", "published", hub=hub).stdout)
    assert listed["published"]["resource"] == "persons" and listed["publish_date"]
    # The node's config says where the hub is.
    via_config = json.loads(exchange("catalog", "list", "--json", "--config", str(node.config_path)).stdout)
    assert [e["code"] for e in via_config] == ["101001/0001"]
    nowhere = exchange("catalog", "list", check=False)
    assert nowhere.returncode == 2 and "name the hub: --hub HOST:PORT, or --config with a [hub] address" in nowhere.stderr

    # The source table changes: the node ships the schema event, the hub flags the entry.
    with sqlite3.connect(agency.path) as conn:
        conn.execute("ALTER TABLE persons ADD COLUMN email TEXT")
    shown = wait_for(lambda: (e := json.loads(catalog("show", "101001/0001", hub=hub).stdout))["schema_flag"] and e,
                     "the schema flag")
    assert "email" in shown["schema_flag"]["columns"] and shown["schema_flag"]["due"]
    history = json.loads(catalog("show", "101001/0001", "--history", hub=hub).stdout)
    assert [e["kind"] for e in history] == ["Edited", "Submitted", "SecrecyReviewed", "ItemsReviewed", "Published",
                                            "SchemaFlagged"]

    report = json.loads(catalog("report", "--json", hub=hub).stdout)
    [row] = report["evaluation"]
    assert (row["agency"], row["resources_captured"], row["resources_published"]) == (AGENCY, 3, 1)
    assert row["uncatalogued_resources"] == ["legal_persons", "licences"] and row["sync_lag_seconds"] is not None
    later = json.loads(catalog("report", "--json", "--at", shown["schema_flag"]["due"], hub=hub).stdout)
    assert [(o["code"], o["kind"]) for o in later["overdue"]] == [("101001/0001", "update")]
    assert "Overdue entries:" in catalog("report", hub=hub).stdout

    document = json.loads(catalog("dcat", hub=hub).stdout)
    [dataset] = document["dcat:dataset"]
    assert dataset["dct:identifier"] == "101001/0001" and dataset["dct:publisher"]["dct:identifier"] == USCC

    status = json.loads(urllib.request.urlopen(
        f"http://127.0.0.1:{hub.config['metrics']['port']}/status.json", timeout=10).read())
    assert [r["catalog_entries_overdue"] for r in status["agencies"]] == [0]
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{hub.config['metrics']['port']}/metrics", timeout=10).read()
    assert f'exchange_hub_catalog_entries_overdue{{agency="{AGENCY}"}} 0.0' in metrics.decode()


def test_the_hub_refuses_what_breaks_the_rules_and_names_it(exchange_pair, tmp_path):
    hub = exchange_pair[0]
    entry = tmp_path / "bad.json"
    entry.write_text(json.dumps({"code": "101009/0001", "name": "x", "agency": AGENCY, "provider": "p",
                                 "provider_uscc": USCC, "summary": "s", "format": "database", "share_type": 3,
                                 "not_shared_basis": "", "share_modes": ["mail"], "update_cycle": "daily",
                                 "items": [{"name": "a", "type": "C", "length": 1}]}))
    result = catalog("submit", str(entry), hub=hub, check=False)
    assert result.returncode == 2 and f"{entry}: not_shared_basis: required when share_type is 3" in result.stderr
    missing = catalog("publish", "999999/0001", hub=hub, check=False)
    assert missing.returncode == 1 and "no catalog entry has code 999999/0001 (NOT_FOUND)" in missing.stderr
    with grpc.insecure_channel(hub.grpc_address) as channel:
        stub = catalog_pb2_grpc.CatalogStub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.ReviewItems(catalog_pb2.ReviewItemsRequest(
                code="101001/0001", decisions=[catalog_pb2.ItemDecision(item="name", accepted=False)]), timeout=30)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert refused.value.details() == "data item name is not accepted: say why"


def test_invalid_identifiers_are_captured_counted_and_reported(exchange_pair):
    hub, node, agency, _ = exchange_pair
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{node.config['metrics']['port']}/metrics", timeout=10).read()
    text = metrics.decode()
    assert 'exchange_node_invalid_identifiers_total{kind="resident_id",resource="persons"} 1.0' in text
    assert 'exchange_node_invalid_identifiers_total{kind="uscc",resource="legal_persons"} 1.0' in text
    report = json.loads(exchange("node", "quality", "--config", str(node.config_path), "--json").stdout)
    assert [(f["resource"], f["column"], f["value"]) for f in report["invalid"]] == [
        ("legal_persons", "uscc", "91310000MB2F31887A"), ("persons", "id_number", INVALID_ID)]

    # Corrected at the source: no longer listed, though the history still counts it.
    with sqlite3.connect(agency.path) as conn:
        conn.execute("UPDATE legal_persons SET uscc = ? WHERE uscc = '91310000MB2F31887A'", (USCC,))
    wait_caught_up(node)
    report = json.loads(exchange("node", "quality", "--config", str(node.config_path), "--json").stdout)
    assert [f["resource"] for f in report["invalid"]] == ["persons"]
    assert {(s["resource"], s["invalid_now"], s["invalid_captured"]) for s in report["summary"]} == {
        ("legal_persons", 0, 1), ("persons", 1, 1)}
    assert "not a valid resident_id" in exchange("node", "quality", "--config", str(node.config_path)).stdout
