"""Hub settings: the TOML keys, their defaults and what they are for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.config import Setting, load_config

ENV_PREFIX = "EXCHANGE_HUB"

SETTINGS: dict[str, Setting] = {
    "store.url": Setting(str, help="hub event store, e.g. sqlite:///hub-store.db"),
    "listen.address": Setting(str, "127.0.0.1:50051", "gRPC listen address host:port"),
    "listen.max_batch": Setting(int, 1000, "largest batch a subscriber is sent"),
    "bundles.trusted_keys": Setting(dict, {}, "public key file trusted for each agency's bundles: {AGENCY = PATH}"),
    "bundles.ack_key": Setting(str, "", "Ed25519 key signing what the hub writes for others: the bundles it exports for "
                                        "consumers (exchange hub keygen creates it and hub.pub beside it)"),
    "inbox.path": Setting(str, "", "directory the hub watches for offline bundles (empty: no inbox)"),
    "inbox.rescan_interval": Setting(float, 30.0, "seconds between full rescans of the inbox"),
    "metrics.address": Setting(str, "127.0.0.1", "address of the Prometheus /metrics endpoint"),
    "metrics.port": Setting(int, 9465, "port of the /metrics endpoint (0 disables it)"),
    "log.level": Setting(str, "info", "debug, info, warning or error"),
    "log.format": Setting(str, "text", "text or json"),
    "calendar.holidays": Setting(list, [], "ISO dates off work that the working-day calendar does not know yet"),
    "calendar.workdays": Setting(list, [], "ISO dates of make-up working days the working-day calendar does not know yet"),
    "security.administrators": Setting(list, [], "certificate identities allowed to review and publish catalog entries"),
    "catalog.dcat_base": Setting(str, "urn:exchange:catalog:", "IRI prefix of the catalog and its datasets in the DCAT export"),
}


def load(path: str | Path | None, environ=None) -> dict[str, Any]:
    return load_config(path, SETTINGS, ENV_PREFIX, environ)
