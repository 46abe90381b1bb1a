"""Hub settings: the TOML keys, their defaults and what they are for."""

from __future__ import annotations

from pathlib import Path

from exchange.common.config import Config, ConfigError, Setting, load_config
from exchange.common.logs import LOG_FORMATS, LOG_LEVELS
from exchange.contracts.agency import InvalidAgency, check_agency

ENV_PREFIX = "EXCHANGE_HUB"

SETTINGS: dict[str, Setting] = {
    "store.url": Setting(str, help="hub event store, e.g. sqlite:///hub-store.db"),
    "store.cipher_key_file": Setting(str, "", "file holding the key that encrypts event state at rest "
                                     "(exchange store keygen; empty: not encrypted)"),
    "store.cipher_key": Setting(str, "", "the same key as base64 text, for the environment; never logged"),
    "store.batch_bytes": Setting(int, 8 * 1024 * 1024, "bytes of events stored per event-store transaction when "
                                 "ingesting, about (a larger published batch spans several; one larger event is "
                                 "stored alone)", minimum=1024),
    "listen.address": Setting(str, "127.0.0.1:50051", "gRPC listen address host:port"),
    "listen.max_batch": Setting(int, 1000, "largest batch a subscriber is sent", minimum=1),
    "listen.insecure": Setting(bool, False, "serve without TLS: every caller trusted; refused unless the address is loopback"),
    "listen.max_message_bytes": Setting(int, 64 * 1024 * 1024, "largest gRPC message accepted; larger ones get "
                                         "RESOURCE_EXHAUSTED", minimum=1024, maximum=2**31 - 1),  # gRPC takes an int32
    "listen.max_streams": Setting(int, 512, "calls served at once: every connected node's publish stream and every "
                                  "subscription holds one (and a thread); beyond it callers get RESOURCE_EXHAUSTED",
                                  minimum=4, maximum=100_000),
    "tls.ca": Setting(str, "", "PEM CA certificate(s) that client certificates must be issued by"),
    "tls.cert": Setting(str, "", "the hub's PEM certificate (exchange ca issue --hub)"),
    "tls.key": Setting(str, "", "the hub's PEM private key"),
    "tls.crl": Setting(str, "", "PEM certificate revocation list, re-read when it changes (exchange ca revoke)"),
    "security.administrators": Setting(list, [], "certificate names (exchange ca issue --admin NAME) allowed administrative calls"),
    "bundles.trusted_keys": Setting(dict, {}, "public key file trusted for each agency's bundles: {AGENCY = PATH}"),
    "bundles.decrypt_key": Setting(str, "", "the hub's X25519 key that decrypts bundles encrypted to it "
                                            "(exchange hub keygen creates it and <name>.pub)"),
    "bundles.ack_key": Setting(str, "", "Ed25519 key signing what the hub writes for others: acknowledgements and the bundles "
                                        "it exports for consumers (exchange hub keygen; hub.pub beside it)"),
    "inbox.path": Setting(str, "", "directory the hub watches for offline bundles (empty: no inbox)"),
    "inbox.rescan_interval": Setting(float, 30.0, "seconds between full rescans of the inbox", above=0),
    "sftp_inbox.host": Setting(str, "", "SFTP server the hub polls for offline bundles (empty: no SFTP inbox)"),
    "sftp_inbox.port": Setting(int, 22, "SFTP server port", minimum=1, maximum=65535),
    "sftp_inbox.user": Setting(str, "", "SFTP user name"),
    "sftp_inbox.key": Setting(str, "", "private key file the hub logs in with (no passwords)"),
    "sftp_inbox.known_hosts": Setting(str, "", "known_hosts file holding the SFTP server's host key"),
    "sftp_inbox.remote_dir": Setting(str, "", "directory on the server that nodes upload bundles to"),
    "sftp_inbox.local_dir": Setting(str, "", "local directory bundles are downloaded to and imported from"),
    "sftp_inbox.poll_interval": Setting(float, 30.0, "seconds between polls of the SFTP server", above=0),
    "audit.path": Setting(str, "", "audit log file (default: audit.log beside a SQLite store; required otherwise)"),
    "audit.peers": Setting(list, [], "the audit logs of the other hubs serving the same store (read only, e.g. "
                           "a shared mount): each hub writes its own chain; a decision audited in any of them counts "
                           "as audited, and exchange audit verify --config checks them all"),
    "audit.verify_interval": Setting(float, 300.0, "seconds between checks of the audit log's hash chain", above=0),
    "watchdog.stall_seconds": Setting(float, 120.0, "seconds an ingest step may make no progress before it is "
                                      "logged and counted as stalled", above=0),
    "watchdog.stop_seconds": Setting(float, 30.0, "seconds the hub waits for its workers after SIGTERM before it "
                                     "exits regardless", above=0),
    "metrics.address": Setting(str, "127.0.0.1", "address of the Prometheus /metrics endpoint"),
    "metrics.port": Setting(int, 9465, "port of the /metrics endpoint (0 disables it)", minimum=0, maximum=65535),
    "log.level": Setting(str, "info", "debug, info, warning or error", choices=LOG_LEVELS),
    "log.format": Setting(str, "text", "text or json", choices=LOG_FORMATS),
    "calendar.holidays": Setting(list, [], "ISO dates off work that the working-day calendar does not know yet"),
    "calendar.workdays": Setting(list, [], "ISO dates of make-up working days the working-day calendar does not know yet"),
    "catalog.dcat_base": Setting(str, "urn:exchange:catalog:", "IRI prefix of the catalog and its datasets in the DCAT export"),
    "evaluation.interval": Setting(float, 0.0, "seconds between scheduled Art. 22 evaluations (0: none; see also at)",
                                   minimum=0),
    "evaluation.at": Setting(str, "", "daily time HH:MM (Shanghai time) of a scheduled evaluation (empty: none)"),
    "evaluation.directory": Setting(str, "", "directory the scheduled evaluations are written to (JSON, CSV, summary)"),
    "upstream.address": Setting(str, "", "the city hub's gRPC address host:port this hub forwards its agencies' logs "
                                "to, as a node does (empty: forwards nothing; docs/scaling.md, Federation)"),
    "upstream.addresses": Setting(list, [], "several city hubs serving one store, in order of preference; with "
                                  "upstream.address too, that one comes first"),
    "upstream.agencies": Setting(list, [], "the agencies whose logs are forwarded (empty: every agency of the store, "
                                 "those appearing later too)"),
    "upstream.insecure": Setting(bool, False, "plain gRPC to the city hub (only to a loopback address)"),
    "upstream.ca": Setting(str, "", "PEM CA certificate the city hub's certificate must be issued by"),
    "upstream.cert": Setting(str, "", "this hub's PEM certificate presented to the city hub (exchange ca issue --hub)"),
    "upstream.key": Setting(str, "", "this hub's PEM private key for the city hub"),
    "upstream.batch_size": Setting(int, 500, "events per forwarded batch", minimum=1),
    "upstream.batch_bytes": Setting(int, 4 * 1024 * 1024, "bytes of events per forwarded batch, at most (one larger "
                                    "event goes alone)", minimum=1024),
    "upstream.window": Setting(int, 4, "batches in flight per agency before waiting for the city hub", minimum=1),
    "upstream.reconnect_max": Setting(float, 10.0, "longest wait between reconnects to the city hub, seconds", above=0),
    "federation.downstream": Setting(dict, {}, "district hubs allowed to publish agencies' logs here: "
                                     "{HUB_NAME = [AGENCY, ...]}, HUB_NAME the CN of the district hub's certificate "
                                     "(exchange ca issue --hub HUB_NAME)"),
}


