"""``exchange store keygen``: a key for encrypting a node or hub store at rest."""

from __future__ import annotations

import argparse
import json


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``store`` and its action to the ``exchange`` command."""
    store = commands.add_parser("store", help="event store keys").add_subparsers(dest="action", required=True,
                                                                                metavar="ACTION")
    keygen = store.add_parser("keygen", help="create a key for encrypting a node or hub store at rest")
    keygen.add_argument("file", help="key file to create (mode 0600; never overwritten)")
    keygen.set_defaults(handler=_keygen)


def _keygen(args: argparse.Namespace) -> int:
    from exchange.store import at_rest

    print(json.dumps(at_rest.keygen(args.file)))
    return 0
