"""Three agencies through a real hub over mutual TLS: the agency registry and reviewer roles (Arts. 10, 19, 21),
one datum one source by data element (Art. 12), signed delivery receipts that verify offline (Arts. 15, 17, 23)
and the scheduled evaluation (Art. 22)."""

from __future__ import annotations

import base64
import json
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import to_toml
from support.pki import PKI, tls_settings
from test_exchange_e2e import exchange, wait_caught_up

from exchange.demos.sample import SampleAgency
from exchange.transport.rpc.health import http_answers

PROVIDER = "91310000MB2F31887X"  # market regulation: runs a node, publishes licences
REFERENCE = "91110108551385082Q"  # the legal-person register: publishes a catalog entry only
CONSUMER = "11310000002421001L"  # the tax bureau: keeps a replica of licences
ADMIN = "ops"
LICENCE_ITEMS = [{"name": "licence_no", "type": "C", "length": 32},
                 {"name": "kind", "type": "C", "length": 32},
                 {"name": "holder_uscc", "type": "C", "length": 18, "element": "DE0001"},
                 {"name": "status", "type": "C", "length": 16}]


def wait_for(check, what: str, timeout: float = 90):
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def entry(code: str, agency: str, uscc: str, resource: str, items: list[dict]) -> dict:
    return {"code": code, "name": f"{resource or 'register'} of {agency}", "agency": agency, "provider": "an agency",
            "provider_uscc": uscc, "resource": resource, "summary": "s", "format": "database", "share_type": 1,
            "share_modes": ["platform:interface"], "update_cycle": "realtime", "items": items}


@pytest.fixture(scope="module")
def world(module_launch, tmp_path_factory):
    """A TLS hub with an administrator, certificates for three agencies and two reviewers, and a config file each."""
    directory = tmp_path_factory.mktemp("roles")
    pki = PKI(directory)
    hub = module_launch.hub("roles-hub", config={
        "tls": pki.hub_tls(), "security": {"administrators": [ADMIN]}, "bundles": {"ack_key": str(directory / "hub.key")},
        "evaluation": {"interval": 1.0, "directory": str(directory / "evaluation")}})
    configs = {}
    for role, name in (("administrator", ADMIN), ("agency", PROVIDER), ("agency", REFERENCE), ("agency", CONSUMER),
                       ("reviewer", "rev-a"), ("reviewer", "rev-b")):
        tls = tls_settings(pki.issue(role, name))
        path = directory / f"{name}.toml"
        path.write_text(to_toml({**({"agency": name} if role == "agency" else {}),
                                 "hub": {"address": hub.grpc_address}, "tls": tls}))
        configs[name] = (path, tls)
    return hub, pki, configs, directory


def as_(world, who: str, *args: str, check: bool = True):
    """``exchange ARGS --config <who's config>``: a call to the hub with who's certificate."""
    return exchange(*args, "--config", str(world[2][who][0]), check=check)


def register(world) -> None:
    for agency, reviewer in ((PROVIDER, "rev-a"), (REFERENCE, "rev-b"), (CONSUMER, None)):
        as_(world, ADMIN, "registry", "add", agency, "--uscc", agency, "--name", f"agency {agency}",
            "--district", "静安区", "--admin", f"data-{agency[-4:]}", *(["--reviewer", reviewer] if reviewer else []))


def submit(world, agency: str, content: dict, check: bool = True):
    path = world[3] / f"{content['code'].replace('/', '-')}-{agency}.json"
    path.write_text(json.dumps(content))
    return as_(world, agency, "catalog", "submit", str(path), check=check)


