"""``exchange hub ...``: run the hub, show its status, import and export offline bundles, create its keys."""

from __future__ import annotations

import argparse

from exchange.cli.output import logging_as_configured, print_json, print_report


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``hub`` and its actions to the ``exchange`` command."""
    hub = commands.add_parser("hub", help="run or inspect the hub").add_subparsers(dest="action", required=True,
                                                                              metavar="ACTION")
    run = hub.add_parser("run", help="serve the hub's gRPC API and metrics (several hubs may serve one PostgreSQL "
                                     "store; with [upstream], forward the agencies' logs to a city hub; "
                                     "docs/scaling.md)")
    run.add_argument("--config", help="hub TOML file (settings may also come from EXCHANGE_HUB_* variables)")
    run.set_defaults(handler=_run)

    status = hub.add_parser("status", help="show each agency's connection, lag and backlog")
    status.add_argument("--config", help="hub TOML file")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(handler=_status)

    bundles = hub.add_parser("import", help="import the offline bundles in a directory (docs/bundles.md)")
    bundles.add_argument("directory", help="directory holding <agency>-<first>-<last>.bundle files")
    bundles.add_argument("--config", help="hub TOML file")
    bundles.set_defaults(handler=_import)

    keygen = hub.add_parser("keygen", help="create the hub's offline-bundle keys that the config names: "
                            "[bundles] decrypt_key (bundles encrypted to the hub) and [bundles] ack_key "
                            "(signs acknowledgements and consumer bundles)")
    keygen.add_argument("--config", help="hub TOML file")
    keygen.set_defaults(handler=_keygen)

    export = hub.add_parser("export", help="write a consumer's entitled events as signed bundles (docs/sharing.md)")
    export.add_argument("--config", help="hub TOML file")
    export.add_argument("--consumer", required=True, help="the consumer agency")
    export.add_argument("--to", required=True, metavar="DIR", help="directory to write DIR/<consumer>/... into")
    export.add_argument("--resource", action="append", metavar="PROVIDER/RESOURCE",
                        help="only this resource (repeatable; default: every resource the consumer is entitled to)")
    export.add_argument("--purpose", default="", help="the consumer's purpose, for unconditional resources")
    export.add_argument("--max-events", type=int, default=10000, metavar="N", help="events per bundle (default 10000)")
    export.add_argument("--from-start", action="store_true", help="export everything again, not only what is new")
    export.set_defaults(handler=_export)

    rebuild = hub.add_parser("rebuild-state", help="forget the current-state table that lookups answer from; the "
                                                   "hub folds the agencies' logs into it again (docs/sharing.md)")
    rebuild.add_argument("--config", help="hub TOML file")
    rebuild.add_argument("--agency", help="only this agency's resources (default: all)")
    rebuild.set_defaults(handler=_rebuild_state)


def _run(args: argparse.Namespace) -> int:
    from hub import config, service

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    return service.run(cfg)


def _status(args: argparse.Namespace) -> int:
    from hub import config, status

    print_report(status.hub_status(config.load(args.config)), status.render, args.json)
    return 0


def _import(args: argparse.Namespace) -> int:
    from hub import bundle_import, config

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    report = bundle_import.import_directory(cfg, args.directory)
    print_json(report)
    return 1 if report["pending"] or report["quarantined"] else 0


def _keygen(args: argparse.Namespace) -> int:
    from hub import bundle_import, config

    print_json(bundle_import.keygen(config.load(args.config)))
    return 0


def _export(args: argparse.Namespace) -> int:
    from hub import config, consumer_export

    cfg = config.load(args.config)
    logging_as_configured(cfg)
    print_json(consumer_export.export(cfg, args.consumer, args.to, resources=args.resource, purpose=args.purpose,
                                      max_events=args.max_events, from_start=args.from_start))
    return 0


def _rebuild_state(args: argparse.Namespace) -> int:
    from exchange.contracts.agency import check_agency
    from exchange.store import open_store
    from exchange.store.at_rest import store_cipher
    from hub import config
    from hub.sharing.current import CurrentState

    cfg = config.load(args.config)
    agency = check_agency(args.agency) if args.agency else None
    store = open_store(cfg.store.url, create=False, cipher=store_cipher(cfg))
    try:
        CurrentState(store).rebuild(agency)
    finally:
        store.close()
    print_json({"rebuilt": agency or "all agencies",
                "then": "the running hub folds the logs again at once; a stopped hub when it starts"})
    return 0
