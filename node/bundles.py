"""Offline exchange at the node: the signing key, bundle export and the hub's acknowledgements.

``exchange node export`` first reads the acknowledgement the hub wrote back
into the directory (``ack/<agency>.json``, see hub/bundle_import.py) and
moves the node's ``hub`` position forward to it, then writes every event
after that position as bundles of at most ``max_events`` events.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from eventsourcing.persistence import IntegrityError, Tracking

from exchange.bundles import SigningKeyError, generate_key, key_id, load_private_key, write_bundle
from exchange.store import EventStore, NodeRecorder
from node.positions import HUB_TRACKING
from node.shipper import shareable

log = logging.getLogger(__name__)

ACK_DIR = "ack"


def keygen(cfg: dict) -> dict:
    """Create the node's signing key at ``[bundles] key`` and its public key
    ``<agency>.pub`` beside it (the file the hub operator trusts)."""
    path = _key_path(cfg)
    public_path = path.with_name(f"{cfg['agency']}.pub")
    public_key = generate_key(path, public_path)
    return {"key": str(path), "public_key": str(public_path), "key_id": key_id(public_key)}


def export(cfg: dict, directory: str | Path, *, max_events: int = 10000, after: int | None = None) -> dict:
    """Write the events the hub has not acknowledged (or those after ``after``)
    into ``directory`` as signed bundles; return what was done."""
    if max_events < 1:
        raise ValueError(f"--max-events must be at least 1, got {max_events}")
    agency = cfg["agency"]
    key = load_private_key(_key_path(cfg))
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    store = EventStore(cfg["store.url"], create=False)
    try:
        recorder = store.node_recorder(agency)
        acknowledged = apply_ack(recorder, directory / ACK_DIR / f"{agency}.json", agency)
        position = acknowledged if after is None else after
        start, bundles, events = position, [], 0
        # One bundle's events in memory at a time.
        written = position  # the last event written, which the next bundle follows (local-only events are left out)
        while notifications := recorder.read(position, max_events):
            position = notifications[-1].id
            notifications = shareable(notifications, frozenset(cfg.get("source.not_shared", ())))
            if notifications:
                bundles.append(write_bundle(directory, agency, notifications, written, key).name)
                events += len(notifications)
                written = notifications[-1].id
    finally:
        store.close()
    return {"agency": agency, "hub_position": acknowledged, "after": start, "events": events, "bundles": bundles}


def apply_ack(recorder: NodeRecorder, path: Path, agency: str) -> int:
    """Move the node's ``hub`` position forward to the acknowledgement at
    ``path``, if there is one and it is ahead; return the position."""
    current = recorder.position(HUB_TRACKING)
    if not path.exists():
        return current
    try:
        ack = json.loads(path.read_text())
        position = ack["position"]
        if ack["agency"] != agency or not isinstance(position, int):
            raise ValueError(f"it is for agency {ack['agency']!r}, position {position!r}")
    except (OSError, ValueError, KeyError, TypeError) as e:
        log.warning("ignoring acknowledgement %s: not a valid acknowledgement for agency %s: %s", path, agency, e)
        return current
    if position <= current:
        return current
    # The position must be one of this node's events (capture prunes the source up to it).
    found = recorder.read(position - 1, 1)
    if not found or found[0].id != position:
        log.warning("ignoring acknowledgement %s: position %d is not an event of this node's store", path, position)
        return current
    try:
        recorder.insert_tracking(Tracking(HUB_TRACKING, position))
    except IntegrityError:
        pass  # the running node's shipper recorded the same position first
    log.info("hub acknowledged events up to %d (%s)", position, path)
    return position


def _key_path(cfg: dict) -> Path:
    if not cfg["bundles.key"]:
        raise SigningKeyError("[bundles] key is not set: set it to the path of the node's signing key "
                              "(create one with `exchange node keygen`)")
    return Path(cfg["bundles.key"])
