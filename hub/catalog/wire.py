"""Catalog entries, reports and content between Python dicts and ``exchange.v1`` catalog messages."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from exchange.contracts.events import canonical_json
from hub.catalog.entry import CatalogEntry, CatalogEvent
from hub.catalog.metadata import normalise
from hub.catalog.reports import update_due
from hub.workdays import WorkingCalendar
from protos.exchange.v1 import catalog_pb2 as pb

_LISTS = ("share_modes", "related")
_SCALARS = ("code", "name", "agency", "provider", "provider_uscc", "resource", "summary", "format", "share_type",
            "share_condition", "not_shared_basis", "open_to_public", "open_condition", "update_cycle")


def content_to_pb(content: dict[str, Any]) -> pb.EntryContent:
    c = normalise(content)
    return pb.EntryContent(**{k: c[k] for k in _SCALARS + _LISTS},
                           items=[pb.DataItem(name=i["name"], type=i["type"], length=i["length"],
                                              element=i.get("element", ""), authoritative=i.get("authoritative", False))
                                  for i in c["items"]])


def content_from_pb(message: pb.EntryContent) -> dict[str, Any]:
    content: dict[str, Any] = {k: getattr(message, k) for k in _SCALARS}
    content.update({k: list(getattr(message, k)) for k in _LISTS})
    content["items"] = [_item_from_pb(i) for i in message.items]
    return content


def _item_from_pb(item: pb.DataItem) -> dict[str, Any]:
    """An item as a dict; element and authoritative only when set, so entries without them stay as they were."""
    found: dict[str, Any] = {"name": item.name, "type": item.type, "length": item.length}
    if item.element:
        found["element"] = item.element
    if item.authoritative:
        found["authoritative"] = True
    return found


def entry_to_pb(entry: CatalogEntry, calendar: WorkingCalendar) -> pb.Entry:
    message = pb.Entry(
        code=entry.code, version=entry.version, status=entry.status, content=content_to_pb(entry.content),
        publish_date=entry.publish_date.isoformat() if entry.publish_date else "",
        submitted_at=_iso(entry.submitted_at), updated_at=_iso(entry.updated_at),
        decisions=[pb.ItemDecision(item=name, accepted=not reason, reason=reason)
                   for name, reason in entry.decisions.items()],
        return_reasons=entry.return_reasons, full_review_at=_iso(entry.full_review_at),
    )
    if entry.published is not None:
        message.published.CopyFrom(content_to_pb(entry.published))
        message.has_published = True
    if entry.secrecy is not None:
        s = entry.secrecy
        message.secrecy_review.CopyFrom(pb.SecrecyReview(cleared=s.cleared, sensitivity=s.sensitivity, note=s.note,
                                                         reviewer=s.actor))
        message.has_secrecy_review = True
    if entry.flag is not None:
        f = entry.flag
        try:
            due = _iso(update_due(entry, calendar))
        except ValueError:  # a year the calendar does not know yet: the reports say so
            due = ""
        message.schema_flag.CopyFrom(pb.SchemaFlag(changed_at=_iso(f.changed_at), due=due,
                                                   schema_version=f.schema_version, columns=f.columns))
        message.has_schema_flag = True
    return message


def event_to_pb(event: CatalogEvent) -> pb.EntryEvent:
    details = {k: v for k, v in asdict(event).items()
               if k not in ("originator_id", "originator_version", "timestamp", "actor")}
    return pb.EntryEvent(version=event.originator_version, kind=type(event).__name__, actor=event.actor,
                         time=_iso(event.timestamp), details_json=canonical_json(details))


def report_to_pb(at: str, overdue: list[dict], shared: list[dict], evaluation: list[dict]) -> pb.Report:
    return pb.Report(
        at=at,
        overdue=[pb.OverdueEntry(**o) for o in overdue],
        shared_items=[pb.SharedItem(item=s["item"], providers=[pb.ItemProvider(**p) for p in s["providers"]],
                                    datum=s["datum"], conflict=s["conflict"], suggested_source=s["suggested_source"],
                                    reason=s["reason"]) for s in shared],
        evaluation=[_evaluation_to_pb(row) for row in evaluation],
    )


def report_from_pb(message: pb.Report) -> dict[str, Any]:
    """The JSON form of a report (the same shape as hub.catalog.reports produces)."""
    return {
        "at": message.at,
        "overdue": [{"code": o.code, "agency": o.agency, "name": o.name, "kind": o.kind, "since": o.since,
                     "due": o.due} for o in message.overdue],
        "one_datum_one_source": [{
            "item": s.item, "datum": s.datum, "conflict": s.conflict, "suggested_source": s.suggested_source,
            "reason": s.reason, "providers": [{"agency": p.agency, "codes": list(p.codes), "items": list(p.items),
                                               "authoritative": p.authoritative} for p in s.providers]}
            for s in message.shared_items],
        "evaluation": [{
            "agency": e.agency, "entries": e.entries, "published": e.published,
            "resources_captured": e.resources_captured, "resources_published": e.resources_published,
            "uncatalogued_resources": list(e.uncatalogued_resources),
            "completeness": e.completeness if e.has_completeness else None,
            "overdue_entries": e.overdue_entries,
            "late_answers": e.late_answers if e.has_late_answers else None,
            "sync_lag_seconds": e.sync_lag_seconds if e.has_sync_lag else None,
        } for e in message.evaluation],
    }


def entry_from_pb(message: pb.Entry) -> dict[str, Any]:
    """The JSON form of an entry message, for the command line."""
    return {
        "code": message.code, "version": message.version, "status": message.status,
        "content": normalise(content_from_pb(message.content)),
        "published": normalise(content_from_pb(message.published)) if message.has_published else None,
        "publish_date": message.publish_date or None, "submitted_at": message.submitted_at or None,
        "updated_at": message.updated_at or None, "full_review_at": message.full_review_at or None,
        "secrecy_review": {"cleared": message.secrecy_review.cleared,
                           "sensitivity": list(message.secrecy_review.sensitivity),
                           "note": message.secrecy_review.note, "reviewer": message.secrecy_review.reviewer}
        if message.has_secrecy_review else None,
        "decisions": {d.item: ("" if d.accepted else d.reason) for d in message.decisions},
        "return_reasons": list(message.return_reasons),
        "schema_flag": {"changed_at": message.schema_flag.changed_at, "due": message.schema_flag.due,
                        "schema_version": message.schema_flag.schema_version,
                        "columns": list(message.schema_flag.columns)} if message.has_schema_flag else None,
    }


def history_from_pb(message: pb.History) -> list[dict[str, Any]]:
    return [{"version": e.version, "kind": e.kind, "actor": e.actor, "time": e.time,
             **json.loads(e.details_json)} for e in message.events]


def _evaluation_to_pb(row: dict[str, Any]) -> pb.AgencyEvaluation:
    message = pb.AgencyEvaluation(
        agency=row["agency"], entries=row["entries"], published=row["published"],
        resources_captured=row["resources_captured"], resources_published=row["resources_published"],
        uncatalogued_resources=row["uncatalogued_resources"], overdue_entries=row["overdue_entries"])
    for field, flag, key in (("completeness", "has_completeness", "completeness"),
                             ("late_answers", "has_late_answers", "late_answers"),
                             ("sync_lag_seconds", "has_sync_lag", "sync_lag_seconds")):
        if row[key] is not None:
            setattr(message, field, row[key])
            setattr(message, flag, True)
    return message


def _iso(moment) -> str:
    return moment.isoformat() if moment else ""
