"""The hub store and the audit log agree: a decision stored but not audited is found and repaired."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest
from test_catalog import AGENCY, entry
from test_sharing import CONSUMER, PROVIDER, Clock, DictTerms, terms

from exchange.store import EventStore
from hub import audit_reconcile
from hub.audit import AuditLog, verify
from hub.catalog.catalog import Catalog
from hub.catalog.terms import CONDITIONAL
from hub.sharing.ledger import SharingLedger
from hub.workdays import WorkingCalendar


@pytest.fixture
def hub(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    store = EventStore(url)
    yield url, store, AuditLog(tmp_path / "audit.log")
    store.close()


def _ledger(store, audit):
    clock = Clock(datetime(2026, 9, 28, 2, 0, tzinfo=timezone.utc))
    return SharingLedger(store, DictTerms(terms("licences", CONDITIONAL)), WorkingCalendar(), audit=audit, clock=clock)


def test_audited_workflows_agree_with_the_store(hub):
    url, store, audit = hub
    catalog = Catalog(url, WorkingCalendar(), audit=audit)
    try:
        code = entry()["code"]
        catalog.edit(AGENCY, entry(), submit=True)  # one action, two events
        catalog.record_secrecy_review(code, "reviewer", True, [], "")
        catalog.return_entry(code, "reviewer", ["name the district"])
        catalog.edit(AGENCY, entry(name="Renamed"))
    finally:
        catalog.close()
    request = _ledger(store, audit).request(CONSUMER, PROVIDER, "licences", scope="Pudong", purpose="permits",
                                            items=["name"])
    _ledger(store, audit).approve(request.id, PROVIDER)
    report = audit_reconcile.reconcile(store, audit.path)
    assert report.agree, report.to_dict()
    assert report.decisions == 7


def test_decisions_stored_without_their_audit_entries_are_named_and_repaired(hub):
    url, store, audit = hub
    catalog = Catalog(url, WorkingCalendar(), audit=None)  # as if the hub died between storing and auditing
    try:
        catalog.edit(AGENCY, entry())
    finally:
        catalog.close()
    _ledger(store, None).request(CONSUMER, PROVIDER, "licences", scope="Pudong", purpose="permits", items=["name"])
    found = audit_reconcile.reconcile(store, audit.path)
    assert sorted((d.log, d.version) for d, _ in found.unaudited) == [("catalog", 1), ("sharing", 1)]

    repaired = audit_reconcile.repair(store, audit)
    assert len(repaired.unaudited) == 2
    assert audit_reconcile.reconcile(store, audit.path).agree
    assert verify(audit.path).valid
    assert audit_reconcile.repair(store, audit).agree  # a second repair appends nothing


def test_an_audit_entry_naming_a_decision_the_store_lacks_is_reported(hub):
    _, store, audit = hub
    ghost = str(uuid.uuid4())
    audit.record("share.approved", PROVIDER, originator_id=ghost, originator_version=2)
    report = audit_reconcile.reconcile(store, audit.path)
    assert [(d.id, d.version) for d, _ in report.not_stored] == [(ghost, 2)]
    assert not report.agree


def test_registry_changes_stored_without_their_audit_entries_are_named_and_repaired(hub):
    from hub.registry.agencies import Registry

    url, store, audit = hub
    record = {"agency": AGENCY, "uscc": AGENCY, "name": "Market regulation"}
    Registry(store, audit).save(record, "ops", create=True)
    Registry(store, None).save({**record, "district": "静安区"}, "ops", create=False)  # died before auditing
    found = audit_reconcile.reconcile(store, audit.path)
    assert [(d.log, d.version, e.kind, e.actor) for d, e in found.unaudited] == [("registry", 2, "AgencySaved", "ops")]
    audit_reconcile.repair(store, audit)
    assert audit_reconcile.reconcile(store, audit.path).agree


def test_decisions_audited_by_another_hub_count_as_audited_and_are_not_repaired_again(hub, tmp_path):
    url, store, audit = hub
    other = AuditLog(tmp_path / "audit-hub2.log")  # the second hub on the store keeps its own chain
    request = _ledger(store, other).request(CONSUMER, PROVIDER, "licences", scope="Pudong", purpose="permits",
                                            items=["name"])
    _ledger(store, audit).approve(request.id, PROVIDER)
    assert [d.version for d, _ in audit_reconcile.reconcile(store, audit.path).unaudited] == [1]
    report = audit_reconcile.repair(store, audit, peers=[other.path])
    assert report.agree and report.decisions == 2
    assert audit_reconcile.reconcile(store, other.path, peers=[audit.path]).agree
    assert verify(audit.path).valid and verify(other.path).valid


def test_a_broken_peer_chain_stops_reconciliation(hub, tmp_path):
    url, store, audit = hub
    other = AuditLog(tmp_path / "audit-hub2.log")
    other.record("hub.started", "hub")
    other.record("hub.stopped", "hub")
    lines = other.path.read_text().splitlines(keepends=True)
    other.path.write_text(lines[1])  # the first entry removed
    with pytest.raises(audit_reconcile.AuditError, match="audit-hub2.log is broken"):
        audit_reconcile.reconcile(store, audit.path, peers=[other.path])
