"""The three-agency sharing story with real hub, provider node and consumer processes (exchange demo-sharing)."""

from __future__ import annotations

import json

from hub.sharing.demo import CONSUMER_B, CONSUMER_C, PROVIDER, scenario


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
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    deliveries = [e["details"] for e in audit if e["action"] == "share.delivered"]
    assert {(d["consumer"], d["resource"]) for d in deliveries} == {
        (CONSUMER_B, "enterprises"), (CONSUMER_B, "licences"), (CONSUMER_C, "enterprises"), (CONSUMER_C, "licences")}
    assert all(d["purpose"] and d["events"] > 0 for d in deliveries)
    refused = [e for e in audit if e["action"] == "share.refused"]
    assert {(e["actor"], e["details"]["resource"]) for e in refused} >= {(CONSUMER_C, "inspections")}
