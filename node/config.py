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
