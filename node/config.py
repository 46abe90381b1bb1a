"""Node settings: the TOML keys, their defaults and what they are for."""

from __future__ import annotations

from pathlib import Path

from exchange.common.config import Config, Setting, load_config
from exchange.common.logs import LOG_FORMATS, LOG_LEVELS

ENV_PREFIX = "EXCHANGE_NODE"

SETTINGS: dict[str, Setting] = {
    "agency": Setting(str, help="agency id (unified social credit code); names the event log"),
    "source.url": Setting(str, help="business database: sqlite:///agency.db, postgresql://user@host:5432/db, "
                          "mysql://user@host:3306/db (MariaDB, MySQL), or a drop directory files:///srv/drops"),
    "source.tables": Setting(list, help="tables to capture: names, or (PostgreSQL, MariaDB/MySQL) patterns such as "
                             "public.* or sales.order_* that also select tables created later"),
    "source.exclude": Setting(list, [], "PostgreSQL, MariaDB/MySQL: tables or patterns never captured, even when [source] tables "
                              "selects them"),
    "source.keys": Setting(dict, {}, "key columns for tables without a primary key: {table = [cols]} "
                          "(MariaDB/MySQL: [] keys rows by all their columns, identical rows counted as copies)"),
    "source.not_shared": Setting(list, [], "captured tables whose catalog entry is not shared (Art. 8): their events "
                                            "stay in the node's store and are never sent to the hub"),
    "source.identifiers": Setting(dict, {}, 'identifier columns checked at capture: {table = {column = "uscc" | "resident_id"}}'),
    "source.poll_interval": Setting(float, 0.2, "seconds between polls of a quiet source", above=0),
    "source.batch_size": Setting(int, 2000, "changes stored per event-store transaction", minimum=1),
    "source.snapshot_batch_size": Setting(int, 10000, "snapshot rows stored per event-store transaction at most "
                                          "(read batch_size at a time, within batch_bytes)", minimum=1),
    "source.batch_bytes": Setting(int, 8 * 1024 * 1024, "bytes of row images stored per event-store transaction, "
                                  "about (a larger source transaction spans several; one larger change is stored "
                                  "alone)", minimum=1024),
    "source.settle_seconds": Setting(float, 5.0, "file drops: seconds a file's size and mtime must stay unchanged "
                                     "before it is read", minimum=0),
    "source.state_path": Setting(str, "", "file drops: the adapter's state database "
                                 "(default: .exchange/state.db in the drop directory)"),
    "source.server_id": Setting(int, 0, "MariaDB/MySQL: the server_id the node's binlog reader registers with "
                                "(0: derived from the database and address); must differ from the server's and "
                                "every replica's", minimum=0, maximum=4294967295),
    "store.url": Setting(str, help="node event store: sqlite:///node-store.db or postgresql://..."),
    "store.cipher_key_file": Setting(str, "", "file holding the key that encrypts event state at rest "
                                     "(exchange store keygen; empty: not encrypted)"),
    "store.cipher_key": Setting(str, "", "the same key as base64 text, for the environment; never logged"),
    "hub.address": Setting(str, "", "hub gRPC address host:port (one hub; or use [hub] addresses)"),
    "hub.addresses": Setting(list, [], "hub gRPC addresses host:port, in order of preference: hubs serving one "
                             "store; the node moves to the next that answers when the one in use does not "
                             "(with [hub] address too, that one comes first)"),
    "hub.batch_size": Setting(int, 500, "events per publish batch", minimum=1),
    "hub.batch_bytes": Setting(int, 4 * 1024 * 1024, "bytes of events per publish batch, at most (one larger "
                               "event goes alone); keep it below the hub's [listen] max_message_bytes",
                               minimum=1024),
    "hub.window": Setting(int, 4, "batches in flight before waiting for the hub's answer", minimum=1),
    "hub.reconnect_max": Setting(float, 10.0, "longest wait between reconnect attempts, seconds", above=0),
    "hub.insecure": Setting(bool, False, "connect without TLS (only to a hub on a loopback address)"),
    "tls.ca": Setting(str, "", "PEM CA certificate the hub's certificate must be issued by"),
    "tls.cert": Setting(str, "", "the node's PEM certificate (exchange ca issue --agency)"),
    "tls.key": Setting(str, "", "the node's PEM private key"),
    "bundles.key": Setting(str, "", "PEM Ed25519 key signing offline bundles (exchange node keygen creates it)"),
    "bundles.encrypt_to": Setting(str, "", "the hub's X25519 public key file: encrypt bundle content to the hub "
                                           "(empty: not encrypted)"),
    "policy.exclude": Setting(dict, {}, "columns that never leave the node: {table = [columns]}"),
    "policy.mask": Setting(dict, {}, "columns replaced by a keyed hash before they leave the node: "
                                     "{table = {column = \"hmac\"}}"),
    "policy.mask_key_file": Setting(str, "", "base64 key of the masking HMAC (exchange store keygen); "
                                             "required with [policy] mask"),
    "bundles.hub_key": Setting(str, "", "hub's public key; acknowledgements must be signed with it (empty: unsigned accepted)"),
    "offline.mode": Setting(str, "off", "ship bundles over SFTP: auto (when the hub is unreachable), always or off",
                            choices=("auto", "always", "off")),
    "offline.fallback_after": Setting(float, 60.0, "seconds the hub must be unreachable before auto mode falls back",
                                      minimum=0),
    "offline.outbox": Setting(str, "", "directory keeping the node's bundles until the hub acknowledges them"),
    "offline.interval": Setting(float, 10.0, "seconds between fallback rounds (read the ack, export, upload)", above=0),
    "offline.max_events": Setting(int, 10000, "events per bundle in fallback", minimum=1),
    "sftp.host": Setting(str, "", "SFTP server the node uploads bundles to"),
    "sftp.port": Setting(int, 22, "SFTP server port", minimum=1, maximum=65535),
    "sftp.user": Setting(str, "", "SFTP user name"),
    "sftp.key": Setting(str, "", "private key file the node logs in with (no passwords)"),
    "sftp.known_hosts": Setting(str, "", "known_hosts file holding the SFTP server's host key"),
    "sftp.remote_dir": Setting(str, "", "directory on the server the hub polls for bundles"),
    "sftp.accept_unknown_host": Setting(bool, False, "trust and record an unknown host key on first connect"),
    "sftp.max_rate": Setting(int, 0, "upload bytes per second (0: no limit)", minimum=0),
    "watchdog.stall_seconds": Setting(float, 120.0, "seconds a capture, store or ship step may make no progress "
                                      "before it is logged and counted as stalled", above=0),
    "metrics.address": Setting(str, "127.0.0.1", "address of the Prometheus /metrics endpoint"),
    "metrics.port": Setting(int, 9464, "port of the /metrics endpoint (0 disables it)", minimum=0, maximum=65535),
    "log.level": Setting(str, "info", "debug, info, warning or error", choices=LOG_LEVELS),
    "log.format": Setting(str, "text", "text or json", choices=LOG_FORMATS),
}


