"""The catalog: commands that append entry events, and queries over their current state.

Catalog events live in their own notification log (table ``catalog_events``)
in the hub's store, apart from the agencies' event logs.  Every query first
folds in whatever the log gained since the last one, so several processes
may share a store and every answer reflects what is durably recorded.
A command checks the entry's state, appends its events in one transaction
and fails cleanly when someone else changed the entry in between.
"""

from __future__ import annotations

import copy
import logging
import threading
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from uuid import UUID

from eventsourcing.persistence import IntegrityError, Tracking

from exchange.contracts.events import make_mapper
from exchange.store import open_store
from exchange.store.at_rest import StateCipher
from hub.audit import AuditLog
from hub.catalog import metadata
from hub.catalog.entry import (
    DRAFT,
    CatalogEntry,
    CatalogEvent,
    Edited,
    FullyReviewed,
    ItemsReviewed,
    Published,
    Returned,
    SchemaFlagged,
    SecrecyReviewed,
    SourceSchemaSeen,
    Submitted,
    UnknownEntry,
    WorkflowError,
    entry_id,
    source_id,
)
from hub.catalog.terms import SENSITIVITIES, ResourceTerms
from hub.workdays import SHANGHAI, WorkingCalendar

log = logging.getLogger(__name__)

EVENTS_TABLE = "catalog_events"
READ_BATCH = 1000


