"""Share requests (Arts. 14-15) and secrecy agreements: their events and the state they fold into.

Workflow of a request for a conditional resource:

    pending ──approve (some or all items, optional expiry)──▶ approved ──revoke──▶ revoked
       │                                                        │
       └──reject (reasons)──▶ rejected                          │
                                 │                              │
    rejected, approved with fewer items, or pending past        │
    its deadline ──dispute (grounds)──▶ disputed                ▼
    disputed ──decide (coordinating office)──▶ approved or rejected, final

The provider answers within 10 working days of the request (the deadline
is fixed when the request is made); an answer after it is late.  A
secrecy agreement is recorded per provider, consumer and resource, and is
needed before data of a secret, commercial or personal resource flows.

Each request is an aggregate with a random id; an agreement's id is
uuid5 of (provider, consumer, resource), so there is one per triple.
Topics are fixed strings so stored events never depend on module paths.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import register_topic

from exchange.contracts.errors import ExchangeError
from hub.sharing import scope

PENDING, APPROVED, REJECTED, DISPUTED, REVOKED = "pending", "approved", "rejected", "disputed", "revoked"
STATUSES = (PENDING, APPROVED, REJECTED, DISPUTED, REVOKED)
ANSWER_WORKING_DAYS = 10
_AGREEMENT_NAMESPACE = uuid.UUID("3f1d9c2e-8b47-4a5e-a0c6-6e2b7d1f4a93")


class WorkflowError(ValueError, ExchangeError):
    """A step the request's state (or the caller's role) does not allow; the message says why."""


def agreement_id(provider: str, consumer: str, resource: str) -> uuid.UUID:
    """The aggregate id of the secrecy agreement between a provider and a consumer about a resource."""
    return uuid.uuid5(_AGREEMENT_NAMESPACE, f"{provider}\n{consumer}\n{resource}")


@dataclass(frozen=True)
class SharingEvent(DomainEvent):
    actor: str  # the agency or administrator who took the step


@dataclass(frozen=True)
class Requested(SharingEvent):
    TOPIC = "exchange.sharing:Requested"
    provider: str
    resource: str
    scope: str
    purpose: str
    items: list[str]
    deadline: datetime  # end of the 10th working day after the request
    rows: str = ""  # the row filter asked for (hub/sharing/scope.py; "" every row)


@dataclass(frozen=True)
class Approved(SharingEvent):
    TOPIC = "exchange.sharing:Approved"
    items: list[str]
    expires: datetime | None
    note: str
    rows: str = ""  # the approved row filter: the request's AND the provider's ("" every row)


@dataclass(frozen=True)
class Rejected(SharingEvent):
    TOPIC = "exchange.sharing:Rejected"
    reasons: str


@dataclass(frozen=True)
class Disputed(SharingEvent):
    TOPIC = "exchange.sharing:Disputed"
    grounds: str


@dataclass(frozen=True)
class Decided(SharingEvent):
    """The coordinating office's decision on a dispute: approve (items, expiry) or reject (reasons)."""

    TOPIC = "exchange.sharing:Decided"
    approve: bool
    items: list[str]
    expires: datetime | None
    reasons: str
    rows: str = ""  # approve: the approved row filter ("" every row)


@dataclass(frozen=True)
class Revoked(SharingEvent):
    TOPIC = "exchange.sharing:Revoked"
    reason: str


@dataclass(frozen=True)
class AgreementRecorded(SharingEvent):
    TOPIC = "exchange.sharing:AgreementRecorded"
    provider: str
    consumer: str
    resource: str
    reference: str  # the signed agreement's reference (document number)


for _cls in (Requested, Approved, Rejected, Disputed, Decided, Revoked, AgreementRecorded):
    register_topic(_cls.TOPIC, _cls)


