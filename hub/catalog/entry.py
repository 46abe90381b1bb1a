"""A catalog entry as an event-sourced aggregate: its events and the state they fold into.

The aggregate id is uuid5 of the resource code, so a code names one entry
for ever and two agencies cannot create the same code at once (the second
insert of version 1 fails).  Topics are fixed strings.

Workflow (Arts. 10, 19):

    draft ──submit──▶ submitted ──publish──▶ published
      ▲                  │  (needs a secrecy review that cleared it and
      │                  │   every data item accepted)
      │                  └──return (reasons)──▶ returned ──submit──▶ submitted
      └── edit (from draft, returned or published: a revision) ◀──┘

A published entry that is revised stays published, with its last
published content, until the revision is published.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from eventsourcing.domain import DomainEvent
from eventsourcing.utils import register_topic

from exchange.contracts.errors import ExchangeError
from hub.catalog.metadata import item_names

_NAMESPACE = uuid.UUID("0c7b51f4-6a0e-4d63-9f3a-7e0f2b8c1d55")

DRAFT, SUBMITTED, PUBLISHED, RETURNED = "draft", "submitted", "published", "returned"
STATUSES = (DRAFT, SUBMITTED, PUBLISHED, RETURNED)


class WorkflowError(ValueError, ExchangeError):
    """A workflow step that the entry's state does not allow; the message says why."""


class UnknownEntry(WorkflowError):
    """No entry has the given code."""


def entry_id(code: str) -> uuid.UUID:
    """The aggregate id of the entry with resource code ``code``."""
    return uuid.uuid5(_NAMESPACE, code)


@dataclass(frozen=True)
class CatalogEvent(DomainEvent):
    actor: str


@dataclass(frozen=True)
class Edited(CatalogEvent):
    """The entry's content was compiled or changed (version 1 creates the entry)."""

    TOPIC = "exchange.catalog:Edited"
    content: dict[str, Any]


@dataclass(frozen=True)
class Submitted(CatalogEvent):
    TOPIC = "exchange.catalog:Submitted"


@dataclass(frozen=True)
class SecrecyReviewed(CatalogEvent):
    """Art. 19: the secrecy review of the submitted content."""

    TOPIC = "exchange.catalog:SecrecyReviewed"
    cleared: bool
    sensitivity: list[str]  # secret, commercial, personal: sharing needs a secrecy agreement
    note: str


@dataclass(frozen=True)
class ItemsReviewed(CatalogEvent):
    """Item-by-item review: item name -> "" when accepted, else the reason it is not."""

    TOPIC = "exchange.catalog:ItemsReviewed"
    decisions: dict[str, str]


@dataclass(frozen=True)
class Published(CatalogEvent):
    TOPIC = "exchange.catalog:Published"
    publish_date: date


@dataclass(frozen=True)
class Returned(CatalogEvent):
    TOPIC = "exchange.catalog:Returned"
    reasons: list[str]


@dataclass(frozen=True)
class SchemaFlagged(CatalogEvent):
    """The source table changed: the entry must be updated within 2 working days (Art. 10)."""

    TOPIC = "exchange.catalog:SchemaFlagged"
    changed_at: datetime
    schema_version: int
    columns: list[str]


@dataclass(frozen=True)
class FullyReviewed(CatalogEvent):
    """The yearly full review of a published entry (Art. 10)."""

    TOPIC = "exchange.catalog:FullyReviewed"
    note: str


@dataclass(frozen=True)
class SourceSchemaSeen(CatalogEvent):
    """A captured table's schema as the hub received it (aggregate: one per agency and table).

    Not an entry event: it tells the catalog which resources each agency
    captures, for completeness and for flagging entries when they change."""

    TOPIC = "exchange.catalog:SourceSchemaSeen"
    agency: str
    resource: str
    changed_at: datetime
    schema_version: int
    columns: list[str]


def source_id(agency: str, resource: str) -> uuid.UUID:
    """The aggregate id of the schema history of one captured table."""
    return uuid.uuid5(_NAMESPACE, f"source\0{agency}\0{resource}")


EVENT_CLASSES = (Edited, Submitted, SecrecyReviewed, ItemsReviewed, Published, Returned, SchemaFlagged, FullyReviewed,
                 SourceSchemaSeen)
for _cls in EVENT_CLASSES:
    register_topic(_cls.TOPIC, _cls)


