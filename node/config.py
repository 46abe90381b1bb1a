"""Node settings: the TOML keys, their defaults and what they are for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from exchange.config import Setting, load_config

ENV_PREFIX = "EXCHANGE_NODE"

SETTINGS: dict[str, Setting] = {
    "agency": Setting(str, help="agency id (unified social credit code); names the event log"),
    "source.url": Setting(str, help="business database: sqlite:///agency.db or postgresql://user@host:5432/db"),
    "source.tables": Setting(list, help="tables to capture"),
    "source.keys": Setting(dict, {}, "key columns for tables without a primary key: {table = [cols]}"),
    "source.not_shared": Setting(list, [], "captured tables whose catalog entry is not shared (Art. 8): their events "
                                            "stay in the node's store and are never sent to the hub"),
    "source.identifiers": Setting(dict, {}, 'identifier columns checked at capture: {table = {column = "uscc" | "resident_id"}}'),
    "source.poll_interval": Setting(float, 0.2, "seconds between polls of a quiet source"),
    "source.batch_size": Setting(int, 2000, "changes stored per event-store transaction"),
    "store.url": Setting(str, help="node event store: sqlite:///node-store.db or postgresql://..."),
    "hub.address": Setting(str, help="hub gRPC address host:port"),
    "hub.batch_size": Setting(int, 500, "events per publish batch"),
    "hub.window": Setting(int, 4, "batches in flight before waiting for the hub's answer"),
    "hub.reconnect_max": Setting(float, 10.0, "longest wait between reconnect attempts, seconds"),
    "bundles.key": Setting(str, "", "PEM Ed25519 key signing offline bundles (exchange node keygen creates it)"),
    "metrics.address": Setting(str, "127.0.0.1", "address of the Prometheus /metrics endpoint"),
    "metrics.port": Setting(int, 9464, "port of the /metrics endpoint (0 disables it)"),
    "log.level": Setting(str, "info", "debug, info, warning or error"),
    "log.format": Setting(str, "text", "text or json"),
}


def load(path: str | Path | None, environ=None) -> dict[str, Any]:
    return load_config(path, SETTINGS, ENV_PREFIX, environ)


# ``exchange node subscribe`` / ``exchange node import``: a consumer agency's replica of other agencies'
# resources.  It shares the node's identity, hub connection, metrics and log settings.
CONSUMER_SETTINGS: dict[str, Setting] = {
    **{k: v for k, v in SETTINGS.items() if k.split(".")[0] in ("agency", "hub", "tls", "metrics", "log")},
    "hub.address": Setting(str, "", "hub gRPC address host:port (not needed for exchange node import)"),
    "consumer.replica": Setting(str, help="replica database the received resources are applied to, e.g. sqlite:///replica.db"),
    "consumer.resources": Setting(list, help="resources to receive, each PROVIDER/RESOURCE"),
    "consumer.purpose": Setting(str, "", "what the data is used for, recorded with every delivery (required for "
                                         "unconditional resources; conditional ones record the approved purpose)"),
    "consumer.hub_key": Setting(str, "", "the hub's bundle public key, trusted for exchange node import"),
}


def load_consumer(path: str | Path | None, environ=None) -> dict[str, Any]:
    return load_config(path, CONSUMER_SETTINGS, ENV_PREFIX, environ)
