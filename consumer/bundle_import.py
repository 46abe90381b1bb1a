"""``exchange node import DIR``: apply the hub's consumer bundles to the replica (offline exchange).

Reads ``DIR/<agency>/<provider>/<resource>/*.bundle`` (written by
``exchange hub export``) for each configured resource, verifies every
bundle against the hub's public key (``[consumer] hub_key``), and applies
them in order through the replica's replay path, each bundle in one
transaction with its checkpoint.  Bundles already applied are skipped, so
an import can be repeated or resumed after a crash; a missing bundle stops
that resource with an error naming the gap, and nothing after it is applied.
With a ``[tls] key`` and a ``[hub] address``, each bundle applied is then
acknowledged with a signed receipt (consumer/receipts.py; the content hash
is that of the bundle file); ``receipts`` in the report says how many went.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from consumer.receipts import Receipts
from consumer.replica import Replica, projection
from consumer.subscriber import Wanted, wanted
from exchange.common.config import Config
from exchange.contracts.events import make_mapper
from exchange.store import StoreError
from exchange.transport.offline.bundles import (
    BundleError,
    is_bundle_name,
    load_trusted_keys,
    read_bundle,
    read_manifest,
)
from exchange.transport.wire import from_wire

log = logging.getLogger(__name__)


def import_bundles(cfg: Config, directory: str | Path) -> dict[str, Any]:
    """Apply what the directory holds for this consumer; a report per resource (``errors`` lists problems)."""
    if not cfg.consumer.hub_key:
        raise StoreError("[consumer] hub_key is not set: name the hub's bundle public key (hub.pub) to trust")
    base = Path(directory) / cfg.agency
    report: dict[str, Any] = {"resources": {}, "errors": [], "receipts": 0}
    replica = Replica(cfg.consumer.replica)
    delivered: list[tuple] = []
    try:
        for want in wanted(cfg):
            folder = base / want.provider / want.resource
            if not folder.is_dir():
                continue
            trusted = load_trusted_keys({want.provider: cfg.consumer.hub_key})
            try:
                report["resources"][f"{want.provider}/{want.resource}"] = _import(replica, want, folder, trusted,
                                                                                   delivered)
            except (BundleError, StoreError) as e:
                report["errors"].append(str(e))
                log.error("%s", e)
    finally:
        replica.close()
    if delivered:
        report["receipts"] = _acknowledge(cfg, delivered, report["errors"])
    return report


def _acknowledge(cfg: Config, delivered: list[tuple], errors: list[str]) -> int:
    """Send a receipt for each bundle applied; how many the hub took (a failure is reported, not raised)."""
    receipts = Receipts.from_config(cfg)
    if not (receipts.enabled and (cfg.hub.address or cfg.hub.addresses)):
        return 0
    import grpc

    from exchange.transport.rpc.hubs import first_channel

    sent = 0
    try:
        _, channel = first_channel(cfg)
        with channel:
            for provider, resource, after, reached, events, path in delivered:
                receipts.send(channel, "bundle", provider, resource, after, reached, [path.read_bytes()], events)
                sent += 1
    except grpc.RpcError as e:
        errors.append(f"receipts: the hub took {sent} of {len(delivered)}: {e.details()} ({e.code().name})")
    return sent


def _import(replica: Replica, want: Wanted, folder: Path, trusted, delivered: list[tuple]) -> dict[str, Any]:
    """Apply the folder's new bundles in order; each applied is added to ``delivered`` for its receipt."""
    mapper = make_mapper()
    provider, resource = want.provider, want.resource
    found = sorted(((read_manifest(p), p) for p in folder.iterdir() if p.is_file() and is_bundle_name(p.name)),
                   key=lambda item: (item[0].first, -item[0].last))
    applied = events = 0
    for manifest, path in found:
        position = replica.position(provider, resource)
        batch = None
        if manifest.after == 0 and position > 0:  # a copy from the start: for new items or a new row filter?
            _, batch = read_bundle(path, trusted)
            if projection(batch.items, batch.rows) != replica.items(provider, resource):
                replica.withdraw(provider, resource, projection(batch.items, batch.rows))
                position = 0
        if manifest.last <= position:
            continue  # applied before
        if manifest.after > position:
            raise StoreError(f"bundle {path} follows hub id {manifest.after}, but the replica holds {provider}/"
                             f"{resource} up to {position}: a bundle is missing (export again from the hub)")
        if batch is None:
            _, batch = read_bundle(path, trusted)
        items = projection(batch.items, batch.rows)
        held = replica.items(provider, resource)
        if held != items:
            if manifest.after != 0:
                raise StoreError(f"bundle {path} was projected to {items}, the replica holds {held}; "
                                 "the hub exports a resource from the start when its items or row filter change")
            replica.withdraw(provider, resource, items)  # a fresh copy with the new items
            position = 0
        pairs = [(e.notification_id, mapper.to_domain_event(from_wire(e)))
                 for e in batch.events if e.notification_id > position]
        events += replica.apply(provider, resource, pairs, position, max(batch.reached, manifest.last))
        applied += 1
        delivered.append((provider, resource, manifest.after, batch.reached, len(batch.events), path))
    return {"bundles": applied, "events": events, "position": replica.position(provider, resource)}
