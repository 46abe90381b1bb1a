"""Feeds the schema events nodes ship to the hub into the catalog, exactly once.

For each agency the position read so far in its log is tracked in the
catalog's own log (``catalog-schema:<agency>``), written in the same
transaction as what the events caused, so a crash neither loses a schema
change nor records one twice.  Ingest wakes the watch when a batch holds a
schema event; a periodic pass catches up everything else.
"""

from __future__ import annotations

import logging
import threading
from datetime import timezone
from typing import Sequence

from eventsourcing.persistence import IntegrityError, Tracking

from exchange.contracts.events import SchemaChanged, make_mapper
from exchange.contracts.text import excerpt
from hub.catalog.catalog import Catalog
from hub.ingest import Ingest

log = logging.getLogger(__name__)

TRACKING_PREFIX = "catalog-schema:"
READ_BATCH = 500


class SchemaWatch:
    """Reads schema events from the hub's agency logs into a Catalog."""

    def __init__(self, catalog: Catalog, ingest: Ingest):
        self.catalog = catalog
        self.ingest = ingest
        self.mapper = make_mapper()
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def notice(self, agency: str, events: Sequence) -> None:
        """Ingest's hook: wake the watch when a stored batch holds a schema change."""
        if any(e.topic == SchemaChanged.TOPIC for e in events):
            self.wake.set()

    def sync(self, agency: str) -> int:
        """Record the agency's schema events not yet recorded; returns how many."""
        recorder = self.ingest.recorder(agency, create=False)
        if recorder is None:
            return 0
        name = TRACKING_PREFIX + agency
        with self._lock:
            position = self.catalog.position(name)
            head = recorder.max_notification_id() or 0
            recorded = 0
            while position < head:
                found = recorder.select_notifications(position, READ_BATCH, stop=head, topics=(SchemaChanged.TOPIC,),
                                                      inclusive_of_start=False)
                for n in found:
                    try:
                        event = self.mapper.to_domain_event(n)
                        changed_at = (event.commit_time or event.timestamp).astimezone(timezone.utc)
                        columns = [c["name"] for c in event.table["columns"]]
                    except (AttributeError, KeyError, TypeError, ValueError) as e:
                        # What a node sent cannot describe a schema: skipped once, loudly, not retried forever.
                        log.warning("agency %s: schema event %d cannot be read (%s); the catalog skips it",
                                    agency, n.id, excerpt(str(e)), extra={"agency": agency})
                        self._record(lambda: self.catalog.advance(Tracking(name, n.id)))
                        position = n.id
                        continue
                    self._record(lambda: self.catalog.record_source_schema(
                        agency, event.resource, changed_at, event.schema_version, columns, Tracking(name, n.id)))
                    recorded += 1
                    position = n.id
                if len(found) < READ_BATCH:
                    if position < head:
                        self._record(lambda: self.catalog.advance(Tracking(name, head)))
                    position = head
            return recorded

    def sync_all(self) -> int:
        """Sync every agency; one agency's unreadable event is logged and holds up only that agency."""
        recorded = 0
        for agency in self.ingest.store.agencies():
            try:
                recorded += self.sync(agency)
            except Exception:
                log.exception("the catalog's schema watch cannot read agency %s's schema events; retrying next pass",
                              agency, extra={"agency": agency})
        return recorded

    def run(self, interval: float) -> None:
        """Sync every agency each ``interval`` seconds or when woken, until ``stop``."""
        while not self._stop.is_set():
            try:
                self.sync_all()
            except Exception:
                log.exception("the catalog's schema watch failed; retrying")
            self.wake.wait(interval)
            self.wake.clear()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()

    @staticmethod
    def _record(write) -> None:
        try:
            write()
        except IntegrityError:
            # Another watch on the same store recorded this position first.
            log.info("a schema position was already recorded; skipping it")
