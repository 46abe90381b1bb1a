"""The gRPC calls behind ``exchange share ...``: one request to the hub's Sharing service per action."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from exchange.cli.output import message_json, print_json
from exchange.cli.remote import hub_channel
from exchange.common.config import Config, ConfigError
from exchange.transport.rpc.channel import client_settings
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc


def call(args: argparse.Namespace) -> int:
    """Run one ``exchange share`` action; prints the hub's answer as JSON."""
    cfg = _settings(args)
    agency = args.agency or cfg.agency
    if args.action == "query":
        from exchange.cli import share_query

        request = share_query.request(args, agency)
        with hub_channel(cfg) as channel:
            print_json(share_query.page_json(share_query.find(channel, request)))
        return 0
    with hub_channel(cfg) as channel:
        answer = CALLS[args.action](pb_grpc.SharingStub(channel), args, agency)
    print_json(message_json(answer))
    for waiting in getattr(answer, "waiting_for", ()):
        print(f"exchange: approved; delivery waits for {waiting}", file=sys.stderr)
    return 0


def _settings(args: argparse.Namespace) -> Config:
    """Identity, hub address and TLS settings from a node or consumer config (either works) and the flags."""
    cfg = client_settings(args)
    if args.action not in ("decide", "report") and not (args.agency or cfg.agency) and \
            not (args.action in ("list", "revoke") and (getattr(args, "all", False) or getattr(args, "office", False))):
        raise ConfigError("name the agency acting: --agency ID or a --config with agency")
    return cfg


Call = Callable[[pb_grpc.SharingStub, argparse.Namespace, str], Any]

# Each action's request; ``agency`` is the agency acting (from --agency or the config).
CALLS: dict[str, Call] = {
    "request": lambda stub, args, agency: stub.Request(pb.ShareRequestCreate(
        agency=agency, provider=args.provider, resource=args.resource, scope=args.scope, purpose=args.purpose,
        items=args.items, rows=args.rows)),
    "approve": lambda stub, args, agency: stub.Answer(pb.ShareAnswer(
        agency=agency, request_id=args.request_id, approve=True, items=args.items or [], expires=args.expires or "",
        reasons=args.note, rows=args.rows)),
    "reject": lambda stub, args, agency: stub.Answer(pb.ShareAnswer(
        agency=agency, request_id=args.request_id, approve=False, reasons=args.reasons)),
    "dispute": lambda stub, args, agency: stub.Dispute(pb.ShareDispute(
        agency=agency, request_id=args.request_id, grounds=args.grounds)),
    "decide": lambda stub, args, agency: stub.Decide(pb.ShareAnswer(
        request_id=args.request_id, approve=args.approve, items=args.items or [], expires=args.expires or "",
        reasons=args.reasons, rows=args.rows)),
    "revoke": lambda stub, args, agency: stub.Revoke(pb.ShareRevoke(
        agency="" if args.office else agency, request_id=args.request_id, reason=args.reason)),
    "agreement": lambda stub, args, agency: stub.RecordAgreement(pb.SecrecyAgreement(
        agency=agency, consumer=args.consumer, resource=args.resource, reference=args.reference)),
    "list": lambda stub, args, agency: stub.List(pb.ShareListRequest(
        agency="" if args.all else agency, status=args.status or "")),
    "report": lambda stub, args, agency: stub.Report(pb.ShareReportRequest(at=args.at or "")),
}
