"""``exchange catalog ...``: compile entry files, submit them, and review, list and report over gRPC."""

from __future__ import annotations

import argparse

from exchange.cli.output import print_json
from exchange.cli.remote import add_hub_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``catalog`` and its actions to the ``exchange`` command."""
    from hub.catalog.entry import STATUSES
    from hub.catalog.terms import SENSITIVITIES

    parser = commands.add_parser("catalog", help="compile, submit, review and report on the resource catalog")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    draft = actions.add_parser("draft", help="write an editable entry file for each captured table (node)")
    draft.add_argument("--config", help="node TOML file: the source and tables to describe")
    draft.add_argument("--to", required=True, metavar="DIR", help="directory for the entry files (existing files are kept)")
    draft.add_argument("--format", choices=("toml", "json"), default="toml", help="file format (default toml)")
    draft.set_defaults(handler=_draft)

    submit = actions.add_parser("submit", help="check entry files and submit them for review")
    submit.add_argument("files", nargs="+", metavar="FILE", help="entry files (.toml or .json)")
    submit.add_argument("--draft", action="store_true", help="save them as drafts without submitting")
    add_hub_arguments(submit)
    submit.set_defaults(handler=_submit)

    listing = actions.add_parser("list", help="list catalog entries")
    listing.add_argument("--agency", default="", help="only this agency's entries")
    listing.add_argument("--status", default="", choices=("",) + STATUSES, help="only entries in this status")
    listing.add_argument("--json", action="store_true", help="print JSON")

    show = actions.add_parser("show", help="show one entry, or with --history every event of it")
    show.add_argument("code")
    show.add_argument("--history", action="store_true", help="print the entry's whole history")

    secrecy = actions.add_parser("secrecy", help="record the secrecy review of a submitted entry (administrators)")
    secrecy.add_argument("code")
    outcome = secrecy.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--cleared", action="store_true", help="the content may be provided as declared")
    outcome.add_argument("--not-cleared", action="store_true", help="it may not (say why with --note)")
    secrecy.add_argument("--sensitivity", nargs="*", default=[], choices=sorted(SENSITIVITIES),
                         help="kinds of protected data it holds (sharing then needs a secrecy agreement)")
    secrecy.add_argument("--note", default="", help="the reviewer's note")

    review = actions.add_parser("review", help="record item-by-item decisions on a submitted entry (administrators)")
    review.add_argument("code")
    review.add_argument("--accept", nargs="*", default=[], metavar="ITEM", help="data items accepted")
    review.add_argument("--accept-all", action="store_true", help="accept every data item not rejected")
    review.add_argument("--reject", nargs="*", default=[], metavar="ITEM=REASON", help="data items not accepted, and why")

    publish = actions.add_parser("publish", help="publish a reviewed entry (administrators)")
    publish.add_argument("code")

    back = actions.add_parser("return", help="return a submitted entry to its agency with reasons (administrators)")
    back.add_argument("code")
    back.add_argument("--reason", action="append", default=[], help="a reason (repeatable)")

    full = actions.add_parser("full-review", help="record the yearly full review of a published entry (administrators)")
    full.add_argument("code")
    full.add_argument("--note", default="")

    report = actions.add_parser("report", help="overdue entries, one datum one source, and the per-agency evaluation")
    report.add_argument("--at", default="", metavar="TIME", help="evaluate as of this ISO-8601 time (default now)")
    report.add_argument("--json", action="store_true", help="print JSON")

    dcat = actions.add_parser("dcat", help="export the published catalog as DCAT JSON-LD")
    dcat.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")

    for remote in (listing, show, secrecy, review, publish, back, full, report, dcat):
        add_hub_arguments(remote)
        remote.set_defaults(handler=_call_hub)


def _draft(args: argparse.Namespace) -> int:
    from exchange.tools import catalog_draft
    from node import config

    print_json(catalog_draft.draft(config.load(args.config), args.to, args.format))
    return 0


def _submit(args: argparse.Namespace) -> int:
    from exchange.cli import catalog_client

    return catalog_client.submit(args)


def _call_hub(args: argparse.Namespace) -> int:
    from exchange.cli import catalog_client

    return catalog_client.call(args)
