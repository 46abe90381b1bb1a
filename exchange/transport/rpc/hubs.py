"""Several hubs behind one client: the ordered ``[hub] addresses``, the one in use, and failing over.

A client (the node's shipper, a consumer's subscriptions, a command-line
call) uses the current hub until a call to it fails as unreachable
(UNAVAILABLE or DEADLINE_EXCEEDED); then ``fail_over`` moves to the next hub
in the list that answers a gRPC health check SERVING for the Exchange
service, wrapping round, and stays put when none does (the caller backs off
and tries again).  Every hub serves the same store, so the client resumes
from the position the new hub reports, exactly as after a reconnect.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Sequence

import grpc

from exchange.contracts.errors import InvalidInput

log = logging.getLogger(__name__)

EXCHANGE_SERVICE = "exchange.v1.Exchange"
HEALTH_TIMEOUT = 1.0
UNREACHABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)


def addresses(cfg: Any) -> list[str]:
    """The hubs a config names, in order: ``[hub] address`` when set, then ``[hub] addresses``,
    each once.  InvalidInput for an address that is not HOST:PORT; [] when none is named."""
    hub = cfg.hub
    named = ([hub.address] if hub.address else []) + list(getattr(hub, "addresses", None) or [])
    for address in named:
        check_address(address)
    return list(dict.fromkeys(named))


def check_address(address: str) -> None:
    """InvalidInput unless ``address`` is HOST:PORT with a port from 1 to 65535."""
    host, colon, port = address.strip().rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536 or address != address.strip():
        raise InvalidInput(f"hub address {address!r} is not HOST:PORT (e.g. hub1.example.gov.cn:7000)")


def unreachable(error: BaseException) -> bool:
    """True for a gRPC error that says the hub did not answer (not a refusal by a hub that did)."""
    code = error.code() if isinstance(error, grpc.RpcError) and hasattr(error, "code") else None
    return code in UNREACHABLE


class HubList:
    """The ordered hubs of one client and the one it uses now; safe to share between threads."""

    def __init__(self, hubs: Sequence[str], cfg: Any = None, *, client: str = "client",
                 on_change: Callable[[str, str], None] | None = None, health_timeout: float = HEALTH_TIMEOUT):
        if not hubs:
            raise InvalidInput("name the hub: [hub] address = \"HOST:PORT\" or [hub] addresses = [\"HOST:PORT\", ...]")
        self.hubs = list(dict.fromkeys(hubs))
        self.cfg = cfg
        self.client = client
        self.on_change = on_change
        self.health_timeout = health_timeout
        self._index = 0
        self._lock = threading.Lock()

    @property
    def current(self) -> str:
        """The hub in use."""
        return self.hubs[self._index]

    def __str__(self) -> str:
        return ", ".join(self.hubs)

    def fail_over(self, failed: str) -> str | None:
        """The hub ``failed`` did not answer: move to the next one that is SERVING and return it;
        None when no other hub answers (the current one stays).  When another thread moved away
        from ``failed`` already, the hub it moved to is returned."""
        with self._lock:
            if self.current != failed:
                return self.current
            count = len(self.hubs)
            for step in range(1, count):
                candidate = self.hubs[(self._index + step) % count]
                if self._serving(candidate):
                    self._index = (self._index + step) % count
                    log.info("hub %s does not answer: %s moves to hub %s", failed, self.client, candidate,
                                extra={"hub": candidate, "failed": failed, "client": self.client})
                    if self.on_change is not None:
                        self.on_change(failed, candidate)
                    return candidate
            return None

    def first_serving(self) -> str:
        """Make the first SERVING hub of the list current (for one-off calls); the current one when none is."""
        with self._lock:
            for i, candidate in enumerate(self.hubs):
                if len(self.hubs) == 1 or self._serving(candidate):
                    self._index = i
                    break
            return self.current

    def _serving(self, address: str) -> bool:
        from exchange.transport.rpc.health import is_serving
        from exchange.transport.rpc.tls import TLSError

        try:
            return is_serving(address, EXCHANGE_SERVICE, self.health_timeout, cfg=self.cfg)
        except TLSError:
            return False


def with_metrics(hubs: Sequence[str], cfg: Any, client: str) -> HubList:
    """A HubList whose moves are counted in ``exchange_node_hub_failovers_total`` and whose hub in use
    is shown by ``exchange_node_hub_info`` (labelled ``client``)."""
    from exchange.common.metrics import HUB_FAILOVERS, HUB_IN_USE

    def changed(_failed: str, now: str) -> None:
        HUB_FAILOVERS.labels(client).inc()
        HUB_IN_USE.labels(client).info({"address": now})

    listed = HubList(hubs, cfg, client=client, on_change=changed)
    HUB_IN_USE.labels(client).info({"address": listed.current})
    return listed


def check_all(cfg: Any) -> list[str]:
    """The config's hubs (``addresses``), each checked by the channel rules (TLS, or insecure on loopback);
    InvalidInput when none is named, TLSError naming what to fix."""
    from exchange.transport.rpc.channel import check_settings

    named = addresses(cfg)
    if not named:
        raise InvalidInput("name the hub: [hub] address = \"HOST:PORT\" or [hub] addresses = [\"HOST:PORT\", ...]")
    for address in named:
        check_settings(address, cfg)
    return named


def first_channel(cfg: Any) -> tuple[str, grpc.Channel]:
    """For a one-off call: the first of the config's hubs that is SERVING (the first one when none
    answers) and a channel to it (exchange.transport.rpc.channel.open_channel)."""
    from exchange.transport.rpc.channel import open_channel

    address = HubList(check_all(cfg), cfg).first_serving()
    return address, open_channel(address, cfg)
