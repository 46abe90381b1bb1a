"""Row scope in the projection (Art. 15): a consumer receives only the rows its approved filter matches.

An updated event carries only the changed columns, so judging it needs the
record's whole row just before it: ``RecordHistory`` gives it from a bounded
cache of what this reader folded, else from the current-state table when
that stands exactly there, else by folding the record's own earlier events
(one indexed read).  Then, per event, with ``was`` / ``is`` = the row before
/ after matches the filter:

    created   is → created;                      otherwise dropped
    updated   was and is → updated;  is only → created (the whole row);
              was only → deleted;    neither → dropped
    deleted   was → deleted;                     otherwise dropped

so a replica fed from the start always equals the filtered source.  Schema
events pass unchanged; the item cut (projection.py) comes after this step.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any, Sequence

from eventsourcing.persistence import Notification

from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged
from hub.sharing.current import CurrentState, fold, key_text, record_state
from hub.sharing.projection import state_of
from hub.sharing.scope import Filter

CACHE_RECORDS = 100_000


class RecordHistory:
    """The row of a record just before one of its events (see the module docstring)."""

    def __init__(self, ingest: Any, agency: str, current: CurrentState | None = None, size: int = CACHE_RECORDS):
        self.ingest, self.agency, self.current, self.size = ingest, agency, current, size
        self._rows: OrderedDict[Any, tuple[int, dict[str, Any] | None]] = OrderedDict()

    def before(self, n: Notification, state: dict[str, Any]) -> dict[str, Any] | None:
        version = n.originator_version - 1
        if version < 1:
            return None
        cached = self._rows.get(n.originator_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        if self.current is not None:
            held = self.current.get(self.agency, state["resource"], key_text(state["key"]))
            if held is not None and held[0] == version:
                return held[2]
        row: dict[str, Any] | None = None
        recorder = self.ingest.recorder(self.agency, create=False)
        for stored in recorder.select_events(n.originator_id, lte=version):
            earlier = record_state(stored)
            if earlier is not None:
                row = fold(row, stored.topic, earlier)
        return row

    def remember(self, n: Notification, row: dict[str, Any] | None) -> None:
        self._rows[n.originator_id] = (n.originator_version, row)
        self._rows.move_to_end(n.originator_id)
        if len(self._rows) > self.size:
            self._rows.popitem(last=False)


def within(notifications: Sequence[Notification], resource: str, rows: Filter,
           history: RecordHistory) -> list[Notification]:
    """The events of ``resource`` among ``notifications`` as a replica of the rows ``rows`` matches sees them."""
    out = []
    for n in notifications:
        state = state_of(n)
        if state is None or state.get("resource") != resource:
            continue
        if n.topic == SchemaChanged.TOPIC:
            out.append(n)
            continue
        state = record_state(n)
        if state is None:
            continue  # an event this hub does not know how to judge: never pass it on
        before = history.before(n, state)
        after = fold(before, n.topic, state)
        history.remember(n, after)
        was, now = rows.matches(before), rows.matches(after)
        if n.topic == RecordUpdated.TOPIC and now and not was:
            out.append(_as(n, RecordCreated.TOPIC, {**_common(state), "row": after}))
        elif n.topic == RecordUpdated.TOPIC and was and not now:
            out.append(_as(n, RecordDeleted.TOPIC, _common(state)))
        elif (now if n.topic == RecordCreated.TOPIC else was if n.topic == RecordDeleted.TOPIC else was and now):
            out.append(n)
    return out


def _common(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in state.items() if k != "changed"}


def _as(n: Notification, topic: str, state: dict[str, Any]) -> Notification:
    return Notification(id=n.id, originator_id=n.originator_id, originator_version=n.originator_version, topic=topic,
                        state=json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode())
