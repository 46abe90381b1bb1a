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
    "listen.insecure": Setting(bool, False, "serve without TLS: every caller trusted; refused unless the address is loopback"),
    "listen.max_message_bytes": Setting(int, 64 * 1024 * 1024, "largest gRPC message accepted; larger ones get RESOURCE_EXHAUSTED"),
    "tls.ca": Setting(str, "", "PEM CA certificate(s) that client certificates must be issued by"),
    "tls.cert": Setting(str, "", "the hub's PEM certificate (exchange ca issue --hub)"),
    "tls.key": Setting(str, "", "the hub's PEM private key"),
    "tls.crl": Setting(str, "", "PEM certificate revocation list, re-read when it changes (exchange ca revoke)"),
    "security.administrators": Setting(list, [], "certificate names (exchange ca issue --admin NAME) allowed administrative calls"),
    "bundles.trusted_keys": Setting(dict, {}, "public key file trusted for each agency's bundles: {AGENCY = PATH}"),
    "inbox.path": Setting(str, "", "directory the hub watches for offline bundles (empty: no inbox)"),
    "inbox.rescan_interval": Setting(float, 30.0, "seconds between full rescans of the inbox"),
    "metrics.address": Setting(str, "127.0.0.1", "address of the Prometheus /metrics endpoint"),
    "metrics.port": Setting(int, 9465, "port of the /metrics endpoint (0 disables it)"),
    "log.level": Setting(str, "info", "debug, info, warning or error"),
    "log.format": Setting(str, "text", "text or json"),
}


def load(path: str | Path | None, environ=None) -> dict[str, Any]:
    return load_config(path, SETTINGS, ENV_PREFIX, environ)
