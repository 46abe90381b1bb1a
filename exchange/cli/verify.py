"""``exchange verify``: compare two databases table by table."""

from __future__ import annotations

import argparse

from exchange.cli.output import print_json


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``verify`` to the ``exchange`` command."""
    verify = commands.add_parser("verify", help="compare two databases table by table")
    verify.add_argument("--source", required=True, help="database URL")
    verify.add_argument("--target", required=True, help="database URL")
    verify.add_argument("--tables", nargs="+", metavar="TABLE", help="compare only these tables (default: all)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")
    verify.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from exchange.tools import verify

    report = verify.verify(args.source, args.target, tables=args.tables)
    if args.json:
        print_json(report.to_dict())
    else:
        print(report.render())
    return 0 if report.equal else 1