@dataclass
class CatalogEntry:
    """The current state of one entry, folded from its events.

    ``apply`` only ever replaces attributes, never changes them in place, so
    a shallow copy is a consistent snapshot."""

    code: str
    version: int = 0
    status: str = DRAFT
    content: dict[str, Any] = field(default_factory=dict)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    submitted_at: datetime | None = None
    secrecy: SecrecyReviewed | None = None           # of the current submission
    decisions: dict[str, str] = field(default_factory=dict)  # of the current submission
    return_reasons: list[str] = field(default_factory=list)
    published: dict[str, Any] | None = None          # content in effect (last published)
    published_sensitivity: tuple[str, ...] = ()
    publish_date: date | None = None
    published_at: datetime | None = None
    full_review_at: datetime | None = None           # last publication or yearly full review
    flag: SchemaFlagged | None = None                # source changed since the last submission

    @property
    def agency(self) -> str:
        return self.content.get("agency", "")

    @property
    def resource(self) -> str:
        return self.content.get("resource", "")

    def apply(self, event: CatalogEvent) -> None:
        """Fold one event into the state."""
        if event.originator_version != self.version + 1:
            raise ValueError(f"entry {self.code}: event version {event.originator_version} after {self.version}")
        self.version = event.originator_version
        self.updated_at = event.timestamp
        if isinstance(event, Edited):
            self.created_at = self.created_at or event.timestamp
            self.content = event.content
            self.status = DRAFT
        elif isinstance(event, Submitted):
            self.status, self.submitted_at = SUBMITTED, event.timestamp
            self.secrecy, self.decisions, self.return_reasons, self.flag = None, {}, [], None
        elif isinstance(event, SecrecyReviewed):
            self.secrecy = event
        elif isinstance(event, ItemsReviewed):
            self.decisions = {**self.decisions, **event.decisions}
        elif isinstance(event, Published):
            self.status = PUBLISHED
            self.published = self.content
            self.published_sensitivity = tuple(sorted(self.secrecy.sensitivity)) if self.secrecy else ()
            self.publish_date, self.published_at, self.full_review_at = event.publish_date, event.timestamp, event.timestamp
        elif isinstance(event, Returned):
            self.status, self.return_reasons = RETURNED, list(event.reasons)
        elif isinstance(event, SchemaFlagged):
            self.flag = event
        elif isinstance(event, FullyReviewed):
            self.full_review_at = event.timestamp
        else:
            raise TypeError(f"not a catalog event: {event!r}")

    # Checks of each step; each raises WorkflowError naming what is missing.

    def check_edit(self) -> None:
        if self.status == SUBMITTED:
            raise WorkflowError(f"entry {self.code} is under review; it can be changed after it is published "
                                "or returned")

    def check_submit(self) -> None:
        if self.version == 0:
            raise UnknownEntry(f"no catalog entry has code {self.code}")
        if self.status == SUBMITTED:
            raise WorkflowError(f"entry {self.code} is already submitted and awaits review")
        if self.status == PUBLISHED:
            raise WorkflowError(f"entry {self.code} is published and unchanged since; edit it to revise it")

    def check_review(self) -> None:
        if self.status != SUBMITTED:
            raise WorkflowError(f"entry {self.code} is {self.status or 'missing'}, not submitted: "
                                "only a submitted entry is reviewed")

    def check_decisions(self, decisions: dict[str, str]) -> None:
        self.check_review()
        unknown = sorted(set(decisions) - set(item_names(self.content)))
        if unknown:
            raise WorkflowError(f"entry {self.code} has no data item {', '.join(unknown)}")

    def check_publish(self) -> None:
        self.check_review()
        if self.secrecy is None:
            raise WorkflowError(f"entry {self.code} cannot be published without a recorded secrecy review (Art. 19)")
        if not self.secrecy.cleared:
            raise WorkflowError(f"entry {self.code}: the secrecy review did not clear it; return it with reasons")
        pending = [n for n in item_names(self.content) if n not in self.decisions]
        if pending:
            raise WorkflowError(f"entry {self.code}: data items not yet reviewed: {', '.join(pending)}")
        rejected = self.rejected_items()
        if rejected:
            raise WorkflowError(f"entry {self.code}: data items not accepted: "
                                + "; ".join(f"{n} ({r})" for n, r in rejected.items()) + "; return it with reasons")

    def check_full_review(self) -> None:
        if self.published is None:
            raise WorkflowError(f"entry {self.code} has never been published; nothing to review yearly")

    def rejected_items(self) -> dict[str, str]:
        return {name: reason for name, reason in self.decisions.items() if reason}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view of the state."""
        return {
            "code": self.code, "version": self.version, "status": self.status, "content": self.content,
            "submitted_at": _iso(self.submitted_at), "updated_at": _iso(self.updated_at),
            "secrecy_review": None if self.secrecy is None else {
                "cleared": self.secrecy.cleared, "sensitivity": list(self.secrecy.sensitivity),
                "note": self.secrecy.note, "actor": self.secrecy.actor},
            "item_decisions": dict(self.decisions), "return_reasons": list(self.return_reasons),
            "published": self.published, "publish_date": self.publish_date.isoformat() if self.publish_date else None,
            "full_review_at": _iso(self.full_review_at),
            "schema_flag": None if self.flag is None else {
                "changed_at": _iso(self.flag.changed_at), "schema_version": self.flag.schema_version,
                "columns": list(self.flag.columns)},
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None
