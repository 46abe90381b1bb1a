"""The current state of every record at the hub: what lookups answer from and row scope is judged by.

A tracked follower (``Follower``) reads each agency's log in hub order and
folds created, updated and deleted events into one table of the hub's store,
``hub_current_rows`` (agency, resource, record key → version, row), and
writes how far it read into ``hub_current_tracking`` in the same
transaction, so each event is folded exactly once whatever stops the hub.
Nothing here is authoritative: ``rebuild`` forgets it all and the follower
folds the logs again.  Rows are sealed with the store's cipher when the
store is encrypted at rest.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Iterable, Sequence

from eventsourcing.persistence import Notification

from exchange.contracts import fastjson
from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated
from exchange.store import AgencyLogs, chunks
from exchange.store.postgres import advisory_lock
from hub.metrics import METRICS, HubMetrics
from hub.sharing.scope import plain_value

log = logging.getLogger(__name__)

ROWS = "hub_current_rows"
TRACKING = "hub_current_tracking"
RECORD_TOPICS = (RecordCreated.TOPIC, RecordUpdated.TOPIC, RecordDeleted.TOPIC)


def key_text(key: dict[str, Any]) -> str:
    """A record key as the lookup index holds it: JSON of each key column's value as text, sorted by column."""
    return json.dumps({k: _text(v) for k, v in key.items()}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False)


