"""The hub store and the audit log agree: every stored decision is audited, every audited decision is stored.

A decision (a catalog edit, review, publication ...; a share request, its
answer, a dispute, the office's decision, a revocation, a secrecy agreement)
is written to the hub store first and audited right after.  A hub killed
between the two leaves a stored decision without its audit entry, and the
chain alone cannot show it.  ``reconcile`` cross-checks both and names

- decisions the store holds that no audit entry covers (a crash between the
  two writes; the hub appends them at its next start, see ``repair``), and
- audit entries naming decisions the store does not hold (no crash causes
  this: the store was restored from an older backup, or one side was
  altered).

A decision is identified by its log, aggregate id and version.  Catalog
entries are audited by ``code`` with the last ``version`` an action stored
(and, since this module, the ``first``); sharing steps by ``originator_id``
and ``originator_version``; registry changes by ``agency`` and ``version``;
kept delivery receipts by ``receipt``.  Appended repairs are ``audit.recovered``
entries carrying the same identity, the decision's kind, actor and time.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence
from uuid import UUID

from exchange.contracts.events import make_mapper
from hub.audit import AuditError, AuditLog, verify
from hub.catalog.catalog import EVENTS_TABLE as CATALOG_LOG
from hub.catalog.entry import SourceSchemaSeen, entry_id
from hub.registry.agencies import LOG as REGISTRY_LOG
from hub.registry.agencies import record_id
from hub.sharing.ledger import REQUESTS_LOG
from hub.sharing.receipts import RECEIPTS_LOG

log = logging.getLogger(__name__)

RECOVERED = "audit.recovered"
READ_BATCH = 1000


@dataclass(frozen=True, order=True)
class Decision:
    """One stored step: which log, which aggregate, which version."""

    log: str  # "catalog" or "sharing"
    id: str
    version: int


@dataclass(frozen=True)
class StoredRecord:
    """A stored registry change or kept receipt: plain JSON, not a domain event."""

    kind: str
    actor: str
    timestamp: datetime


@dataclass
class Report:
    """What ``reconcile`` found."""

    decisions: int = 0
    audited: int = 0
    unaudited: list[tuple[Decision, Any]] = field(default_factory=list)  # (decision, its stored event)
    not_stored: list[tuple[Decision, int]] = field(default_factory=list)  # (decision, audit seq naming it)

    @property
    def agree(self) -> bool:
        return not self.unaudited and not self.not_stored

    def to_dict(self) -> dict[str, Any]:
        return {"agree": self.agree, "decisions": self.decisions, "audited": self.audited,
                "unaudited": [_describe(d, e) for d, e in self.unaudited],
                "not_stored": [{**vars(d), "audit_seq": seq} for d, seq in self.not_stored]}


def reconcile(store: Any, audit_path: str | Path, peers: Sequence[str | Path] = ()) -> Report:
    """Cross-check the hub ``store`` (an open EventStore) with the audit log at ``audit_path`` and those
    of the other hubs serving the store (``peers``: a decision audited in any of them is audited)."""
    audited: dict[Decision, int] = {}
    for path in peers:
        if Path(path).exists():
            audited.update(_chain_decisions(path))
        else:
            log.warning("the audit log %s of another hub ([audit] peers) is not readable here: decisions "
                        "audited only there count as not audited", path)
    if Path(audit_path).exists():  # no log yet: nothing is audited
        audited.update(_chain_decisions(audit_path))
    stored = dict(_stored_decisions(store))
    report = Report(decisions=len(stored), audited=len(audited))
    report.unaudited = [(d, stored[d]) for d in sorted(set(stored) - set(audited))]
    report.not_stored = sorted(((d, seq) for d, seq in audited.items() if d not in stored),
                               key=lambda pair: pair[1])
    return report


def _chain_decisions(path: str | Path) -> dict[Decision, int]:
    """The decisions an audit log covers, once its chain is verified (AuditError when it is broken)."""
    verdict = verify(path)
    if not verdict.valid:
        raise AuditError(f"the chain of audit log {path} is broken ({verdict.reason}): "
                         "run `exchange audit verify` first")
    return _audited_decisions(path)


def repair(store: Any, audit: AuditLog, peers: Sequence[str | Path] = ()) -> Report:
    """Append an ``audit.recovered`` entry for every stored decision no log (this hub's, ``peers``) covers;
    the report before repair."""
    report = reconcile(store, audit.path, peers)
    for decision, event in report.unaudited:
        audit.record(RECOVERED, getattr(event, "actor", "unknown"), **_describe(decision, event))
    if report.unaudited:
        log.warning("appended %d audit entries for decisions stored without one (the hub stopped between "
                    "storing and auditing them)", len(report.unaudited))
    for decision, seq in report.not_stored:
        log.error("audit entry %d names a decision the store does not hold: %s %s version %d",
                  seq, decision.log, decision.id, decision.version)
    return report


def render(report: Report, repaired: bool = False) -> str:
    """The report for people: one line per difference."""
    if report.agree:
        return f"store and audit log agree: {report.decisions} decisions, each audited"
    lines = []
    for decision, event in report.unaudited:
        lines.append(f"{'audited now' if repaired else 'not audited'}: {decision.log} {decision.id} version "
                     f"{decision.version} ({_kind(event)} by {getattr(event, 'actor', 'unknown')} at "
                     f"{event.timestamp.isoformat()})")
    for decision, seq in report.not_stored:
        lines.append(f"not in the store: audit entry {seq} names {decision.log} {decision.id} version "
                     f"{decision.version}")
    return "\n".join(lines)


def _kind(event: Any) -> str:
    return event.kind if isinstance(event, StoredRecord) else type(event).__name__


def _describe(decision: Decision, event: Any) -> dict[str, Any]:
    return {"log": decision.log, "id": decision.id, "version": decision.version,
            "decision": _kind(event), "at": event.timestamp.isoformat()}


def _stored_decisions(store: Any) -> Iterator[tuple[Decision, Any]]:
    mapper = make_mapper()
    for name, table in (("catalog", CATALOG_LOG), ("sharing", REQUESTS_LOG)):
        recorder = store.log(table)
        after = 0
        while notifications := recorder.read(after, READ_BATCH):
            for n in notifications:
                event = mapper.to_domain_event(n)
                if not isinstance(event, SourceSchemaSeen):  # what a node reported, not a decision
                    yield Decision(name, str(n.originator_id), n.originator_version), event
            after = notifications[-1].id
    for name, table, read in (("registry", REGISTRY_LOG, _registry_record), ("receipts", RECEIPTS_LOG, _receipt_record)):
        recorder = store.log(table)
        after = 0
        while notifications := recorder.read(after, READ_BATCH):
            for n in notifications:
                yield Decision(name, str(n.originator_id), n.originator_version), read(json.loads(n.state))
            after = notifications[-1].id


def _registry_record(state: dict[str, Any]) -> StoredRecord:
    return StoredRecord("AgencySaved", state["updated_by"], datetime.fromisoformat(state["updated_at"]))


def _receipt_record(state: dict[str, Any]) -> StoredRecord:
    consumer = json.loads(base64.b64decode(state["payload"]))["consumer"]
    return StoredRecord("ReceiptKept", consumer, datetime.fromisoformat(state["recorded_at"]))


def _audited_decisions(path: str | Path) -> dict[Decision, int]:
    """Each decision the log covers, with the sequence number of the entry that covers it."""
    covered: dict[Decision, int] = {}
    last_catalog_version: dict[str, int] = {}
    for entry in _entries(path):
        action, details, seq = entry["action"], entry["details"], entry["seq"]
        if action == RECOVERED:
            covered[Decision(details["log"], details["id"], details["version"])] = seq
        elif action.startswith("catalog.") and "code" in details and "version" in details:
            oid = str(entry_id(details["code"]))
            first = details.get("first", last_catalog_version.get(oid, 0) + 1)
            for version in range(first, details["version"] + 1):
                covered[Decision("catalog", oid, version)] = seq
            last_catalog_version[oid] = max(last_catalog_version.get(oid, 0), details["version"])
        elif action in ("registry.add", "registry.update") and "agency" in details and "version" in details:
            covered[Decision("registry", str(record_id(details["agency"])), details["version"])] = seq
        elif action == "share.receipt" and "receipt" in details:
            covered[Decision("receipts", str(UUID(details["receipt"])), 1)] = seq
        elif action.startswith("share.") and "originator_id" in details and "originator_version" in details:
            covered[Decision("sharing", str(UUID(details["originator_id"])), details["originator_version"])] = seq
    return covered


def _entries(path: str | Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:
        for raw in f:
            if raw.endswith(b"\n"):
                yield json.loads(raw)