def load(path: str | Path | None, environ=None) -> Config:
    """The hub's settings from ``path`` and the environment; ConfigError names a bad federation setting."""
    cfg = load_config(path, SETTINGS, ENV_PREFIX, environ)
    downstream_hubs(cfg, path)
    for agency in cfg.upstream.agencies:
        _agency(agency, path, "[upstream] agencies")
    if cfg.upstream.agencies and not (cfg.upstream.address or cfg.upstream.addresses):
        raise ConfigError(f"{path or 'environment'}: [upstream] agencies is set, but neither [upstream] address "
                          "nor addresses names the city hub to forward them to")
    return cfg


def downstream_hubs(cfg: Config, path: str | Path | None = None) -> dict[str, frozenset[str]]:
    """``[federation] downstream``: the agencies each district hub (its certificate's name) may publish."""
    allowed: dict[str, frozenset[str]] = {}
    for hub, agencies in cfg.federation.downstream.items():
        if not isinstance(agencies, list) or not all(isinstance(a, str) for a in agencies):
            raise ConfigError(f"{path or 'environment'}: [federation] downstream.{hub}: expected a list of agency "
                              f"ids, got {agencies!r}")
        allowed[hub] = frozenset(_agency(a, path, f"[federation] downstream.{hub}") for a in agencies)
    return allowed


def _agency(agency: str, path: str | Path | None, setting: str) -> str:
    try:
        return check_agency(agency)
    except InvalidAgency as e:
        raise ConfigError(f"{path or 'environment'}: {setting}: {e}") from None
