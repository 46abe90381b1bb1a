"""``exchange demo`` and ``exchange demo-sharing``: the whole exchange on embedded defaults in a temp dir."""

from __future__ import annotations

import argparse


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``demo`` to the ``exchange`` command."""
    demo = commands.add_parser("demo", help="run the whole exchange on embedded defaults in a temp dir")
    demo.add_argument("--changes", type=int, default=20000, help="row changes the sample agency makes (default 20000)")
    demo.add_argument("--dir", help="keep the demo's files in this directory instead of a temp dir")
    demo.set_defaults(handler=_demo)


def add_sharing_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``demo-sharing`` to the ``exchange`` command."""
    sharing = commands.add_parser("demo-sharing", help="three agencies share through a hub: approve, reject, "
                                                      "dispute, revoke; prints each consumer's replica")
    sharing.add_argument("--dir", help="keep the demo's files in this directory instead of a temp dir")
    sharing.set_defaults(handler=_sharing)


def _demo(args: argparse.Namespace) -> int:
    from exchange.common.logs import setup_logging
    from exchange.demos import pipeline

    setup_logging("warning")
    return pipeline.run(changes=args.changes, directory=args.dir)


def _sharing(args: argparse.Namespace) -> int:
    from exchange.common.logs import setup_logging
    from exchange.demos import sharing

    setup_logging("warning")
    return sharing.run(args.dir)