class Catalog:
    """The hub's resource catalog over the hub's store (``sqlite:///...`` or ``postgresql://...``;
    ``cipher``: the store's key when it is encrypted at rest)."""

    def __init__(self, store_url: str, calendar: WorkingCalendar, audit: AuditLog | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(timezone.utc), cipher: StateCipher | None = None):
        self.calendar = calendar
        self.audit = audit
        self.now = now
        self.store = open_store(store_url, cipher=cipher)
        self.recorder = self.store.log(EVENTS_TABLE)
        self.mapper = make_mapper()
        self._lock = threading.RLock()
        self._entries: dict[UUID, CatalogEntry] = {}
        self._by_resource: dict[tuple[str, str], UUID] = {}  # (agency, resource) of working content
        self._by_published: dict[tuple[str, str], UUID] = {}  # (agency, resource) of published content
        self._sources: dict[tuple[str, str], SourceSchemaSeen] = {}
        self._head = 0

    def close(self) -> None:
        self.store.close()

    # Commands of the providing agency.

    def edit(self, agency: str, content: dict[str, Any], *, submit: bool = False) -> CatalogEntry:
        """Create or change the agency's entry (``content["code"]`` names it); with ``submit``, also submit it.

        Raises InvalidEntry for content that breaks a metadata rule and
        WorkflowError when the entry's state or owner does not allow it."""
        content = metadata.check(content)
        if content["agency"] != agency:
            raise WorkflowError(f"entry {content['code']} names agency {content['agency']}, "
                                f"but it is submitted by {agency}")
        with self._lock:
            entry = self._entry(content["code"])
            if entry.version:
                if entry.agency != agency:
                    raise WorkflowError(f"resource code {entry.code} belongs to agency {entry.agency}")
                entry.check_edit()
            self._check_resource_unclaimed(content)
            events: list[CatalogEvent] = []
            if content != entry.content:
                events.append(Edited(**self._header(entry, 1), actor=agency, content=content))
            elif not submit:
                return entry
            if submit:
                if not events:
                    entry.check_submit()
                events.append(Submitted(**self._header(entry, len(events) + 1), actor=agency))
            return self._save(entry, events, "catalog.submit" if submit else "catalog.edit", agency)

    def submit(self, agency: str, code: str) -> CatalogEntry:
        """Submit (or resubmit) the agency's entry for review."""
        with self._lock:
            entry = self._existing(code)
            if entry.agency != agency:
                raise WorkflowError(f"entry {code} belongs to agency {entry.agency}, not {agency}")
            entry.check_submit()
            return self._save(entry, [Submitted(**self._header(entry), actor=agency)], "catalog.submit", agency)

    # Administrative commands (the platform's reviewers).

    def record_secrecy_review(self, code: str, actor: str, cleared: bool, sensitivity: Iterable[str] = (),
                              note: str = "") -> CatalogEntry:
        """Record the secrecy review (Art. 19) of the submitted entry."""
        sensitivity = sorted(set(sensitivity))
        unknown = [s for s in sensitivity if s not in SENSITIVITIES]
        if unknown:
            raise WorkflowError(f"unknown sensitivity {', '.join(unknown)}: use {', '.join(sorted(SENSITIVITIES))}")
        if not cleared and not note.strip():
            raise WorkflowError("a secrecy review that does not clear the entry needs a note saying why")
        with self._lock:
            entry = self._existing(code)
            entry.check_review()
            event = SecrecyReviewed(**self._header(entry), actor=actor, cleared=cleared, sensitivity=sensitivity,
                                    note=note.strip())
            return self._save(entry, [event], "catalog.secrecy_review", actor)

    def review_items(self, code: str, actor: str, decisions: dict[str, str]) -> CatalogEntry:
        """Record item-by-item decisions: item name -> "" (accepted) or the reason it is not."""
        if not decisions:
            raise WorkflowError("no item decisions given")
        decisions = {name: reason.strip() for name, reason in decisions.items()}
        with self._lock:
            entry = self._existing(code)
            entry.check_decisions(decisions)
            event = ItemsReviewed(**self._header(entry), actor=actor, decisions=decisions)
            return self._save(entry, [event], "catalog.review", actor)

    def publish(self, code: str, actor: str) -> CatalogEntry:
        """Publish the submitted entry (secrecy review cleared, every item accepted)."""
        with self._lock:
            entry = self._existing(code)
            entry.check_publish()
            header = self._header(entry)
            event = Published(**header, actor=actor, publish_date=header["timestamp"].astimezone(SHANGHAI).date())
            return self._save(entry, [event], "catalog.publish", actor)

    def return_entry(self, code: str, actor: str, reasons: Iterable[str]) -> CatalogEntry:
        """Return the submitted entry to its agency with reasons (rejected items' reasons are added)."""
        reasons = [r.strip() for r in reasons if r.strip()]
        with self._lock:
            entry = self._existing(code)
            entry.check_review()
            reasons += [f"data item {n}: {r}" for n, r in entry.rejected_items().items()]
            if entry.secrecy is not None and not entry.secrecy.cleared:
                reasons.append(f"secrecy review: {entry.secrecy.note}")
            if not reasons:
                raise WorkflowError(f"returning entry {code} needs at least one reason")
            return self._save(entry, [Returned(**self._header(entry), actor=actor, reasons=reasons)],
                              "catalog.return", actor)

    def record_full_review(self, code: str, actor: str, note: str = "") -> CatalogEntry:
        """Record the yearly full review of a published entry."""
        with self._lock:
            entry = self._existing(code)
            entry.check_full_review()
            return self._save(entry, [FullyReviewed(**self._header(entry), actor=actor, note=note.strip())],
                              "catalog.full_review", actor)

    def record_source_schema(self, agency: str, resource: str, changed_at: datetime, schema_version: int,
                             columns: list[str], tracking: Tracking | None = None) -> CatalogEntry | None:
        """Record a captured table's schema; after a change (schema version 2 on), flag its entry.

        The agency must then update the entry within 2 working days (Art. 10).
        Entries still in their first draft are not flagged: they are being
        compiled.  ``tracking`` (the position in the agency's log) is written
        in the same transaction.  Returns the flagged entry, if any."""
        with self._lock:
            self._catch_up()
            seen = self._sources.get((agency, resource))
            events: list[CatalogEvent] = [SourceSchemaSeen(
                originator_id=source_id(agency, resource), originator_version=(seen.originator_version if seen else 0) + 1,
                timestamp=self.now(), actor="source", agency=agency, resource=resource, changed_at=changed_at,
                schema_version=schema_version, columns=list(columns))]
            entry = self._find(agency, resource)
            flag = (schema_version > 1 and entry is not None
                    and not (entry.status == DRAFT and entry.published is None and entry.submitted_at is None))
            if flag:
                events.append(SchemaFlagged(**self._header(entry), actor="source", changed_at=changed_at,
                                            schema_version=schema_version, columns=list(columns)))
            self._insert(events, tracking)
            if flag:
                self._audited("catalog.schema_flag", "source", entry.code, events[-1:])
                return self._existing(entry.code)
            return None

    def advance(self, tracking: Tracking) -> None:
        """Record a position in an upstream log without any catalog event."""
        self.recorder.insert_events([], tracking=tracking)

    def position(self, name: str) -> int:
        """A position recorded with ``advance`` or ``record_source_schema`` (0 when none)."""
        return self.recorder.position(name)

    # Queries.

    def get(self, code: str) -> CatalogEntry | None:
        """The entry with resource code ``code`` as it is now (a copy), or None."""
        with self._lock:
            self._catch_up()
            entry = self._entries.get(entry_id(code))
            return copy.copy(entry) if entry else None

    def entries(self, agency: str | None = None, status: str | None = None) -> list[CatalogEntry]:
        """Entries, by code, optionally of one agency and in one status."""
        with self._lock:
            self._catch_up()
            found = [copy.copy(e) for e in self._entries.values()
                     if (agency is None or e.agency == agency) and (status is None or e.status == status)]
        return sorted(found, key=lambda e: e.code)

    def sources(self) -> dict[tuple[str, str], SourceSchemaSeen]:
        """The latest schema of every captured table the hub has seen, by (agency, resource)."""
        with self._lock:
            self._catch_up()
            return dict(self._sources)

    def published(self) -> list[CatalogEntry]:
        """Entries with published content in effect (including ones under revision)."""
        return [e for e in self.entries() if e.published is not None]

    def history(self, code: str) -> list[CatalogEvent]:
        """Every event of the entry, oldest first."""
        self._existing(code)
        stored = self.recorder.select_events(entry_id(code))
        return [self.mapper.to_domain_event(s) for s in stored]

    def terms(self, provider: str, resource: str) -> ResourceTerms | None:
        """Share terms of the provider's published entry for ``resource`` (TermsSource)."""
        with self._lock:
            self._catch_up()
            entry = self._lookup(self._by_published, provider, resource, lambda e: e.published)
            if entry is None:
                return None
            content = entry.published
            return ResourceTerms(
                provider=provider, resource=resource, code=content["code"], share_type=content["share_type"],
                items=metadata.item_names(content), condition=content["share_condition"],
                basis=content["not_shared_basis"], sensitivity=frozenset(entry.published_sensitivity),
            )

    # Internals.

    def _existing(self, code: str) -> CatalogEntry:
        entry = self.get(code)
        if entry is None:
            raise UnknownEntry(f"no catalog entry has code {code}")
        return entry

    def _entry(self, code: str) -> CatalogEntry:
        return self.get(code) or CatalogEntry(code=code)

    def _find(self, agency: str, resource: str) -> CatalogEntry | None:
        self._catch_up()
        return self._lookup(self._by_resource, agency, resource, lambda e: e.content)

    def _lookup(self, index: dict[tuple[str, str], UUID], agency: str, resource: str,
                content: Callable[[CatalogEntry], dict[str, Any] | None]) -> CatalogEntry | None:
        """The entry the index names for (agency, resource), if its content still says so."""
        entry = self._entries.get(index.get((agency, resource)))  # type: ignore[arg-type]
        found = content(entry) if entry is not None else None
        return entry if found and (found["agency"], found["resource"]) == (agency, resource) else None

    def _check_resource_unclaimed(self, content: dict[str, Any]) -> None:
        if not content["resource"]:
            return
        other = self._find(content["agency"], content["resource"])
        if other is not None and other.code != content["code"]:
            raise WorkflowError(f"resource {content['resource']} of agency {content['agency']} is already "
                                f"described by entry {other.code}")

    def _header(self, entry: CatalogEntry, offset: int = 1) -> dict[str, Any]:
        return {"originator_id": entry_id(entry.code), "originator_version": entry.version + offset,
                "timestamp": self.now()}

    def _save(self, entry: CatalogEntry, events: list[CatalogEvent], action: str, actor: str) -> CatalogEntry:
        self._insert(events, code=entry.code)
        self._audited(action, actor, entry.code, events)
        return self._existing(entry.code)

    def _insert(self, events: list[CatalogEvent], tracking: Tracking | None = None, code: str = "") -> None:
        """Append ``events`` (and ``tracking``) in one transaction.

        A version already taken means the state they were checked against
        is stale; with ``tracking`` it may instead mean the upstream position
        is already recorded, so the IntegrityError is left to the caller."""
        try:
            self.recorder.insert_events([self.mapper.to_stored_event(e) for e in events], tracking=tracking)
        except IntegrityError:
            if tracking is not None:
                raise
            raise WorkflowError(f"entry {code} was changed at the same time by someone else; "
                                "look at it again and retry") from None

    def _audited(self, action: str, actor: str, code: str, events: list[CatalogEvent]) -> None:
        """Audit the entry's ``events`` just stored (hub/audit_reconcile.py relies on code, first and version)."""
        if self.audit is not None:
            self.audit.record(action, actor, code=code, first=events[0].originator_version,
                              version=events[-1].originator_version)
        log.info("%s %s by %s", action, code, actor, extra={"code": code, "action": action, "actor": actor})

    def _catch_up(self) -> None:
        while True:
            notifications = self.recorder.read(self._head, READ_BATCH)
            for n in notifications:
                event = self.mapper.to_domain_event(n)
                self._head = n.id
                if isinstance(event, SourceSchemaSeen):
                    self._sources[(event.agency, event.resource)] = event
                    continue
                entry = self._entries.get(event.originator_id)
                if entry is None:
                    entry = self._entries[event.originator_id] = CatalogEntry(code=event.content["code"])
                entry.apply(event)
                if entry.resource:
                    self._by_resource[(entry.agency, entry.resource)] = event.originator_id
                if entry.published is not None and entry.published["resource"]:
                    self._by_published[(entry.published["agency"], entry.published["resource"])] = event.originator_id
            if len(notifications) < READ_BATCH:
                return
