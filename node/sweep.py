"""Deleting the live records of a table that a truncate or a snapshot pass leaves behind.

A table's *pass* is the position of the change that began it (a
``SNAPSHOT_BEGIN``, or a ``TRUNCATE``, a pass that reads no row).  Every
record state the node writes carries its table's current pass (its
*mark*): rows the pass read, and rows a streamed change touched after it
began.  At the end of the pass (at once for a truncate) every live record
of the table marked before the pass no longer exists at the source and is
deleted, page by page from the record-state table, each page in a store
transaction of its own, so memory stays bounded whatever the table's size.

Stores written before record states named their table and key get them
filed once, from the events, when capture starts (``file_records``).
"""

from __future__ import annotations

import logging
from typing import Any, Callable
from uuid import UUID

from eventsourcing.persistence import Mapper

from exchange.contracts import changes as ch
from exchange.contracts.events import RecordDeleted, RecordEvent, SchemaChanged, TableTruncated, schema_id
from exchange.store import NodeRecorder

log = logging.getLogger(__name__)

FILING_PAGE = 2000  # events read per transaction while filing old record states


def sweep(batch: Any, change: ch.Change, mark: int, recorder: NodeRecorder, decode_key: Callable[[bytes], Any],
          schema_version: int, page_size: int, write: Callable[[Any, ch.Position | None], None]) -> int:
    """Delete, in ``batch`` (node.capture's), the live records of ``change.table`` marked before ``mark``;
    ``write`` stores each page.  Returns the number deleted."""
    table_id = batch.table_id(change.table)
    deleted = 0
    after = None
    while page := recorder.live_records(table_id, mark, after, page_size):
        fetched = [oid for oid, _ in page if oid not in batch.known]
        for oid, state in page:
            batch.known[oid] = state
            batch.add(RecordDeleted, change, UUID(oid), decode_key(state.key), None, False, schema_version)
        deleted += len(page)
        after = page[-1][0]
        write(batch, None)
        for oid in fetched:  # memory stays bounded: only the states the batch's changes need are kept
            del batch.known[oid]
    if deleted:
        log.info("%s of %s: %d records deleted", "truncate" if change.op == ch.TRUNCATE else "snapshot pass",
                 change.table, deleted, extra={"table": change.table, "deleted": deleted, "op": change.op})
    return deleted


def file_records(agency: str, recorder: NodeRecorder, mapper: Mapper) -> int:
    """Name the table and key of every record state written before states did, from the events
    (one pass over the log, a page per transaction; done once).  Returns the events read."""
    if not recorder.unfiled_records():
        return 0
    log.info("filing the table and key of each record the node store holds (once, after an upgrade)")
    after, read = 0, 0
    while notifications := recorder.read(after, FILING_PAGE):
        filed: dict[str, tuple[str, bytes | None]] = {}
        for n in notifications:
            event: RecordEvent = mapper.to_domain_event(n)
            own = isinstance(event, (SchemaChanged, TableTruncated))
            filed[event.originator_id.hex] = (schema_id(agency, event.resource).hex,
                                              None if own else mapper.transcoder.encode(event.key))
        recorder.file_records(filed)
        after = notifications[-1].id
        read += len(notifications)
    log.info("filed the records of %d events", read)
    return read