def load(path: str | Path | None, environ=None) -> Config:
    """The node's settings from ``path`` and the environment."""
    return load_config(path, SETTINGS, ENV_PREFIX, environ)


# ``exchange node subscribe`` / ``exchange node import``: a consumer agency's replica of other agencies'
# resources.  It shares the node's identity, hub connection, metrics and log settings.
CONSUMER_SETTINGS: dict[str, Setting] = {
    **{k: v for k, v in SETTINGS.items() if k.split(".")[0] in ("agency", "hub", "tls", "metrics", "log")},
    "hub.address": Setting(str, "", "hub gRPC address host:port (not needed for exchange node import)"),
    "hub.addresses": Setting(list, [], "hub gRPC addresses host:port, in order of preference (hubs serving one "
                             "store; the consumer moves to the next that answers when the one in use does not)"),
    "consumer.replica": Setting(str, help="replica database the received resources are applied to, e.g. sqlite:///replica.db"),
    "consumer.resources": Setting(list, help="resources to receive, each PROVIDER/RESOURCE"),
    "consumer.purpose": Setting(str, "", "what the data is used for, recorded with every delivery (required for "
                                         "unconditional resources; conditional ones record the approved purpose)"),
    "consumer.hub_key": Setting(str, "", "the hub's bundle public key, trusted for exchange node import"),
}


def load_consumer(path: str | Path | None, environ=None) -> Config:
    """A consumer's settings from ``path`` and the environment."""
    return load_config(path, CONSUMER_SETTINGS, ENV_PREFIX, environ)
