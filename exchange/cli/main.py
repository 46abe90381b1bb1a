"""The ``exchange`` command: one CLI for node, hub, replay, verify and demo."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone

from exchange.transport.offline.bundles import BundleError
from exchange.contracts.changes import SourceNotReady
from exchange.common.config import ConfigError
from exchange.common.logs import setup_logging
from exchange.tools.replay import ReplayError
from exchange.store import StoreError
from hub.audit import AuditError


def _iso_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="exchange",
        description="Government data exchange: capture agency databases, share them through the hub, replay them anywhere.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    hub = commands.add_parser("hub", help="run or inspect the hub").add_subparsers(dest="action", required=True, metavar="ACTION")
    hub_run = hub.add_parser("run", help="serve the hub's gRPC API and metrics")
    hub_run.add_argument("--config", help="hub TOML file (settings may also come from EXCHANGE_HUB_* variables)")
    hub_status = hub.add_parser("status", help="show each agency's connection, lag and backlog")
    hub_status.add_argument("--config", help="hub TOML file")
    hub_status.add_argument("--json", action="store_true", help="print JSON for scripts")
    hub_import = hub.add_parser("import", help="import the offline bundles in a directory (docs/bundles.md)")
    hub_import.add_argument("directory", help="directory holding <agency>-<first>-<last>.bundle files")
    hub_import.add_argument("--config", help="hub TOML file")
    hub_keygen = hub.add_parser("keygen", help="create the hub's offline-bundle keys that the config names: "
                                "[bundles] decrypt_key (bundles encrypted to the hub) and [bundles] ack_key "
                                "(signs acknowledgements and consumer bundles)")
    hub_keygen.add_argument("--config", help="hub TOML file")

    hub_export = hub.add_parser("export", help="write a consumer's entitled events as signed bundles (docs/sharing.md)")
    hub_export.add_argument("--config", help="hub TOML file")
    hub_export.add_argument("--consumer", required=True, help="the consumer agency")
    hub_export.add_argument("--to", required=True, metavar="DIR", help="directory to write DIR/<consumer>/... into")
    hub_export.add_argument("--resource", action="append", metavar="PROVIDER/RESOURCE",
                            help="only this resource (repeatable; default: every resource the consumer is entitled to)")
    hub_export.add_argument("--purpose", default="", help="the consumer's purpose, for unconditional resources")
    hub_export.add_argument("--max-events", type=int, default=10000, metavar="N", help="events per bundle (default 10000)")
    hub_export.add_argument("--from-start", action="store_true", help="export everything again, not only what is new")

    node = commands.add_parser("node", help="run or inspect a node").add_subparsers(dest="action", required=True, metavar="ACTION")
    node_run = node.add_parser("run", help="capture the source and ship its events to the hub")
    node_run.add_argument("--config", help="node TOML file (settings may also come from EXCHANGE_NODE_* variables)")
    node_restore = node.add_parser("restore", help="rebuild a lost node store from the hub's copy")
    node_restore.add_argument("--config", help="node TOML file")
    node_status = node.add_parser("status", help="show the node's positions and backlog")
    node_status.add_argument("--config", help="node TOML file")
    node_status.add_argument("--json", action="store_true", help="print JSON for scripts")
    node_quality = node.add_parser("quality", help="list captured identifiers with an invalid check character")
    node_quality.add_argument("--config", help="node TOML file ([source] identifiers declares the columns)")
    node_quality.add_argument("--json", action="store_true", help="print JSON for scripts")
    node_keygen = node.add_parser("keygen", help="create the key that signs the node's offline bundles")
    node_keygen.add_argument("--config", help="node TOML file ([bundles] key names the key file)")
    node_export = node.add_parser("export", help="write the events the hub has not acknowledged as signed bundles")
    node_export.add_argument("--config", help="node TOML file")
    node_export.add_argument("--to", required=True, metavar="DIR", help="directory to write bundles to (and read ack/ from)")
    node_export.add_argument("--max-events", type=int, default=10000, metavar="N", help="events per bundle (default 10000)")
    node_export.add_argument("--after", type=int, metavar="N", help="export events after node notification id N "
                             "instead of after the hub's acknowledged position")

    node_subscribe = node.add_parser("subscribe", help="keep a replica of the resources this agency is entitled to")
    node_subscribe.add_argument("--config", help="consumer TOML file ([consumer] replica and resources)")
    node_import = node.add_parser("import", help="apply the hub's consumer bundles in a directory to the replica")
    node_import.add_argument("directory", help="directory the hub exported into (holds <agency>/<provider>/<resource>/)")
    node_import.add_argument("--config", help="consumer TOML file ([consumer] hub_key is the hub's public key)")

    from exchange.cli import share as share_cli
    share_cli.add_parser(commands)
    demo_sharing = commands.add_parser("demo-sharing", help="three agencies share through a hub: approve, reject, "
                                                            "dispute, revoke; prints each consumer's replica")
    demo_sharing.add_argument("--dir", help="keep the demo's files in this directory instead of a temp dir")

    replay = commands.add_parser("replay", help="rebuild an agency's tables from an event store")
    history = replay.add_mutually_exclusive_group(required=True)
    history.add_argument("--store", help="node or hub store URL, e.g. sqlite:///hub-store.db")
    history.add_argument("--bundles", metavar="DIR", help="a folder of the agency's offline bundles")
    replay.add_argument("--key", metavar="PUBFILE", help="with --bundles: the agency's bundle public key")
    replay.add_argument("--decrypt-key", metavar="FILE", help="with --bundles: the hub's bundle decryption key, "
                        "for bundles encrypted to the hub")
    replay.add_argument("--agency", required=True, help="agency id")
    replay.add_argument("--target", required=True, help="fresh database URL to build, e.g. sqlite:///rebuilt.db")
    replay.add_argument("--until", type=_iso_time, help="stop after the last change committed at or before this ISO-8601 time")
    replay.add_argument("--until-position", type=int, metavar="N", help="stop after the last change at or before this source position")
    replay.add_argument("--resource", metavar="TABLE", help="rebuild only this resource (table)")
    replay.add_argument("--cipher-key-file", metavar="FILE", help="with --store: the key of an encrypted store "
                        "(or set EXCHANGE_STORE_CIPHER_KEY)")

    store = commands.add_parser("store", help="event store keys").add_subparsers(dest="action", required=True,
                                                                                metavar="ACTION")
    store_keygen = store.add_parser("keygen", help="create a key for encrypting a node or hub store at rest")
    store_keygen.add_argument("file", help="key file to create (mode 0600; never overwritten)")

    verify = commands.add_parser("verify", help="compare two databases table by table")
    verify.add_argument("--source", required=True, help="database URL")
    verify.add_argument("--target", required=True, help="database URL")
    verify.add_argument("--tables", nargs="+", metavar="TABLE", help="compare only these tables (default: all)")
    verify.add_argument("--json", action="store_true", help="print the report as JSON")

    audit = commands.add_parser("audit", help="check the hub's tamper-evident audit log").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    audit_verify = audit.add_parser("verify", help="verify the hash chain; exit 1 naming the first bad entry")
    audit_head = audit.add_parser("head", help="print the current head (SEQ:HASH) to keep somewhere else")
    for sub in (audit_verify, audit_head):
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--path", metavar="FILE", help="the audit log file")
        where.add_argument("--config", help="hub TOML file (its [audit] path, or audit.log beside its store)")
        sub.add_argument("--json", action="store_true", help="print JSON for scripts")
    audit_verify.add_argument("--head", metavar="SEQ:HASH",
                              help="a head printed earlier by `exchange audit head`: also detects entries cut off the end")
    ca = commands.add_parser("ca", help="certificate authority for mutual TLS (docs/security.md)").add_subparsers(
        dest="action", required=True, metavar="ACTION")
    ca_init = ca.add_parser("init", help="create a CA: key, certificate and an empty revocation list")
    ca_init.add_argument("--dir", required=True, help="directory for the CA's files (kept offline, key mode 0600)")
    ca_init.add_argument("--name", default="Exchange CA", help="the CA certificate's common name")
    ca_issue = ca.add_parser("issue", help="issue a certificate for an agency's node, an administrator or the hub")
    ca_issue.add_argument("--dir", required=True, help="the CA directory")
    who = ca_issue.add_mutually_exclusive_group(required=True)
    who.add_argument("--agency", help="agency id (unified social credit code) of a node")
    who.add_argument("--admin", metavar="NAME", help="an administrator (list NAME in the hub's [security] administrators)")
    who.add_argument("--hub", metavar="NAME", help="the hub's server certificate")
    ca_issue.add_argument("--host", action="append", default=[], metavar="HOST",
                          help="with --hub: a DNS name or IP address nodes use to reach it (repeatable; "
                               "default localhost, 127.0.0.1, ::1)")
    ca_issue.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    ca_issue.add_argument("--out", metavar="DIR", help="write NAME.pem and NAME-key.pem here (default: the CA directory)")
    ca_revoke = ca.add_parser("revoke", help="revoke certificates; the hub reloads the revocation list by itself")
    ca_revoke.add_argument("--dir", required=True, help="the CA directory")
    ca_revoke.add_argument("serials", nargs="*", metavar="SERIAL", help="hexadecimal serial number(s), as issue prints them")
    ca_revoke.add_argument("--agency", help="revoke every certificate issued to this agency")
    ca_revoke.add_argument("--admin", metavar="NAME", help="revoke every certificate issued to this administrator")
    ca_crl = ca.add_parser("crl", help="sign the revocation list again (it is valid for 30 days)")
    ca_crl.add_argument("--dir", required=True, help="the CA directory")
    ca_list = ca.add_parser("list", help="list the certificates issued, with expiry and revocation")
    ca_list.add_argument("--dir", required=True, help="the CA directory")
    from exchange.cli import catalog as catalog_client

    catalog_client.add_arguments(commands.add_parser("catalog", help="compile, submit, review and report on the resource catalog"))

    demo = commands.add_parser("demo", help="run the whole exchange on embedded defaults in a temp dir")
    demo.add_argument("--changes", type=int, default=20000, help="row changes the sample agency makes (default 20000)")
    demo.add_argument("--dir", help="keep the demo's files in this directory instead of a temp dir")
    return parser


def _replay_bundles(args: argparse.Namespace, options: dict) -> dict:
    from exchange.tools import replay
    from exchange.transport.offline.bundle_log import BundleLog
    from exchange.transport.offline.bundles import load_hub_private_key, load_trusted_keys

    if not args.key:
        raise ValueError("--bundles needs --key, the agency's bundle public key")
    log = BundleLog(args.bundles, args.agency, load_trusted_keys({args.agency: args.key}),
                    load_hub_private_key(args.decrypt_key) if args.decrypt_key else None)
    return replay.replay_log(log, args.agency, args.target, **options)


def _audit(args: argparse.Namespace) -> int:
    from pathlib import Path

    from hub import audit, config

    path = Path(args.path) if args.path else audit.audit_path(config.load(args.config))
    if args.action == "head":
        head = audit.AuditLog(path).head() if path.exists() else audit.Head(0, audit.GENESIS)
        print(json.dumps({"path": str(path), "seq": head.seq, "hash": head.hash, "head": str(head)})
              if args.json else str(head))
        return 0
    verdict = audit.verify(path, audit.Head.parse(args.head) if args.head else None)
    print(json.dumps(verdict.to_dict(), ensure_ascii=False) if args.json else verdict.render())
    return 0 if verdict.valid else 1


def _ca(args: argparse.Namespace) -> int:
    from exchange.tools import ca

    if args.action == "init":
        report = ca.init(args.dir, args.name)
    elif args.action == "issue":
        role, name = (("agency", args.agency) if args.agency else ("administrator", args.admin) if args.admin
                      else ("hub", args.hub))
        if args.host and role != "hub":
            raise ValueError("--host is for hub certificates only")
        report = ca.issue(args.dir, role, name, out=args.out, hosts=args.host, days=args.days)
    elif args.action == "revoke":
        if not (args.serials or args.agency or args.admin):
            raise ValueError("name what to revoke: SERIAL..., --agency ID or --admin NAME")
        report = ca.revoke(args.dir, args.serials, agency=args.agency, admin=args.admin)
    elif args.action == "crl":
        report = ca.refresh_crl(args.dir)
    else:
        report = ca.listing(args.dir)
    print(json.dumps(report, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"exchange: configuration error: {e}", file=sys.stderr)
        return 2
    except (StoreError, ReplayError, SourceNotReady, BundleError, AuditError, ValueError) as e:
        print(f"exchange: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "hub" and args.action == "run":
        from hub import config, service

        cfg = config.load(args.config)
        setup_logging(cfg["log.level"], cfg["log.format"])
        return service.run(cfg)
    if args.command == "hub" and args.action == "status":
        from hub import config, status

        report = status.hub_status(config.load(args.config))
        print(json.dumps(report, ensure_ascii=False) if args.json else status.render(report))
        return 0
    if args.command == "hub" and args.action == "import":
        from hub import bundle_import, config

        cfg = config.load(args.config)
        setup_logging(cfg["log.level"], cfg["log.format"])
        report = bundle_import.import_directory(cfg, args.directory)
        print(json.dumps(report, ensure_ascii=False))
        return 1 if report["pending"] or report["quarantined"] else 0
    if args.command == "hub" and args.action == "keygen":
        from hub import bundle_import, config

        print(json.dumps(bundle_import.keygen(config.load(args.config)), ensure_ascii=False))
        return 0
    if args.command == "hub" and args.action == "export":
        from hub import config, consumer_export

        cfg = config.load(args.config)
        setup_logging(cfg["log.level"], cfg["log.format"])
        report = consumer_export.export(cfg, args.consumer, args.to, resources=args.resource, purpose=args.purpose,
                                        max_events=args.max_events, from_start=args.from_start)
        print(json.dumps(report, ensure_ascii=False))
        return 0
    if args.command == "node" and args.action in ("subscribe", "import"):
        from node import config
        from consumer import subscriber as consumer
        from consumer import bundle_import as replica_import

        cfg = config.load_consumer(args.config)
        setup_logging(cfg["log.level"], cfg["log.format"])
        if args.action == "subscribe":
            return consumer.run(cfg)
        report = replica_import.import_bundles(cfg, args.directory)
        print(json.dumps(report, ensure_ascii=False))
        return 1 if report["errors"] else 0
    if args.command == "share":
        from exchange.cli import share as share_cli

        setup_logging("warning")
        return share_cli.dispatch(args)
    if args.command == "demo-sharing":
        from exchange.demos import sharing as sharing_demo

        setup_logging("warning")
        return sharing_demo.run(args.dir)
    if args.command == "node" and args.action in ("keygen", "export"):
        from node import bundles, config

        cfg = config.load(args.config)
        setup_logging(cfg["log.level"], cfg["log.format"])
        if args.action == "keygen":
            report = bundles.keygen(cfg)
        else:
            report = bundles.export(cfg, args.to, max_events=args.max_events, after=args.after)
        print(json.dumps(report, ensure_ascii=False))
        return 0
    if args.command == "node" and args.action == "run":
        from node import config, service

        cfg = config.load(args.config)
        setup_logging(cfg["log.level"], cfg["log.format"])
        return service.run(cfg)
    if args.command == "node" and args.action == "restore":
        from node import config, restore

        setup_logging()
        print(json.dumps(restore.restore(config.load(args.config)), ensure_ascii=False))
        return 0
    if args.command == "node" and args.action == "quality":
        from node import config, quality

        report = quality.quality_report(config.load(args.config))
        print(json.dumps(report, ensure_ascii=False) if args.json else quality.render(report))
        return 0
    if args.command == "node" and args.action == "status":
        from node import config, status

        report = status.node_status(config.load(args.config))
        print(json.dumps(report, ensure_ascii=False) if args.json else status.render(report))
        return 0
    if args.command == "replay":
        from exchange.tools import replay

        setup_logging()
        options = {"until": args.until, "until_position": args.until_position, "resource": args.resource}
        if args.store:
            from exchange.store.at_rest import cipher_from

            stats = replay.replay(args.store, args.agency, args.target, cipher=cipher_from(args.cipher_key_file),
                                  **options)
        else:
            stats = _replay_bundles(args, options)
        print(json.dumps(stats, ensure_ascii=False))
        return 0
    if args.command == "verify":
        from exchange.tools import verify

        report = verify.verify(args.source, args.target, tables=args.tables)
        print(json.dumps(report.to_dict(), ensure_ascii=False) if args.json else report.render())
        return 0 if report.equal else 1
    if args.command == "audit":
        return _audit(args)
    if args.command == "store":
        from exchange.store import at_rest

        print(json.dumps(at_rest.keygen(args.file)))
        return 0
    if args.command == "ca":
        return _ca(args)
    if args.command == "catalog":
        from exchange.cli import catalog as catalog_client

        return catalog_client.run(args)
    if args.command == "demo":
        from exchange.demos import pipeline as demo

        setup_logging("warning")
        return demo.run(changes=args.changes, directory=args.dir)
    raise AssertionError(args)


if __name__ == "__main__":
    sys.exit(main())