def _text(value: Any) -> str:
    value = plain_value(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def fold(row: dict[str, Any] | None, topic: str, state: dict[str, Any]) -> dict[str, Any] | None:
    """A record's row after one of its events (``row`` before it; None: no row)."""
    if topic == RecordCreated.TOPIC:
        return dict(state["row"])
    if topic == RecordUpdated.TOPIC:
        return {**(row or {}), **state["changed"]}
    return None


class CurrentState:
    """The current-state table over the hub's store (SQLite or PostgreSQL)."""

    def __init__(self, store: AgencyLogs):
        self.store = store
        self._postgres = not store.url.startswith("sqlite")
        blob = "bytea" if self._postgres else "BLOB"
        ordered = 'COLLATE "C"' if self._postgres else ""  # page tokens follow byte order on both backends
        with self._transaction() as c:
            if self._postgres:  # hubs starting together: CREATE TABLE IF NOT EXISTS alone may collide
                advisory_lock(c, "exchange.current:tables")
            c.execute(f"CREATE TABLE IF NOT EXISTS {ROWS} (agency TEXT NOT NULL, resource TEXT NOT NULL, "
                      f"record_key TEXT {ordered} NOT NULL, version BIGINT NOT NULL, state {blob} NOT NULL, "
                      "PRIMARY KEY (agency, resource, record_key))")
            c.execute(f"CREATE TABLE IF NOT EXISTS {TRACKING} (agency TEXT PRIMARY KEY, position BIGINT NOT NULL)")

    def position(self, agency: str) -> int:
        """The hub notification id of the agency's log folded in so far."""
        with self.store.datastore.transaction(commit=False) as c:
            return self._position(c, agency)

    def advance(self, agency: str, notifications: Sequence[Notification]) -> int:
        """Fold ``notifications`` (the log's next ones, in order) and the position they reach in one
        transaction; those at or below the recorded position are skipped.  Returns the position."""
        with self._transaction() as c:
            if self._postgres:  # hubs sharing the store fold an agency in turn, each after the other's position
                advisory_lock(c, "exchange.current:" + agency)
            position = self._position(c, agency)
            fresh = [n for n in notifications if n.id > position]
            if not fresh:
                return position
            changes: dict[tuple[str, str], tuple[int, dict[str, Any]] | None] = {}
            wanted = [(state["resource"], key_text(state["key"]), n, state) for n, state in _record_events(fresh)]
            held = self._held(c, agency, {(resource, key) for resource, key, _, _ in wanted})
            for resource, key, n, state in wanted:
                before = changes[(resource, key)] if (resource, key) in changes else held.get((resource, key))
                if before is not None and before[0] >= n.originator_version:
                    continue  # already folded (a log never repeats a version; be safe all the same)
                row = fold(before[1]["row"] if before else None, n.topic, state)
                changes[(resource, key)] = None if row is None else (n.originator_version,
                                                                     {"key": state["key"], "row": row})
            self._write(c, agency, changes, fresh[-1].id)
            return fresh[-1].id

    def get(self, agency: str, resource: str, key: str) -> tuple[int, dict[str, Any], dict[str, Any]] | None:
        """(version, key, row) of the record whose ``key_text`` is ``key``; None when there is none."""
        with self.store.datastore.transaction(commit=False) as c:
            c.execute(self._sql(f"SELECT version, state FROM {ROWS} WHERE agency = ? AND resource = ? "
                                "AND record_key = ?"), (agency, resource, key))
            found = c.fetchone()
        if found is None:
            return None
        version, sealed = _values(found)
        state = self._open(sealed)
        return version, state["key"], state["row"]

    def scan(self, agency: str, resource: str, after: str,
             limit: int) -> list[tuple[str, int, dict[str, Any], dict[str, Any]]]:
        """Up to ``limit`` (record key text, version, key, row) of the resource in key order, after key ``after``."""
        with self.store.datastore.transaction(commit=False) as c:
            c.execute(self._sql(f"SELECT record_key, version, state FROM {ROWS} WHERE agency = ? AND resource = ? "
                                "AND record_key > ? ORDER BY record_key LIMIT ?"), (agency, resource, after, limit))
            found = [_values(r) for r in c.fetchall()]
        states = [(key, version, self._open(sealed)) for key, version, sealed in found]
        return [(key, version, state["key"], state["row"]) for key, version, state in states]

    def rebuild(self, agency: str | None = None) -> None:
        """Forget the folded state (of one agency or all): the follower folds the logs again from the start."""
        with self._transaction() as c:
            for table in (ROWS, TRACKING):
                if agency is None:
                    c.execute(f"DELETE FROM {table}")
                else:
                    c.execute(self._sql(f"DELETE FROM {table} WHERE agency = ?"), (agency,))

    # Internals.

    def _transaction(self) -> Any:
        return self.store.datastore.transaction(commit=True)

    def _sql(self, text: str) -> str:
        return text.replace("?", "%s") if self._postgres else text

    def _position(self, c: Any, agency: str) -> int:
        c.execute(self._sql(f"SELECT position FROM {TRACKING} WHERE agency = ?"), (agency,))
        found = c.fetchone()
        return int(_values(found)[0]) if found else 0

    def _held(self, c: Any, agency: str, keys: set[tuple[str, str]]) -> dict[tuple[str, str], Any]:
        held: dict[tuple[str, str], Any] = {}
        by_resource: dict[str, list[str]] = {}
        for resource, key in keys:
            by_resource.setdefault(resource, []).append(key)
        for resource, names in by_resource.items():
            for chunk in chunks(sorted(names)):
                marks = ",".join("?" * len(chunk))
                c.execute(self._sql(f"SELECT record_key, version, state FROM {ROWS} WHERE agency = ? AND "
                                    f"resource = ? AND record_key IN ({marks})"), (agency, resource, *chunk))
                for key, version, sealed in (_values(r) for r in c.fetchall()):
                    held[(resource, key)] = (version, self._open(sealed))
        return held

    def _write(self, c: Any, agency: str, changes: dict[tuple[str, str], Any], position: int) -> None:
        gone = [(agency, resource, key) for (resource, key), value in changes.items() if value is None]
        kept = [(agency, resource, key, value[0], self._seal(value[1]))
                for (resource, key), value in changes.items() if value is not None]
        if gone:
            c.executemany(self._sql(f"DELETE FROM {ROWS} WHERE agency = ? AND resource = ? AND record_key = ?"), gone)
        if kept:
            c.executemany(self._sql(
                f"INSERT INTO {ROWS} (agency, resource, record_key, version, state) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (agency, resource, record_key) DO UPDATE SET version = excluded.version, "
                "state = excluded.state"), kept)
        c.execute(self._sql(f"INSERT INTO {TRACKING} (agency, position) VALUES (?, ?) ON CONFLICT (agency) "
                            "DO UPDATE SET position = excluded.position"), (agency, position))

    def _seal(self, state: dict[str, Any]) -> bytes:
        data = json.dumps(state, separators=(",", ":"), ensure_ascii=False).encode()
        return self.store.cipher.seal(data) if self.store.cipher is not None else data

    def _open(self, sealed: Any) -> dict[str, Any]:
        data = bytes(sealed)
        if self.store.cipher is not None:
            data = self.store.cipher.open(data, ROWS)
        return fastjson.loads(data)


def _values(row: Any) -> tuple:
    return tuple(row.values()) if isinstance(row, dict) else tuple(row)


def record_state(n: Notification | Any) -> dict[str, Any] | None:
    """The state of a created, updated or deleted event that has what folding needs; None for any other."""
    if n.topic not in RECORD_TOPICS:
        return None
    try:
        state = fastjson.loads(n.state)
    except (ValueError, RecursionError):
        return None
    if not (isinstance(state, dict) and isinstance(state.get("resource"), str) and isinstance(state.get("key"), dict)):
        return None
    needs = {RecordCreated.TOPIC: "row", RecordUpdated.TOPIC: "changed"}.get(n.topic)
    return state if needs is None or isinstance(state.get(needs), dict) else None


def _record_events(notifications: Iterable[Notification]) -> Iterable[tuple[Notification, dict[str, Any]]]:
    for n in notifications:
        state = record_state(n)
        if state is not None:
            yield n, state


class Follower:
    """Keeps a CurrentState folded up to every agency's log: woken by each stored batch, or every ``poll`` s."""

    def __init__(self, current: CurrentState, ingest: Any, *, batch: int = 1000, poll: float = 1.0,
                 metrics: HubMetrics = METRICS):
        self.current, self.ingest, self.batch, self.poll, self.metrics = current, ingest, batch, poll, metrics
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hub-current-state", daemon=True)

    def start(self) -> "Follower":
        self.ingest.listeners.append(self.notify)
        self._thread.start()
        return self

    def notify(self, agency: str, events: Any) -> None:
        """Ingest listener: a batch was stored."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self.notify in self.ingest.listeners:
            self.ingest.listeners.remove(self.notify)
        if self._thread.is_alive():
            self._thread.join(30)

    def catch_up(self) -> int:
        """Fold every agency's log up to its current end; the number of events read."""
        read = 0
        for agency in self.current.store.agencies():
            while not self._stopping.is_set():
                notifications = self.ingest.read(agency, self.current.position(agency), self.batch)
                if not notifications:
                    break
                self.current.advance(agency, notifications)
                read += len(notifications)
            behind = self.ingest.hub_position(agency) - self.current.position(agency)
            self.metrics.current_state_behind.labels(agency).set(max(0, behind))
        return read

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                self.catch_up()
            except Exception:  # a store hiccup: the next round starts from the recorded positions
                log.exception("folding the current state failed; retrying")
            self._wake.wait(self.poll)
