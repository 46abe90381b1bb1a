"""Offline exchange at the node: the signing key, bundle export and the hub's acknowledgements.

``exchange node export`` first reads the acknowledgement the hub wrote back
into the directory (``ack/<agency>.json``, see hub/bundle_import.py) and
moves the node's ``hub`` position forward to it, then writes every event
after that position as bundles of at most ``max_events`` events.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from eventsourcing.persistence import IntegrityError, Tracking

from exchange.common.config import Config
from exchange.contracts.errors import InvalidInput
from exchange.store import EventStore, NodeRecorder
from exchange.store.at_rest import store_cipher
from exchange.transport.offline.acks import read_ack
from exchange.transport.offline.bundles import (
    SigningKeyError,
    generate_key,
    key_id,
    load_hub_public_key,
    load_private_key,
    load_public_key,
    write_bundle,
)
from node.positions import HUB_TRACKING
from node.shipper import shareable

log = logging.getLogger(__name__)

ACK_DIR = "ack"


def keygen(cfg: Config) -> dict:
    """Create the node's signing key at ``[bundles] key`` and its public key
    ``<agency>.pub`` beside it (the file the hub operator trusts)."""
    path = _key_path(cfg)
    public_path = path.with_name(f"{cfg.agency}.pub")
    public_key = generate_key(path, public_path)
    return {"key": str(path), "public_key": str(public_path), "key_id": key_id(public_key)}


def export(cfg: Config, directory: str | Path, *, max_events: int = 10000, after: int | None = None) -> dict:
    """Write the events the hub has not acknowledged (or those after ``after``)
    into ``directory`` as signed bundles; return what was done."""
    if max_events < 1:
        raise InvalidInput(f"--max-events must be at least 1, got {max_events}")
    agency = cfg.agency
    key = signing_key(cfg)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    store = EventStore(cfg.store.url, create=False, cipher=store_cipher(cfg))
    try:
        recorder = store.node_recorder(agency)
        not_shared = frozenset(cfg.source.not_shared)
        acknowledged = apply_ack(recorder, directory / ACK_DIR / f"{agency}.json", agency, hub_key(cfg), not_shared)
        start = acknowledged if after is None else after
        paths, events = write_bundles(recorder, agency, key, directory, start, max_events, encrypt_to(cfg),
                                      not_shared)
    finally:
        store.close()
    return {"agency": agency, "hub_position": acknowledged, "after": start, "events": events,
            "bundles": [p.name for p in paths]}


def write_bundles(recorder: NodeRecorder, agency: str, key: Ed25519PrivateKey, directory: Path, after: int,
                  max_events: int, encrypt_to: X25519PublicKey | None = None,
                  not_shared: frozenset[str] = frozenset()) -> tuple[list[Path], int]:
    """Write every event after ``after`` into ``directory`` as bundles of at most
    ``max_events`` events (content encrypted to ``encrypt_to`` when given),
    leaving out the events of ``not_shared`` tables; the paths written and
    the number of events."""
    position = after  # read up to
    # The last event written, which the next bundle follows: below ``after`` by the events the node kept
    # and settled itself, since the hub's position stays at the last event it holds.
    written = _last_shared(recorder, after, not_shared)
    paths, events = [], 0
    # One bundle's events in memory at a time.
    while notifications := recorder.read(position, max_events):
        position = notifications[-1].id
        notifications = shareable(notifications, not_shared)
        if notifications:
            paths.append(write_bundle(directory, agency, notifications, written, key, encrypt_to))
            events += len(notifications)
            written = notifications[-1].id
    return paths, events


def _last_shared(recorder: NodeRecorder, upto: int, not_shared: frozenset[str], window: int = 500) -> int:
    """The id of the last event up to ``upto`` that may leave the node (0 if none)."""
    if not not_shared:
        return upto
    high = upto
    while high > 0:
        low = max(0, high - window)
        events = [n for n in recorder.read(low, high - low) if n.id <= high]
        shared = shareable(events, not_shared)
        if shared:
            return shared[-1].id
        high = low
    return 0


def apply_ack(recorder: NodeRecorder, path: Path, agency: str, hub_key: Ed25519PublicKey | None = None,
              not_shared: frozenset[str] = frozenset()) -> int:
    """Move the node's ``hub`` position forward to the acknowledgement at
    ``path``, if there is one, it is ahead and (with ``hub_key``) signed by
    the hub, then past the events after it that stay at the node
    (``not_shared``, as the shipper settles them); return the position."""
    return _settle_kept(recorder, _apply_ack(recorder, path, agency, hub_key), not_shared)


def _settle_kept(recorder: NodeRecorder, position: int, not_shared: frozenset[str]) -> int:
    """Count the events right after ``position`` that stay at the node as settled: the hub holds every
    event that may leave up to there.  The new position."""
    settled = position
    while not_shared:
        events = recorder.read(settled, 500)
        kept = list(itertools.takewhile(lambda n: not shareable([n], not_shared), events))
        if not kept:
            break
        settled = kept[-1].id
        if len(kept) < len(events):
            break
    if settled > position:
        try:
            recorder.insert_tracking(Tracking(HUB_TRACKING, settled))
        except IntegrityError:
            pass  # the running node's shipper settled the same events first
        log.info("settled events %d to %d, which stay at the node", position + 1, settled)
    return settled


def _apply_ack(recorder: NodeRecorder, path: Path, agency: str, hub_key: Ed25519PublicKey | None) -> int:
    current = recorder.position(HUB_TRACKING)
    if not path.exists():
        return current
    try:
        position = read_ack(path.read_bytes(), agency, hub_key)
    except (OSError, ValueError) as e:
        log.warning("ignoring acknowledgement %s: %s", path, e)
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


def hub_key(cfg: Config) -> Ed25519PublicKey | None:
    """The hub's public key acknowledgements must be signed with (``[bundles] hub_key``), or None."""
    return load_public_key(cfg.bundles.hub_key, "[bundles] hub_key") if cfg.bundles.hub_key else None


def encrypt_to(cfg: Config) -> X25519PublicKey | None:
    """The hub's public key bundle content is encrypted to (``[bundles] encrypt_to``), or None."""
    return load_hub_public_key(cfg.bundles.encrypt_to) if cfg.bundles.encrypt_to else None


def signing_key(cfg: Config) -> Ed25519PrivateKey:
    """The node's bundle signing key, from ``[bundles] key``."""
    return load_private_key(_key_path(cfg))


def _key_path(cfg: Config) -> Path:
    if not cfg.bundles.key:
        raise SigningKeyError("[bundles] key is not set: set it to the path of the node's signing key "
                              "(create one with `exchange node keygen`)")
    return Path(cfg.bundles.key)
