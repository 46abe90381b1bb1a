"""``exchange registry ...``: the hub's registry of agencies, their data administrators and reviewers (Art. 21)."""

from __future__ import annotations

import argparse

from exchange.cli.remote import add_hub_arguments


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``registry`` and its actions to the ``exchange`` command."""
    parser = commands.add_parser("registry", help="register agencies, their data administrators and designated "
                                                  "reviewers (hub administrators; docs/sharing.md)")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    def fields(action: argparse.ArgumentParser, required: bool) -> None:
        action.add_argument("agency", help="the agency id (the name in its certificates)")
        action.add_argument("--uscc", required=required, help="its unified social credit code")
        action.add_argument("--name", required=required, help="its name")
        action.add_argument("--parent", help="its parent agency's id")
        action.add_argument("--district", help="the district it serves")
        action.add_argument("--admin", dest="administrators", action="append", metavar="NAME",
                            help="a data administrator (repeatable; on update replaces the list)")
        action.add_argument("--reviewer", dest="reviewers", action="append", metavar="NAME",
                            help="a designated reviewer: the name of its reviewer certificate (exchange ca issue "
                                 "--reviewer NAME; repeatable; on update replaces the list)")
        add_hub_arguments(action)
        action.set_defaults(handler=_call_hub)

    fields(actions.add_parser("add", help="register an agency"), required=True)
    fields(actions.add_parser("update", help="change a registered agency (options given replace its values)"),
           required=False)
    show = actions.add_parser("show", help="one agency's record")
    show.add_argument("agency")
    listing = actions.add_parser("list", help="every registered agency as JSON (exchange ca issue --registry reads it)")
    for action in (show, listing):
        add_hub_arguments(action)
        action.set_defaults(handler=_call_hub)


def _call_hub(args: argparse.Namespace) -> int:
    from exchange.cli import registry_client

    return registry_client.call(args)
