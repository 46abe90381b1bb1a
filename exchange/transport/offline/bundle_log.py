"""An agency's notification log read from a folder of offline bundles.

Gives replay the same ``read(after, limit)`` / ``count_after`` a store's
recorder gives, so a database can be rebuilt from bundles alone (for
example on an air-gapped network).  Every bundle is verified before use;
overlapping bundles are fine, a gap between them is refused before
anything is replayed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from eventsourcing.persistence import Notification

from exchange.store import StoredNotification, StoreError
from exchange.transport.offline.bundles import BundleError, Manifest, is_bundle_name, read_bundle, read_manifest
from exchange.transport.wire import from_wire


class BundleLog:
    """The events of ``agency`` in the bundles under ``directory``, in id order."""

    def __init__(self, directory: str | Path, agency: str, trusted_keys: Mapping[str, Ed25519PublicKey],
                 decrypt_key: X25519PrivateKey | None = None):
        self.trusted_keys = trusted_keys
        self.decrypt_key = decrypt_key  # for bundles encrypted to the hub
        found: list[tuple[Manifest, Path]] = []
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file() and is_bundle_name(path.name):
                manifest = read_manifest(path)
                if manifest.agency == agency:
                    found.append((manifest, path))
        if not found:
            raise StoreError(f"no bundles of agency {agency} under {directory}")
        self.bundles = sorted(found, key=lambda item: (item[0].first, -item[0].last))
        reach = 0
        for manifest, path in self.bundles:
            if manifest.after > reach:
                raise BundleError(path, "gap", f"starts after id {manifest.after}, but the bundles before it "
                                               f"end at {reach}: a bundle is missing")
            reach = max(reach, manifest.last)

    def count_after(self, position: int = 0) -> int:
        """About how many events follow ``position`` (overlaps counted twice)."""
        return sum(m.events for m, _ in self.bundles if m.last > position)

    def read_stored(self, after: int, limit: int) -> Sequence[StoredNotification]:
        """As ``read``, as tuples (what replay calls on a store's log)."""
        return [StoredNotification.of(n) for n in self.read(after, limit)]

    def read(self, after: int, limit: int) -> Sequence[Notification]:
        """The events after ``after`` from the next bundle that has any
        (``limit`` is ignored: one bundle at a time bounds memory)."""
        for manifest, path in self.bundles:
            if manifest.last <= after:
                continue
            _, batch = read_bundle(path, self.trusted_keys, self.decrypt_key)
            return [Notification(id=e.notification_id, **vars(from_wire(e)))
                    for e in batch.events if e.notification_id > after]
        return []
