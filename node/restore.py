"""``exchange node restore``: rebuild a node's lost event store from the hub.

The hub holds every event the node shipped, in the node's order.  Restore
subscribes to the agency's log at the hub, writes the events into an empty
node store batch by batch (each batch with the hub position reached, so an
interrupted restore continues where it stopped), and rebuilds each record's
state (version, image digest, live).  At the end it records the hub's
acknowledged position and the last source position in the history, so
capture resumes exactly after what the hub holds: the source still has those
changes, because a node lets its source forget only what the hub holds.
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import grpc
from eventsourcing.persistence import Tracking

from exchange.common.config import Config
from exchange.contracts.events import (
    RecordCreated,
    RecordDeleted,
    RecordUpdated,
    SchemaChanged,
    TableTruncated,
    image_hash,
    make_mapper,
    schema_id,
)
from exchange.store import EventStore, NodeRecorder, RecordState, StoreError
from exchange.store.at_rest import store_cipher
from exchange.transport.rpc.hubs import first_channel
from exchange.transport.wire import from_wire
from node.positions import HUB_TRACKING, RESTORE_TRACKING, SOURCE_TRACKING
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)
BATCH = 1000


class RowImages:
    """Each record's folded row image, kept in a temporary SQLite file so
    memory stays bounded whatever the number of records."""

    def __init__(self, directory: str):
        self.mapper = make_mapper()
        self.db = sqlite3.connect(Path(directory) / "images.db", isolation_level=None)
        self.db.execute("PRAGMA journal_mode=OFF")  # scratch data: a failed restore starts this file anew
        self.db.execute("PRAGMA synchronous=OFF")
        self.db.execute("CREATE TABLE images (oid TEXT PRIMARY KEY, image BLOB)")

    def load(self, oids: list[str]) -> dict[str, dict[str, Any]]:
        found = {}
        for i in range(0, len(oids), 500):
            chunk = oids[i:i + 500]
            rows = self.db.execute(f"SELECT oid, image FROM images WHERE oid IN ({','.join('?' * len(chunk))})", chunk)
            found.update({oid: self.mapper.transcoder.decode(image) for oid, image in rows})
        return found

    def save(self, images: dict[str, dict[str, Any]]) -> None:
        self.db.execute("BEGIN")
        self.db.executemany("INSERT OR REPLACE INTO images VALUES (?, ?)",
                            [(oid, self.mapper.transcoder.encode(image)) for oid, image in images.items()])
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def restore(cfg: Config, timeout: float = 30.0) -> dict[str, Any]:
    """Rebuild the node store named in ``cfg`` from the hub; returns a summary."""
    agency = cfg.agency
    store = EventStore(cfg.store.url, cipher=store_cipher(cfg))
    try:
        recorder = store.node_recorder(agency)
        if recorder.position(SOURCE_TRACKING) or recorder.position(HUB_TRACKING):
            raise StoreError(f"store {cfg.store.url!r} already belongs to a running node; "
                             "restore needs the empty store of a node that lost its own")
        address, channel = first_channel(cfg)
        with channel:
            stub = pb_grpc.ExchangeStub(channel)
            try:
                positions = stub.GetPosition(pb.PositionRequest(agency=agency), timeout=timeout)
            except grpc.RpcError as e:
                raise StoreError(f"cannot restore from hub {address}: {e.details()}") from None
            with tempfile.TemporaryDirectory(prefix="exchange-restore-") as tmp:
                images = RowImages(tmp)
                try:
                    restored, source_position = _copy(stub, recorder, images, agency, positions.hub_position)
                finally:
                    images.close()
        # New events must get ids above what the hub holds, whatever gaps the old store had.
        recorder.advance_notification_ids(positions.position)
        recorder.insert_tracking(Tracking(SOURCE_TRACKING, source_position))
        recorder.insert_tracking(Tracking(HUB_TRACKING, positions.position))
        return {"agency": agency, "events": recorder.count_after(0), "restored_now": restored,
                "hub_position": positions.position, "source_position": source_position}
    finally:
        store.close()


def _copy(stub, recorder: NodeRecorder, images: RowImages, agency: str, head: int) -> tuple[int, int]:
    """Copy the hub's log up to hub id ``head``; (events copied, last source position)."""
    mapper = make_mapper()
    after = recorder.position(RESTORE_TRACKING)
    copied = 0
    source_position = _last_source_position(recorder, mapper)
    truncated = 0  # the position of the last truncate copied
    for batch in _batches(stub, agency, after, head):
        stored = [from_wire(e) for e in batch.events]
        events = [mapper.to_domain_event(s) for s in stored]
        oids = [e.originator_id.hex for e in events]
        folded = images.load(oids)
        states = {}
        for event in events:
            oid = event.originator_id.hex
            own = isinstance(event, (SchemaChanged, TableTruncated))
            states[oid] = replace(_fold(folded, oid, event), table_id=schema_id(agency, event.resource).hex,
                                  key=None if own else mapper.transcoder.encode(event.key))
            if isinstance(event, TableTruncated):  # its pass, so that capture does not record it again
                states[oid] = replace(states[oid], mark=event.position)
                truncated = event.position
            source_position = max(source_position, event.position)
        recorder.insert_events(stored, tracking=Tracking(RESTORE_TRACKING, batch.events[-1].notification_id),
                               states=states)
        images.save(folded)
        copied += len(stored)
        log.info("restored %d events (hub id %d of %d)", copied, batch.events[-1].notification_id, head)
    # The hub may hold only some of the last truncate's deletes: capture reads the truncate again,
    # deleting only what is still live.
    return copied, source_position - 1 if truncated and truncated == source_position else source_position


def _batches(stub, agency: str, after: int, head: int) -> Iterator[pb.EventBatch]:
    if after >= head:
        return
    for batch in stub.Subscribe(pb.SubscribeRequest(agency=agency, after=after, max_batch=BATCH)):
        yield batch
        if batch.events[-1].notification_id >= head:
            return


def _fold(images: dict[str, dict[str, Any]], oid: str, event) -> RecordState:
    """Apply ``event`` to the record's image; the record's state after it."""
    if isinstance(event, RecordCreated):
        images[oid] = dict(event.row)
    elif isinstance(event, RecordUpdated):
        images[oid] = {**images.get(oid, {}), **event.changed}
    elif isinstance(event, RecordDeleted):
        images.pop(oid, None)
        return RecordState(event.originator_version, "", False)
    elif isinstance(event, (SchemaChanged, TableTruncated)):
        return RecordState(event.originator_version, "", True)
    return RecordState(event.originator_version, image_hash(images[oid]), True)


def _last_source_position(recorder: NodeRecorder, mapper) -> int:
    """The source position of the latest event already restored (0 if none)."""
    latest = recorder.max_notification_id()
    if not latest:
        return 0
    return mapper.to_domain_event(recorder.read(latest - 1, 1)[0]).position
