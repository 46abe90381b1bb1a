"""``exchange node status``: positions and backlog of a node."""

from __future__ import annotations

import grpc

import adapters
from exchange.common.config import Config
from exchange.store import EventStore
from exchange.store.at_rest import store_cipher
from exchange.transport.rpc.channel import open_channel
from node.positions import HUB_TRACKING, SOURCE_TRACKING
from node.shipper import kept_at_node
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc


def node_status(cfg: Config, hub_timeout: float = 2.0) -> dict:
    """The node's state as a JSON-ready dict.

    ``hub_position`` is asked of the hub when it answers within
    ``hub_timeout`` seconds, else the last acknowledgement the node recorded.
    """
    agency = cfg.agency
    store = EventStore(cfg.store.url, create=False, cipher=store_cipher(cfg))
    try:
        recorder = store.node_recorder(agency)
        latest = recorder.max_notification_id() or 0
        source_position = recorder.position(SOURCE_TRACKING)
        acknowledged = recorder.position(HUB_TRACKING)
        hub_position, hub_reachable = _ask_hub(cfg, agency, hub_timeout)
        if hub_position is None:
            hub_position = acknowledged
        settled = hub_position  # beyond what the hub holds, the node may have settled events it keeps
        if acknowledged > hub_position and kept_at_node(recorder, hub_position, acknowledged,
                                                         frozenset(cfg.source.not_shared)):
            settled = acknowledged
        backlog = recorder.count_after(settled)
    finally:
        store.close()
    source = adapters.open_source(cfg.source.url, cfg.source.tables, cfg.source.keys,
                                  **adapters.source_options(cfg))
    try:
        pending = source.pending(source_position)
    finally:
        source.close()
    return {
        "agency": agency,
        "events_stored": latest,
        "source_position": source_position,
        "source_pending": pending,
        "hub_position": hub_position,
        "hub_reachable": hub_reachable,
        "backlog_events": backlog,
        "caught_up": backlog == 0 and pending == 0,
    }


def _ask_hub(cfg: Config, agency: str, timeout: float) -> tuple[int | None, bool]:
    try:
        with open_channel(cfg.hub.address, cfg) as channel:
            answer = pb_grpc.ExchangeStub(channel).GetPosition(pb.PositionRequest(agency=agency), timeout=timeout)
            return answer.position, True
    except grpc.RpcError:
        return None, False


def render(report: dict) -> str:
    """A readable table of the status report: one setting per line, yes/no for flags."""
    width = max(len(k) for k in report)
    return "\n".join(f"{k.replace('_', ' '):<{width}}  {_text(v)}" for k, v in report.items())


def _text(value) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
