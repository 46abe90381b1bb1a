"""``exchange ca ...``: the certificate authority for mutual TLS (docs/security.md)."""

from __future__ import annotations

import argparse

from exchange.cli.output import print_json
from exchange.contracts.errors import InvalidInput


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``ca`` and its actions to the ``exchange`` command."""
    ca = commands.add_parser("ca", help="certificate authority for mutual TLS (docs/security.md)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    init = ca.add_parser("init", help="create a CA: key, certificate and an empty revocation list")
    init.add_argument("--dir", required=True, help="directory for the CA's files (kept offline, key mode 0600)")
    init.add_argument("--name", default="Exchange CA", help="the CA certificate's common name")
    init.set_defaults(handler=_init)

    issue = ca.add_parser("issue", help="issue a certificate for an agency's node, an administrator or the hub")
    issue.add_argument("--dir", required=True, help="the CA directory")
    who = issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--agency", help="agency id (unified social credit code) of a node")
    who.add_argument("--admin", metavar="NAME", help="an administrator (list NAME in the hub's [security] administrators)")
    who.add_argument("--reviewer", metavar="NAME",
                     help="a designated reviewer of an agency's catalog entries (name it in the agency's registry "
                          "record: exchange registry update AGENCY --reviewer NAME)")
    who.add_argument("--hub", metavar="NAME", help="the hub's server certificate")
    issue.add_argument("--host", action="append", default=[], metavar="HOST",
                       help="with --hub: a DNS name or IP address nodes use to reach it (repeatable; "
                            "default localhost, 127.0.0.1, ::1)")
    issue.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    issue.add_argument("--out", metavar="DIR", help="write NAME.pem and NAME-key.pem here (default: the CA directory)")
    issue.add_argument("--registry", metavar="FILE",
                       help="the hub's agency registry (exchange registry list > FILE): agencies must be registered "
                            "and reviewers designated (default: registry.json in the CA directory, when present)")
    issue.set_defaults(handler=_issue)

    revoke = ca.add_parser("revoke", help="revoke certificates; the hub reloads the revocation list by itself")
    revoke.add_argument("--dir", required=True, help="the CA directory")
    revoke.add_argument("serials", nargs="*", metavar="SERIAL", help="hexadecimal serial number(s), as issue prints them")
    revoke.add_argument("--agency", help="revoke every certificate issued to this agency")
    revoke.add_argument("--admin", metavar="NAME", help="revoke every certificate issued to this administrator")
    revoke.set_defaults(handler=_revoke)

    crl = ca.add_parser("crl", help="sign the revocation list again (it is valid for 30 days)")
    crl.add_argument("--dir", required=True, help="the CA directory")
    crl.set_defaults(handler=_crl)

    listing = ca.add_parser("list", help="list the certificates issued, with expiry and revocation")
    listing.add_argument("--dir", required=True, help="the CA directory")
    listing.set_defaults(handler=_list)


def _init(args: argparse.Namespace) -> int:
    from exchange.tools import ca

    print_json(ca.init(args.dir, args.name))
    return 0


def _issue(args: argparse.Namespace) -> int:
    from exchange.tools import ca

    role, name = (("agency", args.agency) if args.agency else ("administrator", args.admin) if args.admin
                  else ("reviewer", args.reviewer) if args.reviewer else ("hub", args.hub))
    if args.host and role != "hub":
        raise InvalidInput("--host is for hub certificates only")
    print_json(ca.issue(args.dir, role, name, out=args.out, hosts=args.host, days=args.days, registry=args.registry))
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from exchange.tools import ca

    if not (args.serials or args.agency or args.admin):
        raise InvalidInput("name what to revoke: SERIAL..., --agency ID or --admin NAME")
    print_json(ca.revoke(args.dir, args.serials, agency=args.agency, admin=args.admin))
    return 0


def _crl(args: argparse.Namespace) -> int:
    from exchange.tools import ca

    print_json(ca.refresh_crl(args.dir))
    return 0


def _list(args: argparse.Namespace) -> int:
    from exchange.tools import ca

    print_json(ca.listing(args.dir))
    return 0
