"""Values a client sent are repeated as short excerpts, and catalog and sharing text has sane limits."""

from __future__ import annotations

import json

import pytest
from test_catalog import entry
from test_sharing import CONSUMER, PROVIDER, world  # noqa: F401 - a fixture

from exchange.contracts.text import bounded, excerpt
from hub.audit import AuditLog, verify
from hub.catalog import metadata
from hub.sharing.requests import WorkflowError

HUGE = "x" * 6_000_000


def test_an_excerpt_is_short_escaped_and_identifies_the_value():
    quoted = excerpt("\x00" + HUGE)
    assert len(quoted) < 200 and "\\x00" in quoted and "6000001 characters" in quoted and "sha256" in quoted
    assert excerpt("short") == "'short'"
    assert bounded({"k": ["a", HUGE]})["k"][0] == "a" and len(bounded({"k": [HUGE]})["k"][0]) < 1024


@pytest.mark.parametrize("field", ["name", "summary", "share_condition", "provider"])
def test_a_catalog_text_field_over_its_limit_is_refused_without_repeating_it(field):
    problems = metadata.validate(entry(**{field: HUGE}))
    assert [str(p) for p in problems] == [f"{field}: at most {metadata.TEXT_LIMITS[field]} characters, got 6000000"]


def test_a_catalog_entry_with_too_many_items_or_long_item_names_is_refused():
    items = [{"name": f"c{i}", "type": "C", "length": 1} for i in range(metadata.MAX_ITEMS + 1)]
    assert any("at most 2000 data items" in str(p) for p in metadata.validate(entry(items=items)))
    long_name = [{"name": "n" * 1000, "type": "C", "length": 1}]
    assert any("items[0].name: at most 128 characters" in str(p) for p in metadata.validate(entry(items=long_name)))


def test_a_share_request_with_an_attacker_sized_purpose_is_refused_and_nothing_is_stored(world):
    ledger, *_ = world
    with pytest.raises(WorkflowError, match="purpose: at most 4000 characters, got 6000000") as refused:
        ledger.request(CONSUMER, PROVIDER, "licences", scope="Pudong", purpose=HUGE, items=["name"])
    assert len(str(refused.value)) < 200
    assert ledger.list(None, None) == []


def test_the_audit_log_keeps_an_excerpt_and_the_hash_of_a_huge_detail(tmp_path):
    audit = AuditLog(tmp_path / "audit.log")
    audit.record("publisher.connected", "A", node_version=HUGE)
    line = (tmp_path / "audit.log").read_text()
    assert len(line) < 2000
    assert "6000000 characters" in json.loads(line)["details"]["node_version"]
    assert verify(tmp_path / "audit.log").valid
