"""``exchange share ...``: share requests from the command line (gRPC clients of the hub's Sharing service)."""

from __future__ import annotations

import argparse
import json
import sys

import grpc
from google.protobuf.json_format import MessageToDict

from exchange.transport.rpc.channel import add_hub_arguments, client_settings, open_channel
from exchange.common.config import ConfigError
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``share`` and its actions to the ``exchange`` command."""
    share = commands.add_parser("share", help="request, answer, dispute, decide and revoke data sharing (Arts. 14-15)")
    actions = share.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help)
        add_hub_arguments(parser)
        parser.add_argument("--agency", help="the agency acting (default: agency of --config; with TLS the certificate's)")
        return parser

    request = action("request", "apply for a conditional resource of another agency")
    request.add_argument("--provider", required=True, help="the providing agency")
    request.add_argument("--resource", required=True, help="the provider's resource (table)")
    request.add_argument("--scope", required=True, help="which records are needed")
    request.add_argument("--purpose", required=True, help="what the data is used for")
    request.add_argument("--items", nargs="+", required=True, metavar="ITEM", help="data items (columns) wanted")

    approve = action("approve", "approve a request made to your agency (possibly fewer items, with an expiry)")
    approve.add_argument("request_id")
    approve.add_argument("--items", nargs="+", metavar="ITEM", help="items granted (default: all requested)")
    approve.add_argument("--expires", metavar="ISO-TIME", help="end of the approval")
    approve.add_argument("--note", default="", help="a note to the requester")

    reject = action("reject", "reject a request made to your agency, with reasons")
    reject.add_argument("request_id")
    reject.add_argument("--reasons", required=True)

    dispute = action("dispute", "dispute a rejection, a partial approval or a missed deadline")
    dispute.add_argument("request_id")
    dispute.add_argument("--grounds", required=True)

    decide = action("decide", "the coordinating office decides a dispute (administrators)")
    decide.add_argument("request_id")
    outcome = decide.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--approve", action="store_true", help="approve (all requested items unless --items)")
    outcome.add_argument("--reject", action="store_true", help="reject (needs --reasons)")
    decide.add_argument("--items", nargs="+", metavar="ITEM")
    decide.add_argument("--expires", metavar="ISO-TIME")
    decide.add_argument("--reasons", default="")

    revoke = action("revoke", "revoke an approval: delivery stops at once")
    revoke.add_argument("request_id")
    revoke.add_argument("--reason", required=True)
    revoke.add_argument("--office", action="store_true", help="revoke as the coordinating office (administrators)")

    agreement = action("agreement", "record a signed secrecy agreement with a consumer (secret, commercial, personal data)")
    agreement.add_argument("--consumer", required=True)
    agreement.add_argument("--resource", required=True)
    agreement.add_argument("--reference", required=True, help="the signed agreement's reference")

    listing = action("list", "requests your agency made or must answer")
    listing.add_argument("--status", help="only requests in this status")
    listing.add_argument("--all", action="store_true", help="every agency's requests (administrators)")

    action("report", "per provider: requests answered late, requests overdue, events delivered (administrators)")


def dispatch(args: argparse.Namespace) -> int:
    """Run one ``exchange share`` action; prints the hub's answer as JSON."""
    cfg = _settings(args)
    agency = args.agency or cfg.get("agency", "")
    with open_channel(cfg["hub.address"], cfg) as channel:
        stub = pb_grpc.SharingStub(channel)
        try:
            answer = _call(stub, args, agency)
        except grpc.RpcError as e:
            print(f"exchange: the hub refused: {e.details()} ({e.code().name})", file=sys.stderr)
            return 1
    print(json.dumps(MessageToDict(answer, always_print_fields_with_no_presence=True, preserving_proto_field_name=True), ensure_ascii=False))
    return 0


def _call(stub: pb_grpc.SharingStub, args: argparse.Namespace, agency: str):
    a = args.action
    if a == "request":
        return stub.Request(pb.ShareRequestCreate(agency=agency, provider=args.provider, resource=args.resource,
                                                  scope=args.scope, purpose=args.purpose, items=args.items))
    if a == "approve":
        return stub.Answer(pb.ShareAnswer(agency=agency, request_id=args.request_id, approve=True,
                                          items=args.items or [], expires=args.expires or "", reasons=args.note))
    if a == "reject":
        return stub.Answer(pb.ShareAnswer(agency=agency, request_id=args.request_id, approve=False,
                                          reasons=args.reasons))
    if a == "dispute":
        return stub.Dispute(pb.ShareDispute(agency=agency, request_id=args.request_id, grounds=args.grounds))
    if a == "decide":
        return stub.Decide(pb.ShareAnswer(request_id=args.request_id, approve=args.approve, items=args.items or [],
                                          expires=args.expires or "", reasons=args.reasons))
    if a == "revoke":
        return stub.Revoke(pb.ShareRevoke(agency="" if args.office else agency, request_id=args.request_id,
                                          reason=args.reason))
    if a == "agreement":
        return stub.RecordAgreement(pb.SecrecyAgreement(agency=agency, consumer=args.consumer, resource=args.resource,
                                                        reference=args.reference))
    if a == "list":
        return stub.List(pb.ShareListRequest(agency="" if args.all else agency, status=args.status or ""))
    if a == "report":
        return stub.Report(pb.ShareReportRequest())
    raise AssertionError(a)


def _settings(args: argparse.Namespace) -> dict:
    """Identity, hub address and TLS settings from a node or consumer config (either works) and the flags."""
    cfg = client_settings(args)
    if args.action not in ("decide", "report") and not (args.agency or cfg.get("agency")) and \
            not (args.action in ("list", "revoke") and (getattr(args, "all", False) or getattr(args, "office", False))):
        raise ConfigError("name the agency acting: --agency ID or a --config with agency")
    return cfg
