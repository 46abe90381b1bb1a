"""Catalog reports: overdue entries (Art. 10), one datum one source (Art. 12), evaluation (Art. 22).

Every report is a JSON-ready structure computed from the catalog's current
state at a given moment, so the CLI, the gRPC API, the status page and the
metrics all say the same thing.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta, timezone
from typing import Any, Callable

from hub.catalog.catalog import Catalog
from hub.catalog.entry import CatalogEntry
from hub.workdays import SHANGHAI, WorkingCalendar

UPDATE_WORKING_DAYS = 2  # Art. 10: update the catalog within 2 working days of a change
UPDATE, YEARLY_REVIEW = "update", "yearly_review"


def update_due(entry: CatalogEntry, calendar: WorkingCalendar) -> datetime | None:
    """When the flagged entry must be updated by: the end of the 2nd working day after the change."""
    return calendar.deadline(entry.flag.changed_at, UPDATE_WORKING_DAYS) if entry.flag else None


def review_due(entry: CatalogEntry) -> datetime | None:
    """When the published entry's next yearly full review is due: one year after its last one."""
    if entry.full_review_at is None:
        return None
    last = entry.full_review_at.astimezone(SHANGHAI).date()
    try:
        anniversary = last.replace(year=last.year + 1)
    except ValueError:  # 29 February
        anniversary = date(last.year + 1, 3, 1)
    return datetime.combine(anniversary + timedelta(days=1), datetime.min.time(), SHANGHAI)


def overdue(catalog: Catalog, at: datetime | None = None) -> list[dict[str, Any]]:
    """Entries past their update deadline after a schema change, or past their yearly review."""
    at = at or datetime.now(timezone.utc)
    found = []
    for entry in catalog.entries():
        for kind, since, due in ((UPDATE, entry.flag.changed_at if entry.flag else None,
                                  update_due(entry, catalog.calendar)),
                                 (YEARLY_REVIEW, entry.full_review_at, review_due(entry))):
            if due is not None and at >= due:
                found.append({"code": entry.code, "agency": entry.agency, "name": entry.content["name"],
                              "kind": kind, "since": since.isoformat(), "due": due.isoformat()})
    return found


def overdue_by_agency(catalog: Catalog, at: datetime | None = None) -> dict[str, int]:
    """How many entries of each agency (with any entry) are overdue."""
    counts = {entry.agency: 0 for entry in catalog.entries()}
    for code in {(o["agency"], o["code"]) for o in overdue(catalog, at)}:
        counts[code[0]] += 1
    return counts


def datum_key(item: dict[str, Any]) -> str:
    """What a published item holds: its declared data element, else its normalised name and type (Art. 12)."""
    if item.get("element"):
        return "element:" + item["element"].casefold()
    return "name:" + "".join(item["name"].split()).casefold() + "/" + item["type"]


NO_AUTHORITY, CONTESTED, REDUNDANT = "no_authority", "contested_authority", "redundant_copies"


def one_datum_one_source(catalog: Catalog) -> list[dict[str, Any]]:
    """Data that more than one agency publishes (Art. 12), who publishes them, and where they should come from.

    Items are the same datum when they declare the same data element, or,
    without one, when their names (ignoring case and spaces) and types are
    equal.  Each conflict says whether no agency, several agencies or one
    agency declares itself the authoritative source; with exactly one, it is
    the suggested source and the others' copies are redundant."""
    providers: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    labels: dict[str, str] = {}
    for entry in catalog.published():
        agency = entry.published["agency"]
        for item in entry.published["items"]:
            key = datum_key(item)
            labels.setdefault(key, item.get("element") or item["name"])
            row = providers[key].setdefault(agency, {"agency": agency, "codes": set(), "items": set(),
                                                     "authoritative": False})
            row["codes"].add(entry.code)
            row["items"].add(item["name"])
            row["authoritative"] |= bool(item.get("authoritative"))
    found = []
    for key, by in sorted(providers.items()):
        if len(by) < 2:
            continue
        authorities = sorted(a for a, row in by.items() if row["authoritative"])
        if len(authorities) == 1:
            conflict, source = REDUNDANT, authorities[0]
            reason = f"{source} declares itself the authoritative source: the others should obtain it from {source}"
        elif authorities:
            conflict, source = CONTESTED, ""
            reason = f"{', '.join(authorities)} each declare themselves the authoritative source: one must withdraw"
        else:
            conflict, source = NO_AUTHORITY, ""
            reason = "no agency declares itself the authoritative source: the publishers agree which one is"
        found.append({"item": labels[key], "datum": key, "conflict": conflict, "suggested_source": source,
                      "reason": reason,
                      "providers": [{"agency": a, "codes": sorted(row["codes"]), "items": sorted(row["items"]),
                                     "authoritative": row["authoritative"]} for a, row in sorted(by.items())]})
    return found


def evaluation(catalog: Catalog, at: datetime | None = None, sync: Callable[[str], float | None] | None = None,
               late_answers: Callable[[str], int] | None = None) -> list[dict[str, Any]]:
    """Per agency (Art. 22): catalog completeness, overdue entries, late answers to share requests, sync freshness.

    Completeness is the share of the agency's captured tables (as its node
    reported them) that have a published entry.  ``sync`` gives the source
    commit time (Unix) of the agency's newest event at the hub;
    ``late_answers`` the share requests it answered late or not in time."""
    at = at or datetime.now(timezone.utc)
    entries: dict[str, list[CatalogEntry]] = defaultdict(list)
    for entry in catalog.entries():
        entries[entry.agency].append(entry)
    captured: dict[str, set[str]] = defaultdict(set)
    for agency, resource in catalog.sources():
        captured[agency].add(resource)
    late = overdue_by_agency(catalog, at)
    rows = []
    for agency in sorted(set(entries) | set(captured)):
        own = entries[agency]
        published = {e.published["resource"] for e in own if e.published is not None and e.published["resource"]}
        covered = captured[agency] & published
        newest = sync(agency) if sync else None
        rows.append({
            "agency": agency,
            "entries": len(own),
            "published": sum(1 for e in own if e.published is not None),
            "resources_captured": len(captured[agency]),
            "resources_published": len(covered),
            "uncatalogued_resources": sorted(captured[agency] - published),
            "completeness": round(len(covered) / len(captured[agency]), 4) if captured[agency] else None,
            "overdue_entries": late.get(agency, 0),
            "late_answers": late_answers(agency) if late_answers else None,
            "sync_lag_seconds": round(at.timestamp() - newest, 3) if newest is not None else None,
        })
    return rows
