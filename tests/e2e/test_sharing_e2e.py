"""The three-agency sharing story with real hub, provider node and consumer processes (exchange demo-sharing)."""

from __future__ import annotations

import json

from exchange.demos.sharing import CONSUMER_B, CONSUMER_C, PROVIDER, scenario


def test_each_consumer_replica_holds_exactly_its_entitlement_after_approve_reject_dispute_and_revoke(tmp_path):
    result = scenario(tmp_path)
    assert [step for step, held in result["checks"] if not held] == []
    replicas = result["replicas"]
    assert sorted(replicas[CONSUMER_B]) == ["enterprises"]
    assert sorted(replicas[CONSUMER_C]) == ["enterprises", "licences"]
    assert replicas[CONSUMER_C]["licences"]["columns"] == ["licence_no", "kind", "fee"]
    assert "JY3101010002" not in [row[0] for row in replicas[CONSUMER_C]["licences"]["rows"]]  # deleted at source
    [provider] = [p for p in result["report"]["providers"] if p["agency"] == PROVIDER]
    assert provider["requests"] == provider["answered"] == 2
    assert set(provider["delivered"]) == {CONSUMER_B, CONSUMER_C}
    assert all(isinstance(count, int) and count > 0 for count in provider["delivered"].values())
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    deliveries = [e["details"] for e in audit if e["action"] == "share.delivered"]
    assert {(d["consumer"], d["resource"]) for d in deliveries} == {
        (CONSUMER_B, "enterprises"), (CONSUMER_B, "licences"), (CONSUMER_C, "enterprises"), (CONSUMER_C, "licences")}
    assert all(d["purpose"] and d["events"] > 0 for d in deliveries)
    refused = [e for e in audit if e["action"] == "share.refused"]
    assert {(e["actor"], e["details"]["resource"]) for e in refused} >= {(CONSUMER_C, "inspections")}


def test_the_share_commands_refuse_what_the_rules_do_not_allow_and_say_why(launch, tmp_path):
    from test_consumer import AGENCY, CONSUMER, publish_catalog
    from test_exchange_e2e import exchange

    hub = launch.hub()
    publish_catalog(hub.config["store"]["url"])
    address = hub.config["listen"]["address"]

    def share(*args, agency=None):
        return exchange("share", *args, "--hub", address, "--insecure", *(["--agency", agency] if agency else []), check=False)

    refused = share("request", "--provider", AGENCY, "--resource", "persons", "--scope", "all", "--purpose", "x",
                    "--items", "name", agency=CONSUMER)
    assert refused.returncode == 1 and "not shared" in refused.stderr
    asked = share("request", "--provider", AGENCY, "--resource", "licences", "--scope", "all", "--purpose", "x",
                  "--items", "kind", agency=CONSUMER)
    request_id = json.loads(asked.stdout)["id"]
    wrong = share("approve", request_id, agency=CONSUMER)
    assert wrong.returncode == 1 and "only the provider" in wrong.stderr and "FAILED_PRECONDITION" in wrong.stderr
    early = share("decide", request_id, "--approve")
    assert early.returncode == 1 and "decides disputes only" in early.stderr
    listed = json.loads(share("list", agency=AGENCY).stdout)["requests"]
    assert [(r["id"], r["status"], r["overdue"]) for r in listed] == [(request_id, "pending", False)]
    missing = exchange("share", "list", "--hub", address, "--insecure", check=False)
    assert missing.returncode == 2 and "name the agency acting" in missing.stderr
    evaluation = json.loads(exchange("catalog", "report", "--json", "--hub", address, "--insecure").stdout)["evaluation"]
    [provider] = [row for row in evaluation if row["agency"] == AGENCY]
    assert provider["late_answers"] == 0  # counted from the share requests (a hub without sharing reports null)
