"""The ``exchange`` command: one parser assembled from one module per command group.

Each command module registers its commands with ``add_parser(commands)`` and
sets a ``handler`` on each; handlers import what they run only when they
run, so ``exchange --help`` stays fast.  Errors of the exchange end the
command here, in one place (exit codes: exchange.contracts.errors).
"""

from __future__ import annotations

import argparse
import sys

from exchange.cli import audit, ca, catalog, demo, hub, node, registry, replay, share, store, verify
from exchange.contracts.errors import ExchangeError

# In the order ``exchange --help`` lists them.
COMMANDS = (hub.add_parser, node.add_parser, share.add_parser, demo.add_sharing_parser, replay.add_parser,
            store.add_parser, verify.add_parser, audit.add_parser, ca.add_parser, catalog.add_parser, registry.add_parser,
            demo.add_parser)


def build_parser() -> argparse.ArgumentParser:
    """The ``exchange`` parser with every command; each leaf parser sets ``handler``."""
    parser = argparse.ArgumentParser(
        prog="exchange",
        description="Government data exchange: capture agency databases, share them through the hub, replay them anywhere.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (default: the process's arguments) names; its exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except ExchangeError as e:
        print(f"exchange: {e.prefix}{e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
