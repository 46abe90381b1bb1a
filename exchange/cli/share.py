"""``exchange share ...``: request, answer, dispute, decide and revoke data sharing (Arts. 14-15), and query
what is shared (Art. 16)."""

from __future__ import annotations

import argparse

from exchange.cli.remote import add_hub_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``share`` and its actions to the ``exchange`` command."""
    share = commands.add_parser("share", help="request, answer, dispute, decide and revoke data sharing (Arts. 14-15)")
    actions = share.add_subparsers(dest="action", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        parser = actions.add_parser(name, help=help)
        add_hub_arguments(parser)
        parser.add_argument("--agency", help="the agency acting (default: agency of --config; with TLS the certificate's)")
        parser.set_defaults(handler=_call_hub)
        return parser

    request = action("request", "apply for a conditional resource of another agency")
    request.add_argument("--provider", required=True, help="the providing agency")
    request.add_argument("--resource", required=True, help="the provider's resource (table)")
    request.add_argument("--scope", required=True, help="which records are needed")
    request.add_argument("--purpose", required=True, help="what the data is used for")
    request.add_argument("--items", nargs="+", required=True, metavar="ITEM", help="data items (columns) wanted")
    request.add_argument("--rows", default="", metavar="FILTER",
                         help="row filter over the items wanted, e.g. \"district IN ('静安区')\" (docs/sharing.md)")

    approve = action("approve", "approve a request made to your agency (possibly fewer items, with an expiry)")
    approve.add_argument("request_id")
    approve.add_argument("--items", nargs="+", metavar="ITEM", help="items granted (default: all requested)")
    approve.add_argument("--expires", metavar="ISO-TIME", help="end of the approval")
    approve.add_argument("--note", default="", help="a note to the requester")
    approve.add_argument("--rows", "--scope", dest="rows", default="", metavar="FILTER",
                         help="narrow the rows: the approved filter is the request's AND this one")

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
    decide.add_argument("--rows", default="", metavar="FILTER", help="approve: narrow the rows (ANDed with the request's)")

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

    report = action("report", "per provider: requests answered late, requests overdue, events delivered (administrators)")
    report.add_argument("--at", metavar="ISO-TIME", help="report as of this time: what was overdue then (default: now)")

    query = action("query", "look up a record by key, or browse rows by filter, of a resource you are entitled to (Art. 16)")
    query.add_argument("--resource", required=True, metavar="[PROVIDER/]RESOURCE",
                       help="the resource, as PROVIDER/RESOURCE or with --provider")
    query.add_argument("--provider", help="the providing agency (when --resource does not name it)")
    query.add_argument("--key", action="append", default=[], metavar="ITEM=VALUE",
                       help="a key column and its value (repeat for each key column): look up one record")
    query.add_argument("--where", default="", metavar="FILTER", help="browse the rows this row filter matches")
    query.add_argument("--page-size", type=int, default=0, metavar="N", help="rows per page (default 100, at most 1000)")
    query.add_argument("--page-token", default="", metavar="TOKEN", help="next_page_token of the previous page")
    query.add_argument("--purpose", default="", help="what the answer is used for (default: the approved purpose)")

    receipts = actions.add_parser("receipts", help="export consumers' signed delivery receipts as evidence (JSON lines)")
    whose = receipts.add_mutually_exclusive_group(required=True)
    whose.add_argument("--provider", help="receipts for this provider's resources")
    whose.add_argument("--consumer", help="receipts signed by this consumer")
    receipts.add_argument("--out", metavar="FILE", help="write to FILE (default: standard output)")
    add_hub_arguments(receipts)
    receipts.set_defaults(handler=_export_receipts)

    verify = actions.add_parser("verify-receipts", help="verify exported receipts with the CA certificate alone")
    verify.add_argument("file", metavar="FILE", help="a file written by exchange share receipts")
    verify.add_argument("--ca", required=True, metavar="PEM", help="the exchange's CA certificate (ca.pem)")
    verify.set_defaults(handler=_verify_receipts)


def _export_receipts(args: argparse.Namespace) -> int:
    from exchange.cli import receipts_client

    return receipts_client.export(args)


def _verify_receipts(args: argparse.Namespace) -> int:
    """Exit 0 when every receipt verifies, 1 when any does not (each named with its line and reason)."""
    from exchange.cli.output import print_json
    from exchange.tools.receipts import verify_file

    report = verify_file(args.file, args.ca)
    print_json(report)
    return 1 if report["failed"] else 0


def _call_hub(args: argparse.Namespace) -> int:
    from exchange.cli import share_client
    from exchange.common.logs import setup_logging

    setup_logging("warning")
    return share_client.call(args)
