"""gRPC channels from nodes and command-line clients to the hub."""

from __future__ import annotations

import logging
import tomllib

import grpc

from exchange.common.config import Config, Setting, from_values
from exchange.contracts.errors import InvalidInput
from exchange.transport.rpc import tls

log = logging.getLogger(__name__)

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
]
_warned: set[str] = set()

# What a client of the hub needs from a config: who calls, where the hub is, and how to connect.
CLIENT_SETTINGS: dict[str, Setting] = {
    "agency": Setting(str, "", "the agency calling"),
    "hub.address": Setting(str, "", "hub gRPC address host:port"),
    "hub.addresses": Setting(list, [], "hub gRPC addresses host:port; a call goes to the first that answers"),
    "hub.insecure": Setting(bool, False, "plain gRPC (only to a hub on a loopback address)"),
    "tls.ca": Setting(str, "", "PEM CA certificate the hub's certificate must be issued by"),
    "tls.cert": Setting(str, "", "the client's PEM certificate"),
    "tls.key": Setting(str, "", "the client's PEM private key"),
}


def open_channel(address: str, cfg: Config | None = None) -> grpc.Channel:
    """A channel to the hub at ``address``, secured as the config's ``[tls]`` settings say.

    Mutual TLS when ``[tls] cert`` is set; a plain channel only when
    ``[hub] insecure = true`` and the hub is on a loopback address.
    Raises tls.TLSError naming what to set or fix."""
    check_settings(address, cfg)
    if cfg is not None and cfg.tls.cert:
        return grpc.secure_channel(address, tls.client_credentials(cfg), options=CHANNEL_OPTIONS)
    if address not in _warned:
        _warned.add(address)
        log.warning("connecting to the hub at %s WITHOUT TLS ([hub] insecure = true): for tests on one machine only",
                    address, extra={"hub": address})
    return grpc.insecure_channel(address, options=CHANNEL_OPTIONS)


def check_settings(address: str, cfg: Config | None) -> None:
    """TLSError unless the settings choose exactly one of mutual TLS and an explicitly insecure loopback channel."""
    secure, insecure = (bool(cfg.tls.cert), cfg.hub.insecure) if cfg is not None else (False, False)
    if secure and insecure:
        raise tls.TLSError("[hub] insecure = true and [tls] cert are both set: choose one")
    if not secure and not insecure:
        raise tls.TLSError(f"no [tls] ca, cert and key for the hub at {address}: issue them with "
                           "exchange ca issue --agency ID, or set [hub] insecure = true for a hub on this machine")
    if insecure and not tls.is_loopback(address):
        raise tls.TLSError(f"[hub] insecure = true is refused for {address}: plain connections are only "
                           "allowed to a hub on a loopback address; configure [tls] ca, cert and key")


def client_settings(args) -> Config:
    """``agency``, ``hub.*`` and ``tls.*`` (CLIENT_SETTINGS) from ``--config`` (other settings are ignored),
    then ``--hub`` and ``--insecure``.  InvalidInput names an unreadable file or a missing address;
    ConfigError a value of the wrong type."""
    values: dict = {}
    if args.config:
        try:
            with open(args.config, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise InvalidInput(f"{args.config}: cannot read: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise InvalidInput(f"{args.config}: not valid TOML: {e}") from None
        if isinstance(data.get("agency"), str):
            values["agency"] = data["agency"]
        for section in ("hub", "tls"):
            for key, value in (data.get(section) or {}).items():
                if f"{section}.{key}" in CLIENT_SETTINGS:
                    values[f"{section}.{key}"] = value
    if args.hub:  # HOST:PORT, or several separated by commas: they replace the config's
        listed = [a.strip() for a in args.hub.split(",") if a.strip()]
        values["hub.address"], values["hub.addresses"] = (listed[0] if listed else ""), listed[1:]
    if args.insecure:
        values["hub.insecure"] = True
    cfg = from_values(CLIENT_SETTINGS, values, source=args.config or "command line")
    if not cfg.hub.address and not cfg.hub.addresses:
        raise InvalidInput("name the hub: --hub HOST:PORT, or --config with a [hub] address or addresses "
                           "(several hubs: --hub HOST:PORT,HOST:PORT)")
    return cfg
