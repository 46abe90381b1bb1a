"""``exchange audit ...``: check the hub's tamper-evident audit log and print its head."""

from __future__ import annotations

import argparse
import json

from exchange.cli.output import print_json


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``audit`` and its actions to the ``exchange`` command."""
    audit = commands.add_parser("audit", help="check the hub's tamper-evident audit log").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    verify = audit.add_parser("verify", help="verify the hash chain of each log (several hubs: one chain each); "
                                             "exit 1 naming the first bad entry")
    head = audit.add_parser("head", help="print the current head (SEQ:HASH) to keep somewhere else")
    for sub in (verify, head):
        where = sub.add_mutually_exclusive_group()
        if sub is verify:
            where.add_argument("--path", metavar="FILE", action="append",
                               help="an audit log file; repeat it for the logs of several hubs")
            where.add_argument("--config", help="hub TOML file (its [audit] path, or audit.log beside its store, "
                                                "and the other hubs' logs of [audit] peers)")
        else:
            where.add_argument("--path", metavar="FILE", help="the audit log file")
            where.add_argument("--config", help="hub TOML file (its [audit] path, or audit.log beside its store)")
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
    verify.add_argument("--head", metavar="SEQ:HASH",
                        help="a head printed earlier by `exchange audit head`: also detects entries cut off the end "
                             "(one log only)")
    verify.set_defaults(handler=_verify)
    head.set_defaults(handler=_head)
    reconcile = audit.add_parser("reconcile", help="cross-check the hub store with the audit log: name decisions "
                                                   "stored but not audited, and audited but not stored; exit 1 if any")
    reconcile.add_argument("--config", required=True, help="hub TOML file (its store and [audit] path)")
    reconcile.add_argument("--repair", action="store_true",
                           help="append an audit.recovered entry for each decision stored but not audited "
                                "(what a running hub does when it starts)")
    reconcile.add_argument("--json", action="store_true", help="print JSON for scripts")
    reconcile.set_defaults(handler=_reconcile)


def _log_path(args: argparse.Namespace):
    from pathlib import Path

    from hub import audit, config

    return Path(args.path) if args.path else audit.audit_path(config.load(args.config))


def _head(args: argparse.Namespace) -> int:
    from hub import audit

    path = _log_path(args)
    head = audit.AuditLog(path).head() if path.exists() else audit.Head(0, audit.GENESIS)
    print(json.dumps({"path": str(path), "seq": head.seq, "hash": head.hash, "head": str(head)})
          if args.json else str(head))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from exchange.contracts.errors import InvalidInput
    from hub import audit, config

    if args.path:
        paths = [Path(p) for p in args.path]
    else:
        cfg = config.load(args.config)
        paths = [audit.audit_path(cfg), *(Path(p) for p in cfg.audit.peers)]
    if args.head and len(paths) > 1:
        raise InvalidInput("--head anchors one log: verify the logs one at a time with --path and --head")
    verdicts = [audit.verify(path, audit.Head.parse(args.head) if args.head else None) for path in paths]
    if args.json:
        print_json(verdicts[0].to_dict() if len(verdicts) == 1 else
                   {"valid": all(v.valid for v in verdicts), "logs": [v.to_dict() for v in verdicts]})
    else:
        print("\n".join(v.render() for v in verdicts))
    return 0 if all(v.valid for v in verdicts) else 1


def _reconcile(args: argparse.Namespace) -> int:
    from exchange.store import open_store
    from exchange.store.at_rest import store_cipher
    from hub import audit, audit_reconcile, config

    cfg = config.load(args.config)
    store = open_store(cfg.store.url, create=False, cipher=store_cipher(cfg))
    try:
        if args.repair:
            report = audit_reconcile.repair(store, audit.open_audit(cfg), cfg.audit.peers)
        else:
            report = audit_reconcile.reconcile(store, audit.audit_path(cfg), cfg.audit.peers)
    finally:
        store.close()
    if args.json:
        print_json(report.to_dict())
    else:
        print(audit_reconcile.render(report, repaired=args.repair))
    return 0 if report.agree or (args.repair and not report.not_stored) else 1