@dataclass
class ShareRequest:
    """The folded state of one share request."""

    id: uuid.UUID
    requester: str
    provider: str
    resource: str
    scope: str
    purpose: str
    items: list[str]
    requested_at: datetime
    deadline: datetime
    version: int = 1
    status: str = PENDING
    approved_items: list[str] = field(default_factory=list)
    expires: datetime | None = None
    answered_at: datetime | None = None  # the provider's first answer
    reasons: str = ""
    grounds: str = ""
    decided_by: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    rows: str = ""  # the row filter asked for
    approved_rows: str = ""  # the row filter approved

    @classmethod
    def start(cls, event: Requested) -> "ShareRequest":
        request = cls(event.originator_id, event.actor, event.provider, event.resource, event.scope, event.purpose,
                      list(event.items), event.timestamp, event.deadline, rows=event.rows)
        request.history.append(_step(event, "requested"))
        return request

    def apply(self, event: SharingEvent) -> None:
        """Fold one later event into the state (events are checked before they are made)."""
        self.version = event.originator_version
        if isinstance(event, Approved):
            self.status, self.approved_items, self.expires = APPROVED, list(event.items), event.expires
            self.approved_rows = event.rows
            self.answered_at = self.answered_at or event.timestamp
            self.reasons = event.note
        elif isinstance(event, Rejected):
            self.status, self.reasons = REJECTED, event.reasons
            self.answered_at = self.answered_at or event.timestamp
        elif isinstance(event, Disputed):
            self.status, self.grounds = DISPUTED, event.grounds
        elif isinstance(event, Decided):
            self.decided_by = event.actor
            if event.approve:
                self.status, self.approved_items, self.expires = APPROVED, list(event.items), event.expires
                self.approved_rows = event.rows
            else:
                self.status, self.approved_items, self.reasons = REJECTED, [], event.reasons
                self.approved_rows = ""
        elif isinstance(event, Revoked):
            self.status, self.reasons = REVOKED, event.reason
        else:
            raise TypeError(f"not a share request event: {type(event).__name__}")
        self.history.append(_step(event, type(event).__name__.lower()))

    # Rules: each returns the event to record or raises WorkflowError.

    def approve(self, actor: str, items: list[str] | None, expires: datetime | None, note: str,
                now: datetime, rows: str = "") -> Approved:
        self._require(actor == self.provider, f"only the provider {self.provider} answers this request")
        self._require(self.status == PENDING, f"request {self.id} is {self.status}; only a pending request is answered")
        granted = list(self.items) if not items else list(dict.fromkeys(items))
        extra = [i for i in granted if i not in self.items]
        self._require(not extra, f"items {extra} were not requested (requested: {self.items})")
        self._require(expires is None or expires > now, "the expiry must lie in the future")
        return self._next(Approved, actor, now, items=granted, expires=expires, note=note,
                          rows=self._approved_rows(rows, granted))

    def reject(self, actor: str, reasons: str, now: datetime) -> Rejected:
        self._require(actor == self.provider, f"only the provider {self.provider} answers this request")
        self._require(self.status == PENDING, f"request {self.id} is {self.status}; only a pending request is answered")
        self._require(bool(reasons.strip()), "a rejection needs its reasons (Art. 15)")
        return self._next(Rejected, actor, now, reasons=reasons)

    def dispute(self, actor: str, grounds: str, now: datetime) -> Disputed:
        self._require(actor == self.requester, f"only the requester {self.requester} disputes this request")
        self._require(not self.decided_by, f"request {self.id} was decided by the coordinating office; that is final")
        disputable = (self.status == REJECTED
                      or (self.status == APPROVED and set(self.approved_items) != set(self.items))
                      or (self.status == PENDING and now >= self.deadline))
        self._require(disputable, f"request {self.id} is {self.status}: only a rejection, an approval of fewer items "
                                  "or a request left unanswered past its deadline can be disputed")
        self._require(bool(grounds.strip()), "a dispute needs its grounds")
        return self._next(Disputed, actor, now, grounds=grounds)

    def decide(self, actor: str, approve: bool, items: list[str] | None, expires: datetime | None, reasons: str,
               now: datetime, rows: str = "") -> Decided:
        self._require(self.status == DISPUTED, f"request {self.id} is {self.status}; the office decides disputes only")
        granted = (list(self.items) if not items else list(dict.fromkeys(items))) if approve else []
        extra = [i for i in granted if i not in self.items]
        self._require(not extra, f"items {extra} were not requested (requested: {self.items})")
        self._require(approve or bool(reasons.strip()), "a decision to reject needs its reasons")
        self._require(expires is None or expires > now, "the expiry must lie in the future")
        return self._next(Decided, actor, now, approve=approve, items=granted, expires=expires, reasons=reasons,
                          rows=self._approved_rows(rows, granted) if approve else "")

    def revoke(self, actor: str, reason: str, now: datetime, *, admin: bool = False) -> Revoked:
        self._require(admin or actor == self.provider,
                      f"only the provider {self.provider} or the coordinating office revokes this approval")
        self._require(self.status == APPROVED, f"request {self.id} is {self.status}; only an approval is revoked")
        self._require(bool(reason.strip()), "a revocation needs its reason")
        return self._next(Revoked, actor, now, reason=reason)

    # Queries.

    def active(self, now: datetime) -> bool:
        """Approved, not revoked, not expired."""
        return self.status == APPROVED and (self.expires is None or now < self.expires)

    def overdue(self, now: datetime) -> bool:
        """Still unanswered after its deadline."""
        return self.answered_at is None and self.status == PENDING and now >= self.deadline

    def late(self) -> bool:
        """Answered, but after its deadline."""
        return self.answered_at is not None and self.answered_at >= self.deadline

    def to_dict(self, now: datetime) -> dict[str, Any]:
        return {
            "id": str(self.id), "requester": self.requester, "provider": self.provider, "resource": self.resource,
            "scope": self.scope, "purpose": self.purpose, "items": self.items, "status": self.status,
            "approved_items": self.approved_items, "requested_at": self.requested_at.isoformat(),
            "deadline": self.deadline.isoformat(), "expires": self.expires and self.expires.isoformat(),
            "answered_at": self.answered_at and self.answered_at.isoformat(), "reasons": self.reasons,
            "grounds": self.grounds, "decided_by": self.decided_by, "overdue": self.overdue(now), "late": self.late(),
            "active": self.active(now), "history": self.history, "rows": self.rows, "approved_rows": self.approved_rows,
        }

    def _approved_rows(self, rows: str, granted: list[str]) -> str:
        """Art. 15: the request's row filter AND the answering party's narrowing, naming granted items only."""
        approved = scope.both(scope.optional(self.rows), scope.optional(rows))
        if approved is None:
            return ""
        scope.check_items(approved, granted, "the granted data items")
        return approved.text

    def _next(self, kind: type, actor: str, now: datetime, **fields: Any) -> SharingEvent:
        return kind(originator_id=self.id, originator_version=self.version + 1, timestamp=now, actor=actor, **fields)

    @staticmethod
    def _require(condition: bool, message: str) -> None:
        if not condition:
            raise WorkflowError(message)


def _step(event: SharingEvent, name: str) -> dict[str, Any]:
    return {"step": name, "actor": event.actor, "at": event.timestamp.isoformat()}
