"""The agency registry's rules, receipt payloads and signatures, item data elements and the evaluation schedule."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from test_catalog import entry

from exchange.store import open_store
from exchange.transport.receipts import ReceiptError, parse, sign
from hub.audit import AuditLog
from hub.catalog import metadata, schedule
from hub.registry.agencies import NotRegistered, Registry, RegistryError

A, B, C = "91310000MB2F31887X", "91110108551385082Q", "11310000002421001L"


@pytest.fixture
def registry(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    yield Registry(store, AuditLog(tmp_path / "audit.log"))
    store.close()


def record(agency: str, **changes) -> dict:
    return {"agency": agency, "uscc": agency, "name": f"agency {agency}", "district": "静安区",
            "administrators": ["data.admin"], "reviewers": [], **changes}


def test_the_registry_is_in_force_once_an_agency_is_registered_and_checks_provider_codes(registry, tmp_path):
    registry.check_entry(A, B)  # nothing registered: the registry is not in force
    registry.save(record(A, reviewers=["rev-a"]), "ops", create=True)
    with pytest.raises(RegistryError, match=f"its registered unified social credit code is {A}"):
        registry.check_entry(A, B)
    with pytest.raises(NotRegistered, match=f"agency {B} is not in the agency registry"):
        registry.check_entry(B, B)
    registry.check_entry(A, A)
    assert registry.is_reviewer("rev-a", A) and not registry.is_reviewer("rev-a", B)
    audit = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    assert [(e["action"], e["actor"], e["details"]["agency"]) for e in audit] == [("registry.add", "ops", A)]


def test_registry_records_are_checked_field_by_field(registry):
    registry.save(record(A, reviewers=["rev-a"]), "ops", create=True)
    for changes, message in (({"uscc": "123"}, "uscc: "), ({"name": ""}, "name: required"),
                             ({"reviewers": ["rev a"]}, "reviewers: 'rev a' is not a certificate name"),
                             ({"parent": C}, f"parent: agency {C} is not registered"),
                             ({"reviewers": ["rev-a"]}, "already reviews for agency"),
                             ({"uscc": A}, f"uscc: {A} is registered for agency {A} already")):
        with pytest.raises(RegistryError, match=message):
            registry.save(record(B, **changes), "ops", create=True)
    with pytest.raises(RegistryError, match="already registered"):
        registry.save(record(A), "ops", create=True)
    with pytest.raises(NotRegistered, match="not registered; use add"):
        registry.save(record(B), "ops", create=False)
    registry.save(record(B, parent=A), "ops", create=True)
    with pytest.raises(RegistryError, match="agencies form a tree"):
        registry.save(record(A, parent=B, version=1), "ops", create=False)
    with pytest.raises(RegistryError, match="changed since version 7"):
        registry.save(record(A, version=7), "ops", create=False)
    assert registry.save(record(A, district="浦东新区", version=1), "ops", create=False)["version"] == 2


def test_a_receipt_is_canonical_and_its_signature_covers_every_field():
    key = ec.generate_private_key(ec.SECP256R1())
    fields = {"kind": "stream", "consumer": C, "provider": A, "resource": "licences", "after": 0, "reached": 9,
              "events": 9, "content_sha256": "ab" * 32, "purpose": "tax", "received_at": "2026-12-04T10:00:00+00:00"}
    payload, signature = sign(fields, key)
    assert parse(payload) == {"v": 1, **fields}
    key.public_key().verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(ReceiptError, match="canonical form"):
        parse(json.dumps({"v": 1, **fields}, indent=1).encode())
    with pytest.raises(ReceiptError, match="exactly the fields"):
        parse(json.dumps({"v": 1, **fields, "extra": 1}, sort_keys=True, separators=(",", ":")).encode())
    with pytest.raises(ReceiptError, match="receipt field events must be a number"):
        sign({**fields, "events": "9"}, key)


def test_items_may_declare_a_data_element_and_authority():
    ok = entry(items=[{"name": "uscc", "type": "C", "length": 18, "element": "DE0001", "authoritative": True}])
    assert metadata.validate(ok) == []
    bad = entry(items=[{"name": "uscc", "type": "C", "length": 18, "element": "DE 0001", "authoritative": "yes"}])
    assert [p.field for p in metadata.validate(bad)] == ["items[0].element", "items[0].authoritative"]


def test_the_evaluation_schedule_runs_at_start_after_each_interval_and_daily_at_the_time():
    now = datetime(2026, 12, 4, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
    assert schedule.next_run(now, 60, "", None) == now
    assert schedule.next_run(now, 60, "", now).timestamp() == now.timestamp() + 60
    assert schedule.next_run(now, 0, "06:30", None) == datetime(2026, 12, 4, 22, 30, tzinfo=timezone.utc)
    assert schedule.next_run(now, 0, "10:00", None) == datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc)
    with pytest.raises(Exception, match=r"\[evaluation\] at = '25:00'"):
        schedule.check_settings(0, "25:00", "/tmp")
    with pytest.raises(Exception, match=r"\[evaluation\] directory is required"):
        schedule.check_settings(5, "", "")
    assert schedule.check_settings(0, "", "") is False


@pytest.fixture
def book(tmp_path, monkeypatch):
    """A ledger and a receipt book over one real store, and a consumer certificate from a real CA."""
    from cryptography.hazmat.primitives import serialization

    from exchange.tools import ca
    from hub.sharing import receipts as hub_receipts
    from hub.sharing.ledger import Entitlement, SharingLedger
    from hub.workdays import WorkingCalendar

    monkeypatch.setattr(hub_receipts, "RECENT", 1)  # older deliveries are looked for in the log
    ca.init(tmp_path / "ca")
    issued = ca.issue(tmp_path / "ca", "agency", C, out=tmp_path / "certs")
    key = serialization.load_pem_private_key(open(issued["key"], "rb").read(), password=None)
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    ledger = SharingLedger(store, None, WorkingCalendar())
    granted = Entitlement(C, A, "licences", frozenset({"kind"}), "tax", "unconditional")
    for after, reached in ((0, 5), (5, 9)):
        ledger.record_delivery(granted, purpose="tax", events=3, after=after, reached=reached, mode="stream")
    yield hub_receipts.ReceiptBook(store, AuditLog(tmp_path / "audit.log")), key, open(issued["cert"], "rb").read()
    store.close()


def receipt_fields(after: int, reached: int) -> dict:
    return {"kind": "stream", "consumer": C, "provider": A, "resource": "licences", "after": after, "reached": reached,
            "events": 3, "content_sha256": "cd" * 32, "purpose": "tax", "received_at": "2026-12-04T10:00:00+00:00"}


def test_the_hub_keeps_each_receipt_once_and_only_for_a_recorded_delivery_by_its_consumer(book):
    receipts, key, cert = book
    payload, signature = sign(receipt_fields(0, 5), key)  # the older delivery: no longer among the recent ones
    rid, recorded = receipts.keep(payload, signature, cert, C)
    assert recorded and receipts.keep(payload, signature, cert, C) == (rid, False)
    with pytest.raises(ReceiptError, match=f"names consumer {C}, but {B} sent it"):
        receipts.keep(payload, signature, cert, B)
    with pytest.raises(ReceiptError, match="no stream delivery .* after 5 up to 8 is recorded"):
        receipts.keep(*sign(receipt_fields(5, 8), key), cert, C)
    other = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ReceiptError, match="signature does not match"):
        receipts.keep(*sign(receipt_fields(5, 9), other), cert, C)
    assert receipts.counts() == {A: {"deliveries": 2, "receipted": 1}}
    [kept] = receipts.receipts(consumer=C)
    assert kept["receipt_id"] == rid and kept["fields"]["reached"] == 5
