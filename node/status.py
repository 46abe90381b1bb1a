"""``exchange node status``: positions and backlog of a node."""

from __future__ import annotations

import urllib.request
from datetime import datetime, timezone

import grpc
from prometheus_client.parser import text_string_to_metric_families

import adapters
from exchange.common.config import Config
from exchange.store import EventStore
from exchange.store.at_rest import store_cipher
from exchange.transport.rpc.hubs import first_channel
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
        **capture_state(cfg),
    }


def capture_state(cfg: Config, timeout: float = 2.0) -> dict:
    """Whether the running node's capture runs, or why and since when it stopped, and its
    stalled steps, read from its /metrics endpoint (``capture_running`` None: no answer)."""
    url = f"http://{cfg.metrics.address}:{cfg.metrics.port}/metrics"
    state: dict = {"capture_running": None, "capture_stopped_reason": None, "capture_stopped_since": None,
                   "stalled_steps": []}
    if not cfg.metrics.port:
        return state
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read().decode()
    except (OSError, ValueError):
        return state
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "exchange_node_capture_up":
                state["capture_running"] = sample.value == 1
            elif sample.name == "exchange_node_capture_stopped_info" and sample.value == 1:
                state["capture_stopped_reason"] = sample.labels["reason"]
            elif sample.name == "exchange_node_capture_down_since_timestamp_seconds" and sample.value:
                state["capture_stopped_since"] = datetime.fromtimestamp(sample.value, timezone.utc).isoformat(
                    timespec="seconds")
            elif sample.name == "exchange_node_stalled_step_seconds":
                state["stalled_steps"].append({**sample.labels, "seconds": sample.value})
    if state["capture_running"]:
        del state["capture_stopped_reason"], state["capture_stopped_since"]
    return state


def _ask_hub(cfg: Config, agency: str, timeout: float) -> tuple[int | None, bool]:
    try:
        _, channel = first_channel(cfg)
        with channel:
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
    if value is None:
        return "unknown"
    if isinstance(value, list):
        return "; ".join(f"{s['step']} for {s['seconds']:.0f} s, waiting on {s['waiting_on']}" for s in value) or "none"
    return str(value)
