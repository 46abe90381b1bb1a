"""How command-line clients reach the hub: the ``--hub``, ``--config`` and ``--insecure`` options and a channel
(``client_settings`` in exchange.transport.rpc.channel reads them)."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any, Iterator, Mapping

from exchange.contracts.errors import OperationFailed


class HubRefusal(OperationFailed):
    """The hub answered a command-line call with an error; the message has its details and status code."""


def add_hub_arguments(parser: argparse.ArgumentParser) -> None:
    """``--hub``, ``--config`` and ``--insecure``: how a command-line client reaches the hub."""
    parser.add_argument("--hub", metavar="HOST:PORT", help="hub gRPC address (default: [hub] address of --config)")
    parser.add_argument("--config", help="TOML file whose agency, [hub] and [tls] settings say who calls and how to "
                                         "reach the hub (a node's or consumer's config will do)")
    parser.add_argument("--insecure", action="store_true",
                        help="plain gRPC to a hub on this machine (loopback only; tests and demos)")


@contextmanager
def hub_channel(cfg: Mapping[str, Any]) -> Iterator[Any]:
    """A gRPC channel to ``cfg.hub.address``; an error status from the hub inside becomes a HubRefusal."""
    import grpc

    from exchange.transport.rpc.channel import open_channel

    with open_channel(cfg.hub.address, cfg) as channel:
        try:
            yield channel
        except grpc.RpcError as e:
            raise HubRefusal(f"the hub refused: {e.details()} ({e.code().name})") from None
