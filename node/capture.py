"""Capture loop: source changes -> versioned record events in the node store.

One call of ``Capture.step`` reads a batch of committed source changes,
numbers each affected record's next version, and writes all events, the
records' new states and the advanced source position in ONE event-store
transaction, so a crash between any two steps loses nothing and stores
nothing twice.

A truncate (``TRUNCATE``) and the end of a snapshot pass (``SNAPSHOT_END``)
delete live records the node holds (node/sweep.py): those are written in
more than one transaction, the first at the change before, each later one
with no position, so a crash in between starts the same sweep again and
it deletes only what is still live.

``Capture.prune`` lets the source forget changes (change-log pruning, slot
feedback) only up to what the HUB has acknowledged, not merely what the node
stored: a node that loses its disk is rebuilt from the hub's copy and
resumes capture from the last source position in that copy, which the
source must still hold.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from uuid import UUID

from eventsourcing.persistence import StoredEvent, Tracking

from exchange.common.stall import Watchdog
from exchange.contracts import changes as ch
from exchange.contracts.events import (
    EVENT_SCHEMA_VERSION,
    RecordCreated,
    RecordDeleted,
    RecordEvent,
    RecordMapper,
    RecordUpdated,
    SchemaChanged,
    TableTruncated,
    image_hash,
    make_mapper,
    record_id,
    schema_id,
)
from exchange.store import NodeRecorder, RecordState
from node.field_policy import FieldPolicy
from node.metrics import METRICS, NodeMetrics
from node.positions import HUB_TRACKING, SOURCE_TRACKING
from node.sweep import file_records, sweep

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    """Events of one step and the records' states after them.

    ``table_ids`` (table -> id of its schema aggregate) and ``passes``
    (table -> its current snapshot pass) are the capture's; each state
    written names its table, its key (as ``mapper`` encodes it) and the pass."""

    agency: str
    known: dict[str, RecordState]
    table_ids: dict[str, str]
    passes: dict[str, int]
    mapper: RecordMapper
    now: datetime = field(default_factory=lambda: datetime.now(timezone.utc))  # the events' timestamp
    events: list[RecordEvent] = field(default_factory=list)
    stored: list[StoredEvent] = field(default_factory=list)  # the events as stored, in the same order
    states: dict[str, RecordState] = field(default_factory=dict)

    def state(self, oid: str) -> RecordState | None:
        return self.states.get(oid) or self.known.get(oid)

    def table_id(self, table: str) -> str:
        if table not in self.table_ids:
            self.table_ids[table] = schema_id(self.agency, table).hex
        return self.table_ids[table]

    def add(self, cls: type[RecordEvent], change: ch.Change, oid: UUID, key: dict[str, Any] | None,
            image_digest: str | None, live: bool, schema_version: int, hex_id: str | None = None,
            key_json: bytes | None = None, **fields: Any) -> None:
        """Append the record's next event; ``key`` None for the table's schema aggregate; ``hex_id``
        the id's hex and ``key_json`` the key as the mapper encodes it, when known."""
        resource = change.table
        hex_id = hex_id or oid.hex
        previous = self.state(hex_id)
        version = previous.version + 1 if previous else 1
        if key is not None and key_json is None:
            key_json = self.mapper.transcoder.encode(key)
        event = cls(
            originator_id=oid,
            originator_version=version,
            timestamp=self.now,
            agency=self.agency,
            resource=resource,
            key=key if key is not None else {},
            position=change.position,
            commit_time=change.commit_time,
            txid=change.txid,
            schema_version=schema_version,
            event_schema_version=EVENT_SCHEMA_VERSION,
            **fields,
        )
        self.events.append(event)
        self.stored.append(self.mapper.to_stored_record_event(event, key_json))
        self._put(hex_id, resource, key_json, version, image_digest or "", live)

    def touch(self, oid: str, table: str, key_json: bytes) -> None:
        """Mark a live record the change left as it was with its table's current pass."""
        state = self.state(oid)
        mark = self.passes.get(table)
        if state is not None and state.live and mark is not None and state.mark != mark:
            self.set_state(oid, table, key_json, state)

    def set_state(self, oid: str, table: str, key_json: bytes | None, state: RecordState) -> None:
        self._put(oid, table, key_json, state.version, state.image_hash, state.live)

    def _put(self, oid: str, table: str, key_json: bytes | None, version: int, image_digest: str,
             live: bool) -> None:
        self.states[oid] = RecordState(version, image_digest, live, self.table_id(table), key_json,
                                       self.passes.get(table))

    def written(self) -> None:
        """The events and states so far are stored: go on from them."""
        self.known.update(self.states)
        self.states = {}
        self.events = []
        self.stored = []


