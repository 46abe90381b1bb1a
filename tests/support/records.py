"""Events and captures for tests of replay and replicas: a sample agency's log, hand-made record events."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from exchange.contracts.changes import CaptureSource
from exchange.store import EventStore
from node.capture import Capture


def capture_all(agency: str, source: CaptureSource, store_url: str, batch_size: int = 300) -> int:
    """Capture everything pending at ``source`` into the node store at ``store_url``; the last source position."""
    store = EventStore(store_url)
    try:
        capture = Capture(agency, source, store.node_recorder(agency), batch_size=batch_size)
        while capture.step():
            pass
        return capture.position
    finally:
        store.close()


def record_event(kind: type, agency: str, key: Any, version: int, resource: str = "licences", **fields: Any) -> Any:
    """A record event of ``kind`` of the record ``{"id": key}`` at ``version``."""
    return kind(originator_id=uuid.uuid5(uuid.NAMESPACE_OID, str(key)), originator_version=version,
                timestamp=datetime.now(timezone.utc), agency=agency, resource=resource, key={"id": key},
                position=1, commit_time=None, txid="", schema_version=1, event_schema_version=1, **fields)