def test_registry_reviewers_provider_codes_data_elements_receipts_and_evaluation(world, module_launch, tmp_path,
                                                                                  free_port):
    hub, pki, configs, directory = world
    # Only administrators manage the registry, and every change is audited.
    refused = as_(world, PROVIDER, "registry", "add", PROVIDER, "--uscc", PROVIDER, "--name", "me", check=False)
    assert refused.returncode == 1 and "not a hub administrator" in refused.stderr
    register(world)
    shown = json.loads(as_(world, PROVIDER, "registry", "show", PROVIDER).stdout)
    assert (shown["reviewers"], shown["district"], shown["version"]) == (["rev-a"], "静安区", 1)
    as_(world, ADMIN, "registry", "update", CONSUMER, "--parent", REFERENCE)
    assert json.loads(as_(world, ADMIN, "registry", "show", CONSUMER).stdout)["parent"] == REFERENCE
    taken = as_(world, ADMIN, "registry", "update", CONSUMER, "--reviewer", "rev-a", check=False)
    assert taken.returncode == 1 and "already reviews for agency" in taken.stderr

    # The CA issues certificates for registered agencies and designated reviewers only.
    registry = directory / "registry.json"
    registry.write_text(as_(world, ADMIN, "registry", "list").stdout)
    unknown = exchange("ca", "issue", "--dir", str(pki.dir), "--agency", "91440300MA5G0000X1", "--registry",
                       str(registry), "--out", str(tmp_path), check=False)
    assert unknown.returncode == 2 and "is not in the registry" in unknown.stderr
    stranger = exchange("ca", "issue", "--dir", str(pki.dir), "--reviewer", "rev-z", "--registry", str(registry),
                        "--out", str(tmp_path), check=False)
    assert stranger.returncode == 2 and "not a designated reviewer" in stranger.stderr
    issued = json.loads(exchange("ca", "issue", "--dir", str(pki.dir), "--agency", CONSUMER, "--registry",
                                 str(registry), "--out", str(tmp_path)).stdout)
    assert issued["registered"].startswith(f"agency {CONSUMER}")

    # A provider code that is not the submitting agency's is refused.
    licences = entry("101001/0001", PROVIDER, REFERENCE, "licences", LICENCE_ITEMS)
    wrong = submit(world, PROVIDER, licences, check=False)
    assert wrong.returncode == 1 and f"its registered unified social credit code is {PROVIDER}" in wrong.stderr
    submit(world, PROVIDER, {**licences, "provider_uscc": PROVIDER})

    # Reviews are the providing agency's reviewers': not the hub administrator's, not another agency's reviewer's.
    for who in (ADMIN, "rev-b", PROVIDER):
        denied = as_(world, who, "catalog", "secrecy", "101001/0001", "--cleared", check=False)
        assert denied.returncode == 1 and "PERMISSION_DENIED" in denied.stderr, who
        assert f"not a designated reviewer of agency {PROVIDER}" in denied.stderr, who
    as_(world, "rev-a", "catalog", "secrecy", "101001/0001", "--cleared")
    as_(world, "rev-a", "catalog", "review", "101001/0001", "--accept-all")
    early = as_(world, "rev-a", "catalog", "publish", "101001/0001", check=False)
    assert early.returncode == 1 and "not a hub administrator" in early.stderr  # administrators publish
    as_(world, ADMIN, "catalog", "publish", "101001/0001")
    shown = json.loads(as_(world, ADMIN, "catalog", "show", "101001/0001").stdout)
    assert shown["secrecy_review"]["reviewer"] == "rev-a" and shown["status"] == "published"

    # One datum, one source: the register holds the legal-person code as data element DE0001 and declares itself
    # its source; its "status" is another datum than the licence status although the names are equal.
    register_items = [{"name": "uscc", "type": "C", "length": 18, "element": "DE0001", "authoritative": True},
                      {"name": "status", "type": "C", "length": 16, "element": "DE0420"}]
    submit(world, REFERENCE, entry("101002/0001", REFERENCE, REFERENCE, "", register_items))
    as_(world, "rev-b", "catalog", "secrecy", "101002/0001", "--cleared")
    as_(world, "rev-b", "catalog", "review", "101002/0001", "--accept-all")
    as_(world, ADMIN, "catalog", "publish", "101002/0001")
    report = json.loads(as_(world, ADMIN, "catalog", "report", "--json").stdout)
    [conflict] = report["one_datum_one_source"]
    assert (conflict["datum"], conflict["conflict"], conflict["suggested_source"]) == (
        "element:de0001", "redundant_copies", REFERENCE)
    assert {p["agency"]: p["items"] for p in conflict["providers"]} == {PROVIDER: ["holder_uscc"],
                                                                        REFERENCE: ["uscc"]}

    # The provider's node ships licences; the consumer keeps a replica and signs a receipt for each batch.
    sample = SampleAgency(str(tmp_path / "provider.db"))
    sample.create(persons=5, legal_persons=5, licences=12)
    node = module_launch.node(hub.grpc_address, sample.path, ["licences"], name="roles-node", agency=PROVIDER,
                              config={"tls": configs[PROVIDER][1]})
    wait_caught_up(node)
    metrics_port = free_port()
    consumer_config = {"agency": CONSUMER, "hub": {"address": hub.grpc_address, "reconnect_max": 0.5},
                       "tls": configs[CONSUMER][1],
                       "consumer": {"replica": f"sqlite:///{tmp_path / 'replica.db'}",
                                    "resources": [f"{PROVIDER}/licences"], "purpose": "tax assessment"},
                       "metrics": {"address": "127.0.0.1", "port": metrics_port}}
    module_launch.start(["node", "subscribe"], consumer_config, name="roles-consumer",
                        ready=lambda: http_answers(f"http://127.0.0.1:{metrics_port}/metrics"))
    evidence = directory / "receipts.jsonl"

    def receipted() -> list[dict]:
        as_(world, ADMIN, "share", "receipts", "--provider", PROVIDER, "--out", str(evidence))
        lines = [json.loads(line) for line in evidence.read_text().splitlines()]
        return lines if sum(line["receipt"]["events"] for line in lines) >= 12 else []

    receipts = wait_for(receipted, "receipts for every licence delivered")
    assert {(r["receipt"]["consumer"], r["receipt"]["resource"], r["receipt"]["purpose"]) for r in receipts} == {
        (CONSUMER, "licences", "tax assessment")}
    audit_log = Path(hub.config["store"]["url"].removeprefix("sqlite:///")).parent / "audit.log"
    audit = [json.loads(line) for line in audit_log.read_text().splitlines()]
    assert {e["details"]["receipt"] for e in audit if e["action"] == "share.receipt"} == {
        r["receipt_id"] for r in receipts}
    reconciled = exchange("audit", "reconcile", "--config", str(hub.config_path))  # registry and receipts audited
    assert "agree" in reconciled.stdout, reconciled.stdout

    # The consumer's own export, then verification with the CA certificate alone.
    mine = directory / "mine.jsonl"
    as_(world, CONSUMER, "share", "receipts", "--consumer", CONSUMER, "--out", str(mine))
    assert len(mine.read_text().splitlines()) >= len(receipts)
    others = as_(world, CONSUMER, "share", "receipts", "--provider", REFERENCE, check=False)
    assert others.returncode == 1 and "its own deliveries" in others.stderr
    ca = str(pki.dir / "ca.pem")
    verified = json.loads(exchange("share", "verify-receipts", str(evidence), "--ca", ca).stdout)
    assert verified["verified"] == len(receipts) and verified["failed"] == []

    # A receipt changed after signing (fewer events claimed) no longer verifies; nor one checked against another CA.
    first = receipts[0]
    claimed = dict(first["receipt"], events=first["receipt"]["events"] - 1)
    forged = {**first, "receipt": claimed,
              "payload": base64.b64encode(json.dumps(claimed, sort_keys=True, separators=(",", ":")).encode()).decode()}
    tampered = directory / "tampered.jsonl"
    tampered.write_text("\n".join(json.dumps(r) for r in [forged, *receipts[1:]]) + "\n")
    result = exchange("share", "verify-receipts", str(tampered), "--ca", ca, check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["failed"] == [
        {"line": 1, "reason": "the signature does not match the receipt and the consumer's certificate"}]
    other_ca = PKI(tmp_path / "other", name="Another CA")
    result = exchange("share", "verify-receipts", str(evidence), "--ca", str(other_ca.dir / "ca.pem"), check=False)
    assert result.returncode == 1 and "not issued by the CA" in result.stdout

    # A lookup (Art. 16) is acknowledged as well: the rows of the answer, signed by the asking agency.
    def page() -> dict:
        answer = json.loads(as_(world, CONSUMER, "share", "query", "--resource", f"{PROVIDER}/licences",
                                "--page-size", "5", "--purpose", "tax assessment").stdout)
        return answer if len(answer["rows"]) == 5 else {}

    wait_for(page, "a lookup answered from the hub's current state")

    # Offline exchange: the consumer acknowledges each bundle it applies as well.
    exchange("hub", "keygen", "--config", str(hub.config_path))
    media = directory / "media"
    exported = json.loads(exchange("hub", "export", "--config", str(hub.config_path), "--consumer", CONSUMER,
                                   "--to", str(media), "--purpose", "tax assessment", "--max-events", "5").stdout)
    assert exported["resources"][f"{PROVIDER}/licences"]["bundles"] >= 3
    offline = directory / "offline-consumer.toml"
    offline.write_text(to_toml({**consumer_config, "consumer": {
        **consumer_config["consumer"], "replica": f"sqlite:///{tmp_path / 'offline.db'}",
        "hub_key": str(directory / "hub.pub")}}))
    imported = json.loads(exchange("node", "import", str(media), "--config", str(offline)).stdout)
    assert imported["errors"] == [] and imported["receipts"] == exported["resources"][f"{PROVIDER}/licences"]["bundles"]
    as_(world, ADMIN, "share", "receipts", "--consumer", CONSUMER, "--out", str(evidence))
    kinds = [json.loads(line)["receipt"]["kind"] for line in evidence.read_text().splitlines()]
    assert kinds.count("bundle") == imported["receipts"] and "stream" in kinds
    queried = [json.loads(line)["receipt"] for line in evidence.read_text().splitlines()
               if json.loads(line)["receipt"]["kind"] == "query"]
    assert queried and queried[-1]["events"] == 5 and queried[-1]["purpose"] == "tax assessment"
    assert json.loads(exchange("share", "verify-receipts", str(evidence), "--ca", ca).stdout)["failed"] == []
    receipts = [json.loads(line) for line in evidence.read_text().splitlines()]

    # The scheduled evaluation: files appear, the latest counts the receipted deliveries, and the gauges say so.
    def evaluated() -> dict | None:
        for path in sorted((directory / "evaluation").glob("evaluation-*.json"), reverse=True):
            found = json.loads(path.read_text())
            rows = {r["agency"]: r for r in found["agencies"]}
            if rows.get(PROVIDER, {}).get("deliveries_receipted", 0) >= len(receipts):
                return {"path": path, "rows": rows}
        return None

    latest = wait_for(evaluated, "an evaluation counting the receipts")
    row = latest["rows"][PROVIDER]
    assert row["deliveries"] >= row["deliveries_receipted"] >= len(receipts) and row["completeness"] == 1.0
    stem = latest["path"].with_suffix("")
    assert stem.with_suffix(".csv").read_text().splitlines()[0].startswith("agency,entries,published")
    assert "Evaluation of data sharing (Art. 22)" in stem.with_suffix(".txt").read_text()
    metrics = urllib.request.urlopen(f"http://127.0.0.1:{hub.config['metrics']['port']}/metrics", timeout=10).read()
    assert f'exchange_hub_evaluation_deliveries_receipted{{agency="{PROVIDER}"}}' in metrics.decode()
    assert "exchange_hub_evaluation_last_run_timestamp_seconds" in metrics.decode()