_SIZED = (str, bytes)


def change_bytes(change: ch.Change) -> int:
    """About the bytes of a change's row images (what its events will hold)."""
    size = 64
    for image in (change.before, change.after):
        if image:
            size += sum(map(len, image)) + sum([len(v) if isinstance(v, _SIZED) else len(str(v))
                                                for v in image.values()])
    return size


def byte_parts(changes: list[ch.Change], limit: int, sizes: list[int] | None = None) -> list[list[ch.Change]]:
    """``changes`` cut into runs whose row images hold about ``limit`` bytes at most (a larger change alone);
    ``sizes``: each change's ``change_bytes``, when known."""
    if sizes is None:
        sizes = list(map(change_bytes, changes))
    if changes and sum(sizes) <= limit:
        return [changes]
    parts: list[list[ch.Change]] = []
    size = 0
    for change, grown in zip(changes, sizes):
        if not parts or size + grown > limit:
            parts.append([])
            size = 0
        parts[-1].append(change)
        size += grown
    return parts


class Capture:
    """Moves committed changes from a capture source into the node store."""

    def __init__(self, agency: str, source: ch.CaptureSource, recorder: NodeRecorder, batch_size: int = 2000,
                 policy: FieldPolicy | None = None,
                 on_stored: Callable[[list[RecordEvent]], None] | None = None, metrics: NodeMetrics = METRICS,
                 batch_bytes: int = 8 * 1024 * 1024, watchdog: Watchdog | None = None,
                 snapshot_batch_size: int = 10000):
        self.agency = agency
        self.snapshot_batch_size = snapshot_batch_size
        self.batch_bytes = batch_bytes
        self.watchdog = watchdog or Watchdog(float("inf"), metrics.stalls)
        self.metrics = metrics
        self.policy = policy or FieldPolicy()
        self.on_stored = on_stored  # told of each batch's events once they are stored
        self.source = source
        self.recorder = recorder
        self.batch_size = batch_size
        self.mapper = make_mapper()
        self.position = ch.Position(recorder.position(SOURCE_TRACKING))
        self.pruned = ch.Position(0)
        self.keys: dict[str, tuple[str, ...]] = {}
        self.schema_versions: dict[str, int] = {}
        self.table_ids: dict[str, str] = {}
        self.passes: dict[str, int] = {}  # table -> its current snapshot pass (the position that began it)
        file_records(agency, recorder, self.mapper)
        for name, schema in source.schemas().items():
            self.keys[name] = schema.primary_key
            self._load_table(name)

    def step(self) -> int:
        """Capture one batch; returns the number of source changes consumed.

        The batch is stored in one event-store transaction, or in several when
        its row images exceed ``batch_bytes``: each holds whole changes and the
        position of its last one, which every source resumes after (a position
        inside a source transaction included: what is stored is skipped)."""
        with self.watchdog.step("capture", f"the source to return changes after position {self.position}"):
            changes = self.source.read(self.position, self.batch_size)
            more, sizes = self._more_snapshot_rows(changes)
            changes += more
        if not changes:
            return 0
        if self.policy:  # field policy: excluded and unmasked values never become events
            changes = [self.policy.apply(c) for c in changes]
            sizes = None
        started = time.perf_counter()
        try:
            for part in byte_parts(changes, self.batch_bytes, sizes):
                self._store(part)
        except BaseException:
            for table in {c.table for c in changes}:  # what this process thinks may not have been stored
                self._load_table(table)
            raise
        self.metrics.store_batch_seconds.observe(time.perf_counter() - started)
        for op, count in Counter(c.op for c in changes).items():
            self.metrics.changes_captured.labels(op).inc(count)
        return len(changes)

    def _more_snapshot_rows(self, changes: list[ch.Change]) -> tuple[list[ch.Change], list[int] | None]:
        """While a snapshot is read (a full read ending with a snapshot row), further reads, up to
        ``snapshot_batch_size`` changes and ``batch_bytes`` in all: stored in one transaction, a
        snapshot's rows cost the store less (each transaction rewrites the index pages it touches).
        Returns them and the ``change_bytes`` of all the changes (None when no more were read)."""
        more: list[ch.Change] = []
        last = changes
        if len(changes) < self.batch_size or changes[-1].op != ch.SNAPSHOT:
            return more, None
        sizes = list(map(change_bytes, changes))
        size = sum(sizes)
        while len(last) >= self.batch_size and last[-1].op == ch.SNAPSHOT and \
                len(changes) + len(more) + self.batch_size <= self.snapshot_batch_size and size < self.batch_bytes:
            last = self.source.read(last[-1].position, self.batch_size)
            more += last
            grown = list(map(change_bytes, last))
            sizes += grown
            size += sum(grown)
        return more, sizes

    def _store(self, changes: list[ch.Change]) -> None:
        """The events of ``changes`` and the position of the last one, in one store transaction (more
        where a truncate or the end of a snapshot pass deletes page by page)."""
        batch = self._batch(changes)
        for i, change in enumerate(changes):
            self._translate_one(batch, change)
            if change.op in (ch.TRUNCATE, ch.SNAPSHOT_END):
                self._write(batch, changes[i - 1].position if i else None)
                if change.table in self.passes:
                    sweep(batch, change, self.passes[change.table], self.recorder, self._decode_key,
                          self.schema_versions.get(change.table, 0), self.batch_size, self._write)
                else:
                    log.warning("end of a snapshot pass of %s that never began: nothing deleted", change.table,
                                extra={"table": change.table, "position": change.position})
        self._write(batch, changes[-1].position)

    def _write(self, batch: _Batch, position: ch.Position | None) -> None:
        """Store the batch's events and states (with the source ``position`` reached, if given)."""
        stored = batch.stored
        tracking = Tracking(SOURCE_TRACKING, position) if position is not None else None
        if not stored and not batch.states and tracking is None:
            return
        size = sum(len(e.state) for e in stored)
        with self.watchdog.step("store", f"the node store to take {len(stored)} events ({size} bytes) up to "
                                         f"source position {position}"):
            self.recorder.insert_events(stored, tracking=tracking, states=batch.states)
        if position is not None:
            self.position = position
        self.metrics.events_stored.inc(len(stored))
        if self.on_stored is not None and batch.events:
            self.on_stored(batch.events)
        batch.written()

    def prune(self) -> None:
        """Acknowledge to the source every change the hub holds."""
        shipped = self._shipped_source_position()
        if shipped > self.pruned:
            self.source.acknowledge(shipped)
            self.pruned = shipped

    def _shipped_source_position(self) -> ch.Position:
        acknowledged = self.recorder.position(HUB_TRACKING)
        if not acknowledged:
            return ch.Position(0)
        if acknowledged >= (self.recorder.max_notification_id() or 0):
            return self.position  # the hub holds every event: changes that made none may go too
        # The acknowledged id is a real notification id, so this reads exactly that event.
        event = self.mapper.to_domain_event(self.recorder.read(acknowledged - 1, 1)[0])
        # Before that event's change: its other events (a sweep's deletes) may not be at the hub yet.
        return ch.Position(min(event.position - 1, self.position))

    def _load_table(self, table: str) -> None:
        """The table's schema version and current snapshot pass, as stored."""
        oid = schema_id(self.agency, table).hex
        state = self.recorder.record_states([oid]).get(oid)
        self.schema_versions[table] = state.version if state else 0
        self.passes.pop(table, None)
        if state is not None and state.mark is not None:
            self.passes[table] = state.mark

    def _batch(self, changes: list[ch.Change]) -> _Batch:
        self._ids: dict[tuple, tuple[UUID, str, bytes]] = {}
        oids = set()
        for c in changes:
            if c.table not in self.schema_versions:
                self._load_table(c.table)
            if c.op in (ch.SCHEMA, ch.TRUNCATE, ch.SNAPSHOT_BEGIN, ch.SNAPSHOT_END):
                oids.add(schema_id(self.agency, c.table).hex)
            for image in (c.before, c.after):
                if image is not None and c.table in self.keys:
                    oids.add(self._oid(c.table, self._key(c.table, image))[1])
        return _Batch(self.agency, self.recorder.record_states(sorted(oids)), self.table_ids, self.passes,
                      self.mapper)

    def _decode_key(self, key: bytes) -> dict[str, Any]:
        return self.mapper.transcoder.decode(key)

    def _key(self, table: str, image: dict[str, Any]) -> dict[str, Any]:
        return {k: image[k] for k in self.keys[table]}

    def _oid(self, table: str, key: dict[str, Any]) -> tuple[UUID, str, bytes]:
        """The record id of ``key`` in ``table``, its hex and the key as the mapper encodes it, computed
        once per batch."""
        try:
            cache_key = (table, *key.values())
            return self._ids[cache_key]
        except TypeError:  # a key value that is a list (an array column)
            oid = record_id(self.agency, table, key)
            return oid, oid.hex, self.mapper.transcoder.encode(key)
        except KeyError:
            oid = record_id(self.agency, table, key)
            self._ids[cache_key] = found = (oid, oid.hex, self.mapper.transcoder.encode(key))
            return found

    def _translate_one(self, batch: _Batch, c: ch.Change) -> None:
        if c.op in (ch.SCHEMA, ch.TRUNCATE, ch.SNAPSHOT_BEGIN, ch.SNAPSHOT_END):
            self._table_change(batch, c)
            return
        schema_version = self.schema_versions.get(c.table, 0)
        if c.op == ch.DELETE:
            self._delete(batch, c, self._key(c.table, c.before), schema_version)
            return
        assert c.after is not None
        key = self._key(c.table, c.after)
        if c.op == ch.UPDATE and c.before is not None:
            old_key = self._key(c.table, c.before)
            if old_key != key:  # the primary key itself changed: a different record
                self._delete(batch, c, old_key, schema_version)
        oid, hex_id, key_json = self._oid(c.table, key)
        state = batch.state(hex_id)
        digest = image_hash(c.after)
        if state is None or not state.live:
            batch.add(RecordCreated, c, oid, key, digest, True, schema_version, hex_id, key_json, row=c.after)
        elif c.op == ch.UPDATE and c.before is not None and self._key(c.table, c.before) == key:
            changed = {k: v for k, v in c.after.items() if k not in c.before or c.before[k] != v}
            if changed:
                batch.add(RecordUpdated, c, oid, key, digest, True, schema_version, hex_id, key_json, changed=changed)
            else:
                batch.touch(hex_id, c.table, key_json)
        elif digest != state.image_hash:
            # A snapshot row (or an insert over a row we hold) that differs from what we hold.
            batch.add(RecordUpdated, c, oid, key, digest, True, schema_version, hex_id, key_json, changed=c.after)
        else:
            batch.touch(hex_id, c.table, key_json)

    def _table_change(self, batch: _Batch, c: ch.Change) -> None:
        """A change of the table itself, an event of its schema aggregate (or only its state)."""
        oid = schema_id(self.agency, c.table)
        previous = batch.state(oid.hex)
        if c.op == ch.SCHEMA:
            assert c.schema is not None
            self.keys[c.table] = c.schema.primary_key
            self.schema_versions[c.table] = previous.version + 1 if previous else 1
            batch.add(SchemaChanged, c, oid, None, None, True, self.schema_versions[c.table],
                      table=c.schema.to_dict(), renames=dict(c.renames) if c.renames else None)
            return
        if c.op == ch.SNAPSHOT_END:
            return  # the sweep follows (Capture.step)
        already = self.passes.get(c.table) == c.position  # the change was begun before a restart
        self.passes[c.table] = c.position  # a truncate is a pass that reads no row
        if c.op == ch.TRUNCATE and not already:
            batch.add(TableTruncated, c, oid, None, None, True, self.schema_versions.get(c.table, 0))
        else:
            batch.set_state(oid.hex, c.table, None, previous or RecordState(0, "", True))

    def _delete(self, batch: _Batch, c: ch.Change, key: dict[str, Any], schema_version: int) -> None:
        oid, hex_id, key_json = self._oid(c.table, key)
        state = batch.state(hex_id)
        if state is not None and state.live:
            batch.add(RecordDeleted, c, oid, key, None, False, schema_version, hex_id, key_json)
