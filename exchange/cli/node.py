"""``exchange node ...``: run a node and inspect it, offline bundles, and the consumer role (subscribe, import)."""

from __future__ import annotations

import argparse

from exchange.cli.output import logging_as_configured, print_json, print_report


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``node`` and its actions to the ``exchange`` command."""
    node = commands.add_parser("node", help="run or inspect a node").add_subparsers(dest="action", required=True,
                                                                                   metavar="ACTION")
    run = node.add_parser("run", help="capture the source and ship its events to the hub ([hub] addresses: "
                                      "several hubs, the next one used when one stops answering)")
    run.add_argument("--config", help="node TOML file (settings may also come from EXCHANGE_NODE_* variables)")
    run.set_defaults(handler=_run)

    restore = node.add_parser("restore", help="rebuild a lost node store from the hub's copy")
    restore.add_argument("--config", help="node TOML file")
    restore.set_defaults(handler=_restore)

    status = node.add_parser("status", help="show the node's positions and backlog")
    status.add_argument("--config", help="node TOML file")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(handler=_status)

    resnap = node.add_parser(
        "resnapshot", help="read captured tables again, concurrently with capture, and repair the node's copy",
        description="Ask the source for a snapshot pass of TABLEs (names or patterns of captured tables): the "
                    "node reads them while it goes on capturing, stores only rows that differ from what it holds "
                    "and deletes those the pass no longer finds. Without a running node the request waits in the "
                    "source. --all reads every captured table and also repairs a lost position (a dropped or "
                    "invalidated PostgreSQL replication slot).")
    resnap.add_argument("tables", nargs="*", metavar="TABLE", help="captured table, or a pattern such as sales.*")
    resnap.add_argument("--all", action="store_true", help="every captured table; repairs a lost slot")
    resnap.add_argument("--config", help="node TOML file")
    resnap.add_argument("--no-wait", action="store_true",
                        help="return once the request is written instead of following the passes until done")
    resnap.set_defaults(handler=_resnapshot)

    quality = node.add_parser("quality", help="list captured identifiers with an invalid check character")
    quality.add_argument("--config", help="node TOML file ([source] identifiers declares the columns)")
    quality.add_argument("--json", action="store_true", help="print JSON for scripts")
    quality.set_defaults(handler=_quality)

    keygen = node.add_parser("keygen", help="create the key that signs the node's offline bundles")
    keygen.add_argument("--config", help="node TOML file ([bundles] key names the key file)")
    keygen.set_defaults(handler=_keygen)

    export = node.add_parser("export", help="write the events the hub has not acknowledged as signed bundles")
    export.add_argument("--config", help="node TOML file")
    export.add_argument("--to", required=True, metavar="DIR", help="directory to write bundles to (and read ack/ from)")
    export.add_argument("--max-events", type=int, default=10000, metavar="N", help="events per bundle (default 10000)")
    export.add_argument("--after", type=int, metavar="N", help="export events after node notification id N "
                        "instead of after the hub's acknowledged position")
    export.set_defaults(handler=_export)

    subscribe = node.add_parser("subscribe", help="keep a replica of the resources this agency is entitled to")
    subscribe.add_argument("--config", help="consumer TOML file ([consumer] replica and resources; [hub] address "
                                            "or addresses)")
    subscribe.set_defaults(handler=_subscribe)

    replica_import = node.add_parser("import", help="apply the hub's consumer bundles in a directory to the replica")
    replica_import.add_argument("directory", help="directory the hub exported into (holds <agency>/<provider>/<resource>/)")
    replica_import.add_argument("--config", help="consumer TOML file ([consumer] hub_key is the hub's public key)")
    replica_import.set_defaults(handler=_replica_import)


def _run(args: argparse.Namespace) -> int:
    from node import config, service

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    return service.run(cfg)


def _restore(args: argparse.Namespace) -> int:
    from exchange.common.logs import setup_logging
    from node import config, restore

    setup_logging()
    print_json(restore.restore(config.load(args.config)))
    return 0


def _status(args: argparse.Namespace) -> int:
    from node import config, status

    print_report(status.node_status(config.load(args.config)), status.render, args.json)
    return 0


def _resnapshot(args: argparse.Namespace) -> int:
    from node import config, resnapshot

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    print_json(resnapshot.resnapshot(cfg, args.tables, args.all, wait=not args.no_wait))
    return 0


def _quality(args: argparse.Namespace) -> int:
    from node import config, quality

    print_report(quality.quality_report(config.load(args.config)), quality.render, args.json)
    return 0


def _keygen(args: argparse.Namespace) -> int:
    from node import bundles, config

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    print_json(bundles.keygen(cfg))
    return 0


def _export(args: argparse.Namespace) -> int:
    from node import bundles, config

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    print_json(bundles.export(cfg, args.to, max_events=args.max_events, after=args.after))
    return 0


def _subscribe(args: argparse.Namespace) -> int:
    from consumer import subscriber
    from node import config

    cfg = config.load_consumer(args.config)
    logging_as_configured(cfg)
    return subscriber.run(cfg)


def _replica_import(args: argparse.Namespace) -> int:
    from consumer import bundle_import
    from node import config

    cfg = config.load_consumer(args.config)
    logging_as_configured(cfg)
    report = bundle_import.import_bundles(cfg, args.directory)
    print_json(report)
    return 1 if report["errors"] else 0
