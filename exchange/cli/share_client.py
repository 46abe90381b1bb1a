"""The gRPC calls behind ``exchange share ...``: one request to the hub's Sharing service per action."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from exchange.cli import share_query
from exchange.cli.output import message_json, print_json
from exchange.cli.remote import hub_channel
from exchange.common.config import Config, ConfigError
from exchange.transport.rpc.channel import client_settings
from protos.exchange.v1 import query_pb2 as query_pb
from protos.exchange.v1 import query_pb2_grpc as query_grpc
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc


def call(args: argparse.Namespace) -> int:
    """Run one ``exchange share`` action; prints the hub's answer as JSON."""
    cfg = _settings(args)
    agency = args.agency or cfg.agency
    with hub_channel(cfg) as channel:
        answer = CALLS[args.action](Stubs(channel), args, agency)
        if isinstance(answer, query_pb.QueryPage) and cfg.tls.key:
            _acknowledge(channel, cfg, args, agency, answer)
    print_json(share_query.page_json(answer) if isinstance(answer, query_pb.QueryPage) else message_json(answer))
    for waiting in getattr(answer, "waiting_for", ()):
        print(f"exchange: approved; delivery waits for {waiting}", file=sys.stderr)
    return 0


def _acknowledge(channel: Any, cfg: Config, args: argparse.Namespace, agency: str, page: Any) -> None:
    """Sign a receipt for a query's answer with the caller's certificate key, as consumers do for
    stream batches and bundles (consumer/receipts.py)."""
    from consumer.receipts import Receipts

    asked = share_query.request(args, agency)
    receipts = Receipts(agency, page.purpose, cfg.tls.key)
    receipts.send(channel, "query", asked.provider, asked.resource, page.position, page.position,
                  [row.SerializeToString(deterministic=True) for row in page.rows], len(page.rows))


def _settings(args: argparse.Namespace) -> Config:
    """Identity, hub address and TLS settings from a node or consumer config (either works) and the flags."""
    cfg = client_settings(args)
    if args.action not in ("decide", "report") and not (args.agency or cfg.agency) and \
            not (args.action in ("list", "revoke") and (getattr(args, "all", False) or getattr(args, "office", False))):
        raise ConfigError("name the agency acting: --agency ID or a --config with agency")
    return cfg


class Stubs:
    """The hub services ``exchange share`` calls, over one channel."""

    def __init__(self, channel: Any):
        self.sharing = pb_grpc.SharingStub(channel)
        self.query = query_grpc.QueryStub(channel)


Call = Callable[[Stubs, argparse.Namespace, str], Any]

# Each action's request; ``agency`` is the agency acting (from --agency or the config).
CALLS: dict[str, Call] = {
    "request": lambda stubs, args, agency: stubs.sharing.Request(pb.ShareRequestCreate(
        agency=agency, provider=args.provider, resource=args.resource, scope=args.scope, purpose=args.purpose,
        items=args.items, rows=args.rows)),
    "approve": lambda stubs, args, agency: stubs.sharing.Answer(pb.ShareAnswer(
        agency=agency, request_id=args.request_id, approve=True, items=args.items or [], expires=args.expires or "",
        reasons=args.note, rows=args.rows)),
    "reject": lambda stubs, args, agency: stubs.sharing.Answer(pb.ShareAnswer(
        agency=agency, request_id=args.request_id, approve=False, reasons=args.reasons)),
    "dispute": lambda stubs, args, agency: stubs.sharing.Dispute(pb.ShareDispute(
        agency=agency, request_id=args.request_id, grounds=args.grounds)),
    "decide": lambda stubs, args, agency: stubs.sharing.Decide(pb.ShareAnswer(
        request_id=args.request_id, approve=args.approve, items=args.items or [], expires=args.expires or "",
        reasons=args.reasons, rows=args.rows)),
    "revoke": lambda stubs, args, agency: stubs.sharing.Revoke(pb.ShareRevoke(
        agency="" if args.office else agency, request_id=args.request_id, reason=args.reason)),
    "agreement": lambda stubs, args, agency: stubs.sharing.RecordAgreement(pb.SecrecyAgreement(
        agency=agency, consumer=args.consumer, resource=args.resource, reference=args.reference)),
    "list": lambda stubs, args, agency: stubs.sharing.List(pb.ShareListRequest(
        agency="" if args.all else agency, status=args.status or "")),
    "report": lambda stubs, args, agency: stubs.sharing.Report(pb.ShareReportRequest(at=args.at or "")),
    "query": lambda stubs, args, agency: stubs.query.Find(share_query.request(args, agency)),
}
