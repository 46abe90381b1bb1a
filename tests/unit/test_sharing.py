"""Share requests, entitlements, projection and the not-shared guard, in process over a real SQLite store."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from eventsourcing.persistence import Notification

from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged, make_mapper
from exchange.store import EventStore
from exchange.transport.wire import MalformedEvent, to_wire
from hub.audit import AuditLog
from hub.catalog.terms import CONDITIONAL, NOT_SHARED, UNCONDITIONAL, ResourceTerms
from hub.ingest import Ingest
from hub.sharing.api import SharingServicer
from hub.sharing.guard import NotSharedEvents, NotSharedGuard
from hub.sharing.ledger import NotEntitled, SharingLedger
from hub.sharing.projection import project
from hub.sharing.requests import APPROVED, DISPUTED, PENDING, REJECTED, REVOKED, WorkflowError
from hub.workdays import SHANGHAI, WorkingCalendar
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import sharing_pb2, sharing_pb2_grpc

PROVIDER = "91310000MB2F31887X"
CONSUMER = "91110108551385082Q"
OTHER = "91310115MA1H7GQ417"
ITEMS = ("id", "name", "born", "district")


class DictTerms:
    """A TermsSource over a dict, for in-process tests."""

    def __init__(self, *terms: ResourceTerms):
        self.entries = {(t.provider, t.resource): t for t in terms}

    def terms(self, provider, resource):
        return self.entries.get((provider, resource))


def terms(resource, share_type, items=ITEMS, sensitivity=()):
    return ResourceTerms(PROVIDER, resource, f"101001/{abs(hash(resource)) % 9000 + 1000}", share_type, tuple(items),
                         condition="administrative approvals" if share_type == CONDITIONAL else "",
                         basis="State Secrets Law" if share_type == NOT_SHARED else "",
                         sensitivity=frozenset(sensitivity))


class Clock:
    def __init__(self, moment: datetime):
        self.now = moment

    def __call__(self):
        return self.now


@pytest.fixture
def world(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}")
    catalog = DictTerms(terms("open", UNCONDITIONAL), terms("licences", CONDITIONAL),
                        terms("secret", NOT_SHARED), terms("persons", CONDITIONAL, sensitivity={"personal"}))
    clock = Clock(datetime(2026, 9, 28, 2, 0, tzinfo=timezone.utc))  # Monday 10:00 in Shanghai
    audit = AuditLog(tmp_path / "audit.log")
    ledger = SharingLedger(store, catalog, WorkingCalendar(), audit=audit, clock=clock)
    yield ledger, clock, catalog, store, audit
    store.close()


def ask(ledger, resource="licences", items=("name", "born")):
    return ledger.request(CONSUMER, PROVIDER, resource, scope="licences in Pudong", purpose="approving permits",
                          items=list(items))


# The workflow ----------------------------------------------------------------------------------

def test_a_request_states_scope_purpose_and_known_items_of_a_conditional_resource(world):
    ledger, *_ = world
    with pytest.raises(WorkflowError, match="unconditionally"):
        ask(ledger, "open")
    with pytest.raises(WorkflowError, match="not shared"):
        ask(ledger, "secret")
    with pytest.raises(WorkflowError, match="no published resource"):
        ask(ledger, "nothing")
    with pytest.raises(WorkflowError, match=r"no data items \['salary'\]"):
        ask(ledger, items=("name", "salary"))
    with pytest.raises(WorkflowError, match="scope and its purpose"):
        ledger.request(CONSUMER, PROVIDER, "licences", scope="", purpose="x", items=["name"])
    request = ask(ledger)
    assert (request.status, request.items) == (PENDING, ["name", "born"])


def test_only_the_provider_answers_and_a_rejection_needs_reasons(world):
    ledger, *_ = world
    request = ask(ledger)
    with pytest.raises(WorkflowError, match="only the provider"):
        ledger.approve(str(request.id), OTHER)
    with pytest.raises(WorkflowError, match="reasons"):
        ledger.reject(str(request.id), PROVIDER, reasons="  ")
    with pytest.raises(WorkflowError, match="not requested"):
        ledger.approve(str(request.id), PROVIDER, items=["district"])
    assert ledger.reject(str(request.id), PROVIDER, reasons="scope too wide").status == REJECTED
    with pytest.raises(WorkflowError, match="only a pending request is answered"):
        ledger.approve(str(request.id), PROVIDER)


def test_a_dispute_goes_to_the_coordinating_office_whose_decision_is_final(world):
    ledger, *_ = world
    request = ask(ledger)
    with pytest.raises(WorkflowError, match="can be disputed"):
        ledger.dispute(str(request.id), CONSUMER, grounds="no answer")  # pending and not yet late
    ledger.reject(str(request.id), PROVIDER, reasons="scope too wide")
    with pytest.raises(WorkflowError, match="only the requester"):
        ledger.dispute(str(request.id), OTHER, grounds="x")
    assert ledger.dispute(str(request.id), CONSUMER, grounds="the law requires it").status == DISPUTED
    decided = ledger.decide(str(request.id), "office", approve=True, items=["name"])
    assert (decided.status, decided.approved_items, decided.decided_by) == (APPROVED, ["name"], "office")
    with pytest.raises(WorkflowError, match="final"):
        ledger.dispute(str(request.id), CONSUMER, grounds="still fewer items than asked")


def test_a_partial_approval_and_a_missed_deadline_can_be_disputed_a_full_approval_cannot(world):
    ledger, clock, *_ = world
    full, partial, late = ask(ledger), ask(ledger), ask(ledger)
    ledger.approve(str(full.id), PROVIDER)
    ledger.approve(str(partial.id), PROVIDER, items=["name"])
    with pytest.raises(WorkflowError, match="can be disputed"):
        ledger.dispute(str(full.id), CONSUMER, grounds="x")
    assert ledger.dispute(str(partial.id), CONSUMER, grounds="born is needed").status == DISPUTED
    clock.now = late.deadline
    assert ledger.dispute(str(late.id), CONSUMER, grounds="no answer in 10 working days").status == DISPUTED
    assert ledger.decide(str(late.id), "office", approve=False, reasons="not needed").status == REJECTED


def test_the_state_is_rebuilt_from_the_store(world, tmp_path):
    ledger, clock, catalog, store, _ = world
    request = ask(ledger)
    ledger.approve(str(request.id), PROVIDER, items=["name"], expires=clock.now + timedelta(days=30))
    ledger.record_agreement(PROVIDER, PROVIDER, CONSUMER, "persons", "NDA-2026-17")
    again = SharingLedger(store, catalog, WorkingCalendar(), clock=clock)
    assert again.get(str(request.id)).to_dict(clock.now) == ledger.get(str(request.id)).to_dict(clock.now)
    assert again.agreements.keys() == ledger.agreements.keys()


def test_every_decision_is_audited(world):
    ledger, _, _, _, audit = world
    request = ask(ledger)
    ledger.reject(str(request.id), PROVIDER, reasons="scope too wide")
    entries = [json.loads(line) for line in audit.path.read_text().splitlines()]
    assert [(e["action"], e["actor"]) for e in entries] == [("share.requested", CONSUMER),
                                                           ("share.rejected", PROVIDER)]
    assert entries[1]["details"]["reasons"] == "scope too wide"


# Deadlines: 10 working days on the statutory calendar ------------------------------------------

def test_the_deadline_crosses_the_national_day_holiday_and_counts_the_make_up_working_day(world):
    ledger, *_ = world
    request = ask(ledger)  # Monday 2026-09-28; 1-7 October off, Saturday 10 October worked
    # 29, 30 Sep; 8, 9, 10 (Sat, make-up), 12, 13, 14, 15, 16 Oct: the 10th working day is Friday 16 October.
    assert request.deadline == datetime(2026, 10, 17, tzinfo=SHANGHAI)


def test_an_answer_on_the_last_working_day_is_in_time_one_after_it_is_late(world):
    ledger, clock, *_ = world
    in_time, late = ask(ledger), ask(ledger)
    clock.now = datetime(2026, 10, 16, 23, 30, tzinfo=SHANGHAI)
    ledger.approve(str(in_time.id), PROVIDER)
    clock.now = datetime(2026, 10, 19, 9, 0, tzinfo=SHANGHAI)  # Monday after the deadline
    ledger.reject(str(late.id), PROVIDER, reasons="too late anyway")
    report = ledger.report()["providers"][PROVIDER]
    assert (report["requests"], report["answered"], report["answered_late"]) == (2, 2, 1)
    assert [(r["id"], r["working_days_late"]) for r in report["late"]] == [(str(late.id), 1)]
    assert ledger.get(str(in_time.id)).late() is False


def test_unanswered_requests_become_overdue_in_the_report_and_the_counts(world):
    ledger, clock, *_ = world
    request = ask(ledger)
    clock.now = datetime(2026, 10, 16, 23, 59, tzinfo=SHANGHAI)
    assert ledger.overdue_counts() == {PROVIDER: 0}
    clock.now = datetime(2026, 10, 17, 0, 0, tzinfo=SHANGHAI)
    assert ledger.overdue_counts() == {PROVIDER: 1}
    clock.now = datetime(2026, 10, 20, 12, 0, tzinfo=SHANGHAI)  # Tuesday: Mon 19 and Tue 20 passed
    overdue = ledger.report()["providers"][PROVIDER]["overdue_requests"]
    assert [(r["id"], r["working_days_late"]) for r in overdue] == [(str(request.id), 2)]
    ledger.approve(str(request.id), PROVIDER)
    assert ledger.overdue_counts() == {PROVIDER: 0}
    assert ledger.report()["providers"][PROVIDER]["answered_late"] == 1


def test_the_report_can_be_asked_as_of_a_time(world):
    ledger, clock, *_ = world
    request = ask(ledger)
    later = datetime(2026, 10, 20, 12, 0, tzinfo=SHANGHAI)
    assert ledger.report()["providers"][PROVIDER]["overdue"] == 0
    as_of_later = ledger.report(later)
    assert as_of_later["at"] == later.isoformat()
    assert [r["id"] for r in as_of_later["providers"][PROVIDER]["overdue_requests"]] == [str(request.id)]


def test_an_approval_of_sensitive_data_says_delivery_waits_for_a_secrecy_agreement(world):
    ledger, *_ = world
    request = ledger.request(CONSUMER, PROVIDER, "persons", scope="Pudong", purpose="permits", items=["name"])
    approved = ledger.approve(str(request.id), PROVIDER)
    assert "secrecy agreement" in " ".join(ledger.waiting_for(approved))
    ledger.record_agreement(PROVIDER, PROVIDER, CONSUMER, "persons", "SA-1")
    assert ledger.waiting_for(approved) == []
    assert ledger.waiting_for(ledger.approve(str(ask(ledger).id), PROVIDER)) == []  # licences: not sensitive


def test_a_configured_make_up_working_day_shortens_the_deadline(tmp_path):
    store = EventStore(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        clock = Clock(datetime(2026, 12, 28, 2, 0, tzinfo=timezone.utc))  # Monday
        calendar = WorkingCalendar(workdays=["2027-01-09"], holidays=["2027-01-01"])  # a year the library lacks
        ledger = SharingLedger(store, DictTerms(terms("licences", CONDITIONAL)), calendar, clock=clock)
        request = ask(ledger)
        # 29, 30, 31 Dec; (1 Jan off) 4, 5, 6, 7, 8 Jan; Sat 9 Jan (make-up); Mon 11 Jan is the 10th
        # working day (without the make-up day it would be Tue 12 Jan).
        assert request.deadline == datetime(2027, 1, 12, tzinfo=SHANGHAI)
    finally:
        store.close()


# Entitlements ------------------------------------------------------------------------------------

def test_unconditional_resources_go_to_any_agency_with_every_item(world):
    ledger, *_ = world
    granted = ledger.entitlement(OTHER, PROVIDER, "open")
    assert (granted.items, granted.basis) == (frozenset(ITEMS), "unconditional")


def test_not_shared_and_unpublished_resources_go_to_no_one(world):
    ledger, *_ = world
    with pytest.raises(NotEntitled, match="not shared"):
        ledger.entitlement(CONSUMER, PROVIDER, "secret")
    with pytest.raises(NotEntitled, match="no published resource"):
        ledger.entitlement(CONSUMER, PROVIDER, "nothing")


def test_conditional_resources_go_only_to_approved_requesters_with_the_approved_items(world):
    ledger, clock, *_ = world
    with pytest.raises(NotEntitled, match="no current approval"):
        ledger.entitlement(CONSUMER, PROVIDER, "licences")
    request = ask(ledger, items=("name", "born"))
    ledger.approve(str(request.id), PROVIDER, items=["name"], expires=clock.now + timedelta(days=1))
    granted = ledger.entitlement(CONSUMER, PROVIDER, "licences")
    assert (granted.items, granted.purpose) == (frozenset({"name"}), "approving permits")
    with pytest.raises(NotEntitled):
        ledger.entitlement(OTHER, PROVIDER, "licences")
    clock.now += timedelta(days=1)
    with pytest.raises(NotEntitled, match="no current approval"):
        ledger.entitlement(CONSUMER, PROVIDER, "licences")


def test_revocation_ends_the_entitlement(world):
    ledger, *_ = world
    request = ask(ledger)
    ledger.approve(str(request.id), PROVIDER)
    ledger.entitlement(CONSUMER, PROVIDER, "licences")
    with pytest.raises(WorkflowError, match="only the provider"):
        ledger.revoke(str(request.id), CONSUMER, reason="x")
    assert ledger.revoke(str(request.id), PROVIDER, reason="purpose fulfilled").status == REVOKED
    with pytest.raises(NotEntitled):
        ledger.entitlement(CONSUMER, PROVIDER, "licences")


def test_sensitive_resources_need_a_recorded_secrecy_agreement(world):
    ledger, *_ = world
    request = ask(ledger, "persons", items=("name",))
    ledger.approve(str(request.id), PROVIDER)
    with pytest.raises(NotEntitled, match="personal data: no secrecy agreement"):
        ledger.entitlement(CONSUMER, PROVIDER, "persons")
    with pytest.raises(WorkflowError, match="the provider"):
        ledger.record_agreement(CONSUMER, PROVIDER, CONSUMER, "persons", "NDA-1")
    ledger.record_agreement(PROVIDER, PROVIDER, CONSUMER, "persons", "NDA-1")
    assert ledger.entitlement(CONSUMER, PROVIDER, "persons").items == {"name"}


def test_items_the_catalog_no_longer_publishes_are_not_entitled(world):
    ledger, _, catalog, *_ = world
    request = ask(ledger, items=("name", "born"))
    ledger.approve(str(request.id), PROVIDER)
    catalog.entries[(PROVIDER, "licences")] = terms("licences", CONDITIONAL, items=("id", "name"))
    assert ledger.entitlement(CONSUMER, PROVIDER, "licences").items == {"name"}


def test_deliveries_are_recorded_with_consumer_resource_purpose_and_count(world):
    ledger, *_ = world
    granted = ledger.entitlement(OTHER, PROVIDER, "open")
    ledger.record_delivery(granted, purpose="statistics", events=7, after=0, reached=12, mode="stream")
    [record] = ledger.deliveries(consumer=OTHER)
    assert {k: record[k] for k in ("consumer", "provider", "resource", "purpose", "events", "reached")} == {
        "consumer": OTHER, "provider": PROVIDER, "resource": "open", "purpose": "statistics", "events": 7,
        "reached": 12}
    assert ledger.deliveries(consumer=CONSUMER) == []


# Projection ----------------------------------------------------------------------------------------

def _notifications(events):
    mapper = make_mapper()
    return [Notification(id=i, **vars(mapper.to_stored_event(e))) for i, e in enumerate(events, start=1)]


def _event(kind, resource="licences", version=1, **fields):
    common = dict(originator_id=uuid.uuid4(), originator_version=version, timestamp=datetime.now(timezone.utc),
                  agency=PROVIDER, resource=resource, key={"id": 1}, position=1, commit_time=None, txid="",
                  schema_version=1, event_schema_version=1)
    return kind(**{**common, **fields})


def test_projection_keeps_the_entitled_items_and_the_key_of_the_one_resource():
    table = {"name": "licences", "primary_key": ["id"],
             "columns": [{"name": c, "type": "TEXT", "notnull": False, "default": None} for c in ("id", "name", "fee")]}
    events = [
        _event(SchemaChanged, key={"__schema__": True}, table=table),
        _event(RecordCreated, row={"id": 1, "name": "Li", "fee": 9}),
        _event(RecordUpdated, version=2, changed={"fee": 10}),  # nothing entitled changed: dropped
        _event(RecordUpdated, version=3, changed={"name": "Wang", "fee": 11}),
        _event(RecordCreated, resource="persons", row={"id": 1, "name": "secret"}),  # another resource
        _event(RecordDeleted, version=4),
    ]
    projected = project(_notifications(events), "licences", {"name"})
    mapper = make_mapper()
    got = [mapper.to_domain_event(n) for n in projected]
    assert [n.id for n in projected] == [1, 2, 4, 6]
    assert [c["name"] for c in got[0].table["columns"]] == ["id", "name"]
    assert got[1].row == {"id": 1, "name": "Li"}
    assert got[2].changed == {"name": "Wang"}
    assert isinstance(got[3], RecordDeleted)


# The hub refuses published events of not-shared resources -----------------------------------------

def test_the_hub_refuses_a_batch_holding_a_not_shared_resource_and_stores_nothing_of_it(world):
    ledger, _, catalog, store, audit = world
    ingest = Ingest(store)
    ingest.guards.append(NotSharedGuard(catalog, audit))
    mapper = make_mapper()
    open_event, secret_event = _event(RecordCreated, "open", row={"id": 1}), _event(RecordCreated, "secret", row={"id": 1})
    def wire(i, e):
        return pb.Event(notification_id=i, originator_id=str(e.originator_id), originator_version=1,
                        topic=e.TOPIC, state=mapper.to_stored_event(e).state)
    with pytest.raises(NotSharedEvents, match="secret.*not shared"):
        ingest.ingest(PROVIDER, pb.EventBatch(after=0, events=[wire(1, open_event), wire(2, secret_event)]))
    assert ingest.hub_position(PROVIDER) == 0
    assert ingest.ingest(PROVIDER, pb.EventBatch(after=0, events=[wire(1, open_event)])) == (1, 1)
    assert json.loads(audit.path.read_text().splitlines()[-1])["action"] == "share.not_shared_refused"


def test_the_guard_reads_the_state_whatever_the_envelope_claims(world):
    """With envelopes (as nodes send them now) a not-shared event is refused as without; an envelope naming
    another resource than the state refuses the batch, so a wrong envelope cannot carry an event past the guard."""
    _, _, catalog, store, audit = world
    ingest = Ingest(store)
    ingest.guards.append(NotSharedGuard(catalog, audit))
    mapper = make_mapper()
    events = [_event(RecordCreated, "open", row={"id": 1}), _event(RecordCreated, "secret", row={"id": 1})]
    batch = to_wire([Notification(id=i, originator_id=e.originator_id, originator_version=1, topic=e.TOPIC,
                                  state=mapper.to_stored_event(e).state)
                     for i, e in enumerate(events, 1)], after=0)
    assert [e.resource for e in batch.events] == ["open", "secret"]
    with pytest.raises(NotSharedEvents, match="secret.*not shared"):
        ingest.ingest(PROVIDER, batch)
    batch.events[1].resource = "open"
    with pytest.raises(MalformedEvent, match="envelope names resource 'open', its state 'secret'"):
        ingest.ingest(PROVIDER, batch)
    assert ingest.hub_position(PROVIDER) == 0
    del batch.events[1]
    assert ingest.ingest(PROVIDER, batch) == (1, 1)


def test_a_request_whose_deadline_falls_in_a_year_the_calendar_does_not_know_is_refused_with_the_fix(world,
                                                                                                      free_port):
    """Late in December the 10 working days reach into next year: the Sharing API says which setting to add."""
    ledger, clock, *_ = world
    year = _first_unknown_year()
    clock.now = datetime(year - 1, 12, 28, 2, 0, tzinfo=timezone.utc)
    with _sharing_stub(ledger, free_port()) as stub, pytest.raises(grpc.RpcError) as refused:
        stub.Request(sharing_pb2.ShareRequestCreate(agency=CONSUMER, provider=PROVIDER, resource="licences",
                                                    scope="all", purpose="permits", items=["name"]))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{year}" in refused.value.details() and "[calendar]" in refused.value.details()
    assert ledger.list() == []


def test_the_report_on_a_request_overdue_into_a_year_the_calendar_does_not_know_says_what_to_configure(world,
                                                                                                       free_port):
    ledger, clock, *_ = world
    year = _first_unknown_year()
    clock.now = datetime(year - 1, 12, 1, 2, 0, tzinfo=timezone.utc)
    ask(ledger)  # due within the known year
    clock.now = datetime(year, 1, 20, 2, 0, tzinfo=timezone.utc)  # overdue; the working days late are unknown
    with _sharing_stub(ledger, free_port()) as stub, pytest.raises(grpc.RpcError) as refused:
        stub.Report(sharing_pb2.ShareReportRequest())
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"{year}" in refused.value.details() and "[calendar]" in refused.value.details()


def _first_unknown_year() -> int:
    """The first year whose holiday schedule chinesecalendar does not know."""
    year = datetime.now().year
    while True:
        try:
            WorkingCalendar().is_working_day(datetime(year, 6, 1).date())
        except ValueError:
            return year
        year += 1


@contextmanager
def _sharing_stub(ledger, port):
    """The Sharing service over ``ledger`` on a plain loopback port (the local operator may do everything)."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    sharing_pb2_grpc.add_SharingServicer_to_server(SharingServicer(ledger, frozenset()), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield sharing_pb2_grpc.SharingStub(channel)
    finally:
        server.stop(None).wait(10)
