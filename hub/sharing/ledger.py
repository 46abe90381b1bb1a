"""The hub's sharing ledger: share requests, secrecy agreements, entitlements and delivery records.

Requests and agreements are event-sourced in the hub's store (log
``sharing_requests``); every delivery to a consumer is an event of the log
``sharing_deliveries``.  Several hubs may share the store: every command
and query first folds in what the requests log gained since the last one (a
read of the log after the last id seen, cheap when nothing changed), under
one lock, so a decision taken through any hub holds on every hub at its next
check and an entitlement check never reads a half-made decision.  Two hubs
changing one request at the same moment cannot both succeed: the second
finds the version taken and is told to retry.  Every
decision and every delivery is also written to the hub's audit log.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from eventsourcing.persistence import IntegrityError, StoredEvent

from exchange.contracts.errors import ExchangeError
from exchange.contracts.events import make_mapper
from exchange.contracts.text import excerpt
from hub.catalog.terms import CONDITIONAL, NOT_SHARED, UNCONDITIONAL, TermsSource
from hub.metrics import METRICS, HubMetrics
from hub.sharing.requests import (
    ANSWER_WORKING_DAYS,
    APPROVED,
    AgreementRecorded,
    Requested,
    ShareRequest,
    SharingEvent,
    WorkflowError,
    agreement_id,
)
from hub.sharing.scope import Filter, check_items, either, optional
from hub.workdays import SHANGHAI, WorkingCalendar

log = logging.getLogger(__name__)

REQUESTS_LOG = "sharing_requests"
DELIVERIES_LOG = "sharing_deliveries"
DELIVERED_TOPIC = "exchange.sharing:Delivered"


class NotEntitled(ExchangeError):
    """A consumer may not receive a resource; the message says why."""


@dataclass(frozen=True)
class Entitlement:
    """What one consumer may receive of one provider's resource, and why."""

    consumer: str
    provider: str
    resource: str
    items: frozenset[str]   # data items (columns); record keys always go with them
    purpose: str            # the approved purpose ("" for unconditional: the subscriber states one)
    basis: str              # "unconditional" or the approving request ids
    rows: Filter | None = None  # Art. 15 scope: the rows it may receive (None: every row)

    @property
    def rows_text(self) -> str:
        return self.rows.text if self.rows is not None else ""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SharingLedger:
    """Share-request workflow, agreements, entitlement decisions and delivery records."""

    def __init__(self, store: Any, terms: TermsSource, calendar: WorkingCalendar, *, audit: Any = None,
                 clock: Callable[[], datetime] = utcnow, metrics: HubMetrics = METRICS):
        self.metrics = metrics
        self.terms = terms
        self.calendar = calendar
        self.audit = audit
        self.clock = clock
        self.current: Any = None  # the hub's current-state table (hub/sharing/current.py) when it keeps one
        self.mapper = make_mapper()
        self._requests_log = store.log(REQUESTS_LOG)
        self._deliveries_log = store.log(DELIVERIES_LOG)
        self._lock = threading.RLock()
        self.requests: dict[uuid.UUID, ShareRequest] = {}
        self.agreements: dict[uuid.UUID, AgreementRecorded] = {}
        self._seen = 0  # the last requests-log id folded in
        self._catch_up()

    # Commands ---------------------------------------------------------------------------------

    def request(self, requester: str, provider: str, resource: str, *, scope: str, purpose: str,
                items: list[str], rows: str = "") -> ShareRequest:
        """Art. 14: apply for a conditional resource, stating scope, purpose and data items."""
        now = self.clock()
        terms = self.terms.terms(provider, resource)
        if terms is None:
            raise WorkflowError(f"agency {provider} has no published resource {excerpt(resource)}")
        if terms.share_type == UNCONDITIONAL:
            raise WorkflowError(f"{provider}/{resource} is shared unconditionally: subscribe to it, no request needed")
        if terms.share_type == NOT_SHARED:
            raise WorkflowError(f"{provider}/{resource} is not shared (basis: {terms.basis or 'not given'})")
        if requester == provider:
            raise WorkflowError("an agency does not request its own resource")
        if not scope.strip() or not purpose.strip():
            raise WorkflowError("a share request states its scope and its purpose (Art. 14)")
        wanted = list(dict.fromkeys(items))
        if not wanted:
            raise WorkflowError(f"name the data items wanted; {resource} publishes {', '.join(terms.items)}")
        unknown = [i for i in wanted if i not in terms.items]
        if unknown:
            raise WorkflowError(f"{provider}/{resource} publishes no data items {excerpt(unknown)}; "
                                f"it has {list(terms.items)}")
        row_filter = optional(rows)
        if row_filter is not None:
            check_items(row_filter, wanted, "the data items requested")
        event = Requested(originator_id=uuid.uuid4(), originator_version=1, timestamp=now, actor=requester,
                          provider=provider, resource=resource, scope=scope, purpose=purpose, items=wanted,
                          deadline=self.calendar.deadline(now, ANSWER_WORKING_DAYS),
                          rows=row_filter.text if row_filter else "")
        with self._lock:
            self._catch_up()
            self._save(event)
            return self.requests[event.originator_id]

    def approve(self, request_id: str, actor: str, *, items: list[str] | None = None,
                expires: datetime | None = None, note: str = "", rows: str = "") -> ShareRequest:
        """Art. 15: approve (fewer items, an expiry, a narrower row filter: ANDed with the requested one)."""
        return self._step(request_id, lambda r, now: r.approve(actor, items, expires, note, now, rows))

    def reject(self, request_id: str, actor: str, *, reasons: str) -> ShareRequest:
        return self._step(request_id, lambda r, now: r.reject(actor, reasons, now))

    def dispute(self, request_id: str, actor: str, *, grounds: str) -> ShareRequest:
        return self._step(request_id, lambda r, now: r.dispute(actor, grounds, now))

    def decide(self, request_id: str, actor: str, *, approve: bool, items: list[str] | None = None,
               expires: datetime | None = None, reasons: str = "", rows: str = "") -> ShareRequest:
        """The coordinating office's decision on a dispute (the caller checked ``actor`` is an administrator)."""
        return self._step(request_id, lambda r, now: r.decide(actor, approve, items, expires, reasons, now, rows))

    def revoke(self, request_id: str, actor: str, *, reason: str, admin: bool = False) -> ShareRequest:
        return self._step(request_id, lambda r, now: r.revoke(actor, reason, now, admin=admin))

    def record_agreement(self, actor: str, provider: str, consumer: str, resource: str, reference: str) -> dict:
        """Record the signed secrecy agreement between ``provider`` and ``consumer`` about ``resource``."""
        if actor != provider:
            raise WorkflowError(f"the provider {provider} records its secrecy agreements")
        if not reference.strip():
            raise WorkflowError("name the signed agreement (its reference or document number)")
        if self.terms.terms(provider, resource) is None:
            raise WorkflowError(f"agency {provider} has no published resource {excerpt(resource)}")
        oid = agreement_id(provider, consumer, resource)
        with self._lock:
            self._catch_up()
            previous = self.agreements.get(oid)
            event = AgreementRecorded(originator_id=oid, originator_version=previous.originator_version + 1 if previous else 1,
                                      timestamp=self.clock(), actor=actor, provider=provider, consumer=consumer,
                                      resource=resource, reference=reference)
            self._save(event)
        return _agreement_dict(event)

    # Queries ----------------------------------------------------------------------------------

    def get(self, request_id: str) -> ShareRequest:
        with self._lock:
            self._catch_up()
            try:
                return self.requests[uuid.UUID(str(request_id))]
            except (ValueError, KeyError):
                raise WorkflowError(f"no share request {request_id!r}") from None

    def entitlement(self, consumer: str, provider: str, resource: str) -> Entitlement:
        """What ``consumer`` may receive of the resource now; raises NotEntitled saying why not."""
        terms = self.terms.terms(provider, resource)
        if terms is None:
            raise NotEntitled(f"agency {provider} has no published resource {resource!r}")
        if terms.share_type == NOT_SHARED:
            raise NotEntitled(f"{provider}/{resource} is not shared (basis: {terms.basis or 'not given'})")
        now = self.clock()
        with self._lock:
            self._catch_up()
            if terms.share_type == UNCONDITIONAL:
                granted = Entitlement(consumer, provider, resource, frozenset(terms.items), "", "unconditional")
            elif terms.share_type == CONDITIONAL:
                approvals = [r for r in self.requests.values()
                             if (r.requester, r.provider, r.resource) == (consumer, provider, resource)
                             and r.active(now)]
                if not approvals:
                    raise NotEntitled(f"{consumer} holds no current approval for {provider}/{resource} "
                                      "(conditional: request it with exchange share request)")
                items = frozenset(i for r in approvals for i in r.approved_items) & frozenset(terms.items)
                granted = Entitlement(consumer, provider, resource, items,
                                      "; ".join(dict.fromkeys(r.purpose for r in approvals)),
                                      "requests " + ", ".join(str(r.id) for r in approvals),
                                      either(optional(r.approved_rows) for r in approvals))
            else:
                raise NotEntitled(f"{provider}/{resource} has an unknown share type {terms.share_type}")
            if terms.sensitivity and agreement_id(provider, consumer, resource) not in self.agreements:
                raise NotEntitled(f"{provider}/{resource} is {', '.join(sorted(terms.sensitivity))} data: "
                                  f"no secrecy agreement with {consumer} is recorded")
        return granted

    def list(self, agency: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Requests an agency made or must answer (all when ``agency`` is None), oldest first."""
        now = self.clock()
        with self._lock:
            self._catch_up()
            found = [r for r in self.requests.values()
                     if (agency is None or agency in (r.requester, r.provider)) and (status is None or r.status == status)]
            return [r.to_dict(now) for r in sorted(found, key=lambda r: r.requested_at)]

    def waiting_for(self, request: ShareRequest) -> list[str]:
        """What delivery of an approved ``request`` still waits for (empty when nothing does)."""
        if request.status != APPROVED:
            return []
        terms = self.terms.terms(request.provider, request.resource)
        if terms is None or not terms.sensitivity:
            return []
        with self._lock:
            self._catch_up()
            if agreement_id(request.provider, request.requester, request.resource) in self.agreements:
                return []
        return [f"a secrecy agreement between {request.provider} and {request.requester} about {request.resource} "
                f"({', '.join(sorted(terms.sensitivity))} data, Art. 15): the provider records it with "
                "`exchange share agreement`; nothing is delivered before"]

    def report(self, at: datetime | None = None) -> dict[str, Any]:
        """Art. 22-23: per provider, requests answered late and those overdue at ``at`` (default now)."""
        now = at or self.clock()
        per: dict[str, dict[str, Any]] = {}
        with self._lock:
            self._catch_up()
            for r in sorted(self.requests.values(), key=lambda r: r.requested_at):
                row = per.setdefault(r.provider, {"requests": 0, "answered": 0, "answered_late": 0, "overdue": 0,
                                                  "late": [], "overdue_requests": []})
                row["requests"] += 1
                if r.answered_at is not None:
                    row["answered"] += 1
                if r.late():
                    row["answered_late"] += 1
                    row["late"].append({"id": str(r.id), "requester": r.requester, "resource": r.resource,
                                        "deadline": r.deadline.isoformat(), "answered_at": r.answered_at.isoformat(),
                                        "working_days_late": self._days_late(r.deadline, r.answered_at)})
                if r.overdue(now):
                    row["overdue"] += 1
                    row["overdue_requests"].append({"id": str(r.id), "requester": r.requester, "resource": r.resource,
                                                    "deadline": r.deadline.isoformat(),
                                                    "working_days_late": self._days_late(r.deadline, now)})
        return {"at": now.isoformat(), "providers": per}

    def late_answers(self, provider: str) -> int:
        """Requests to ``provider`` answered after their deadline, or unanswered past it (Art. 22)."""
        now = self.clock()
        with self._lock:
            self._catch_up()
            return sum(1 for r in self.requests.values() if r.provider == provider and (r.late() or r.overdue(now)))

    def overdue_counts(self) -> dict[str, int]:
        """Share requests unanswered past their deadline, per provider (every provider asked)."""
        now = self.clock()
        with self._lock:
            self._catch_up()
            counts = {r.provider: 0 for r in self.requests.values()}
            for r in self.requests.values():
                counts[r.provider] += r.overdue(now)
        return counts

    # Deliveries -------------------------------------------------------------------------------

    def record_delivery(self, entitlement: Entitlement, *, purpose: str, events: int, after: int, reached: int,
                        mode: str, query: dict[str, Any] | None = None) -> None:
        """Record that ``events`` projected events (hub ids after ``after`` up to ``reached``) went to the consumer;
        for a query (``mode`` "query"), ``events`` counts the rows answered and ``query`` says what was asked."""
        details = {"consumer": entitlement.consumer, "provider": entitlement.provider,
                   "resource": entitlement.resource, "purpose": purpose, "events": events, "after": after,
                   "reached": reached, "mode": mode, "items": sorted(entitlement.items), "basis": entitlement.basis,
                   "at": self.clock().isoformat()}
        if entitlement.rows is not None:
            details["rows"] = entitlement.rows.text
        if query is not None:
            details["query"] = query
        state = json.dumps(details, sort_keys=True, separators=(",", ":")).encode()
        self._deliveries_log.insert_events([StoredEvent(uuid.uuid4(), 1, DELIVERED_TOPIC, state)])
        if self.audit is not None:
            self.audit.record("share.delivered", entitlement.consumer, **details)
        self.metrics.events_shared.labels(entitlement.provider, entitlement.consumer, mode).inc(events)

    def deliveries(self, consumer: str | None = None, provider: str | None = None,
                   resource: str | None = None) -> list[dict[str, Any]]:
        """Delivery records, oldest first, optionally for one consumer, provider and/or resource."""
        found, after = [], 0
        while notifications := self._deliveries_log.read(after, 5000):
            for n in notifications:
                record = json.loads(n.state)
                if ((consumer is None or record["consumer"] == consumer)
                        and (provider is None or record["provider"] == provider)
                        and (resource is None or record["resource"] == resource)):
                    found.append(record)
            after = notifications[-1].id
        return found

    # Internals --------------------------------------------------------------------------------

    def _step(self, request_id: str, make: Callable[[ShareRequest, datetime], SharingEvent]) -> ShareRequest:
        with self._lock:
            request = self.get(request_id)
            self._save(make(request, self.clock()))
            return request

    def _save(self, event: SharingEvent) -> None:
        """Store the event, fold it in, audit it (called under the lock)."""
        _check_sizes(event)
        try:
            self._requests_log.insert_events([self.mapper.to_stored_event(event)])
        except IntegrityError:
            raise WorkflowError(f"share request or agreement {event.originator_id} was changed at the same time "
                                "through another hub; look at it again and retry") from None
        self._catch_up()  # folds this event in, after any that another hub stored before it
        if self.audit is not None:
            details = {k: _plain(v) for k, v in vars(event).items() if k not in ("actor", "timestamp")}
            self.audit.record(f"share.{type(event).__name__.lower()}", event.actor, **details)
        log.info("share %s %s by %s", type(event).__name__.lower(), event.originator_id, event.actor,
                 extra={"request": str(event.originator_id), "actor": event.actor})

    def _fold(self, event: SharingEvent) -> None:
        if isinstance(event, AgreementRecorded):
            self.agreements[event.originator_id] = event
        elif isinstance(event, Requested):
            self.requests[event.originator_id] = ShareRequest.start(event)
        else:
            self.requests[event.originator_id].apply(event)

    def _catch_up(self) -> None:
        """Fold in the requests log's events after the last one seen (called under the lock)."""
        while notifications := self._requests_log.read(self._seen, 5000):
            for n in notifications:
                self._fold(self.mapper.to_domain_event(n))
                self._seen = n.id

    def _days_late(self, deadline: datetime, moment: datetime) -> int:
        """Working days after the deadline's last working day, up to and including ``moment``'s day."""
        last_day = (deadline.astimezone(SHANGHAI) - timedelta(days=1)).date()
        return self.calendar.working_days_between(last_day, moment.astimezone(SHANGHAI).date())


def _agreement_dict(event: AgreementRecorded) -> dict[str, Any]:
    return {"provider": event.provider, "consumer": event.consumer, "resource": event.resource,
            "reference": event.reference, "recorded_by": event.actor, "at": event.timestamp.isoformat()}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


TEXT_CHARS = 4000  # of a scope, purpose, reason or note: every event repeats it in the store and the audit log
LIST_VALUES = 2000  # data items named in one request


def _check_sizes(event: SharingEvent) -> None:
    """Refuse an event whose free text or lists are larger than a request needs, naming the field."""
    for name, value in vars(event).items():
        if isinstance(value, str) and len(value) > TEXT_CHARS:
            raise WorkflowError(f"{name}: at most {TEXT_CHARS} characters, got {len(value)}")
        if isinstance(value, (list, tuple)) and (len(value) > LIST_VALUES or any(
                isinstance(v, str) and len(v) > TEXT_CHARS for v in value)):
            raise WorkflowError(f"{name}: at most {LIST_VALUES} values of at most {TEXT_CHARS} characters each")
