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
    parser.add_argument("--hub", metavar="HOST:PORT", help="hub gRPC address, or several separated by commas: the first SERVING one is used "
                             "(default: [hub] address and addresses of --config)")
    parser.add_argument("--config", help="TOML file whose agency, [hub] and [tls] settings say who calls and how to "
                                         "reach the hub (a node's or consumer's config will do)")
    parser.add_argument("--insecure", action="store_true",
                        help="plain gRPC to a hub on this machine (loopback only; tests and demos)")


@contextmanager
def hub_channel(cfg: Mapping[str, Any]) -> Iterator[Any]:
    """A gRPC channel to the first hub of ``cfg`` that is SERVING ([hub] address, then addresses);
    an error status from the hub inside becomes a HubRefusal."""
    import grpc

    from exchange.transport.rpc.hubs import first_channel

    _, channel = first_channel(cfg)
    with channel:
        try:
            yield channel
        except grpc.RpcError as e:
            raise HubRefusal(f"the hub refused: {e.details()} ({e.code().name})") from None
