"""Projection: what of a provider's events a consumer may see (Art. 15: only the approved data items).

Works on the stored JSON state, so events pass through without being
decoded into domain objects: a created event keeps the entitled columns of
its row image, an updated event the entitled changed columns (and is
dropped when none is left), a deleted event and a truncated-table event
pass unchanged, and a schema event keeps the entitled columns (and the
renames of those entitled under both names).  The record key always goes with the
items: a replica cannot apply an update or a delete without it.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Sequence

from eventsourcing.persistence import Notification

from exchange.contracts.envelope import header
from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged, TableTruncated


def project(notifications: Sequence[Notification], resource: str, items: Iterable[str]) -> list[Notification]:
    """The events of ``resource`` among ``notifications``, each cut down to ``items`` (plus the record key)."""
    allowed = frozenset(items)
    projected = []
    for n in notifications:
        if header(n.state).resource != resource:
            continue  # other resources' events are passed over without decoding their row images
        state = state_of(n)
        if state is None or state.get("resource") != resource:
            continue  # a state that is not a JSON object names no resource: it is nobody's to receive
        cut = _cut(n.topic, state, allowed)
        if cut is not None:
            projected.append(Notification(id=n.id, originator_id=n.originator_id,
                                          originator_version=n.originator_version, topic=n.topic,
                                          state=json.dumps(cut, separators=(",", ":"), ensure_ascii=False).encode()))
    return projected


def state_of(notification: Notification | Any) -> dict[str, Any] | None:
    """An event's stored state as a JSON object; None when it is not one."""
    try:
        state = json.loads(notification.state)
    except (ValueError, RecursionError):  # ValueError includes bytes that are not UTF-8
        return None
    return state if isinstance(state, dict) else None


def _cut(topic: str, state: dict[str, Any], allowed: frozenset[str]) -> dict[str, Any] | None:
    if topic == RecordCreated.TOPIC:
        keep = allowed | set(state["key"])
        return {**state, "row": {k: v for k, v in state["row"].items() if k in keep}}
    if topic == RecordUpdated.TOPIC:
        keep = allowed | set(state["key"])
        changed = {k: v for k, v in state["changed"].items() if k in keep}
        return {**state, "changed": changed} if changed else None
    if topic in (RecordDeleted.TOPIC, TableTruncated.TOPIC):
        return state
    if topic == SchemaChanged.TOPIC:
        table = state["table"]
        keep = allowed | set(table["primary_key"])
        cut = {**state, "table": {**table, "columns": [c for c in table["columns"] if c["name"] in keep]}}
        if state.get("renames"):
            cut["renames"] = {old: new for old, new in state["renames"].items() if old in keep and new in keep}
        return cut
    return None  # an event kind this hub does not know how to cut: never pass it on uncut
