"""``exchange replay``: rebuild an agency's tables from an event store or its offline bundles."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone

from exchange.cli.output import print_json
from exchange.contracts.errors import InvalidInput


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add ``replay`` to the ``exchange`` command."""
    replay = commands.add_parser("replay", help="rebuild an agency's tables from an event store")
    history = replay.add_mutually_exclusive_group(required=True)
    history.add_argument("--store", help="node or hub store URL, e.g. sqlite:///hub-store.db")
    history.add_argument("--bundles", metavar="DIR", help="a folder of the agency's offline bundles")
    replay.add_argument("--key", metavar="PUBFILE", help="with --bundles: the agency's bundle public key")
    replay.add_argument("--decrypt-key", metavar="FILE", help="with --bundles: the hub's bundle decryption key, "
                        "for bundles encrypted to the hub")
    replay.add_argument("--agency", required=True, help="agency id")
    replay.add_argument("--target", required=True, help="fresh database URL to build, e.g. sqlite:///rebuilt.db")
    replay.add_argument("--until", type=_iso_time,
                        help="stop after the last change committed at or before this ISO-8601 time")
    replay.add_argument("--until-position", type=int, metavar="N",
                        help="stop after the last change at or before this source position")
    replay.add_argument("--resource", metavar="TABLE", help="rebuild only this resource (table)")
    replay.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="with --store: share the rebuild among N processes, each taking the rows of a "
                             "share of the records (default 1; an interrupted replay resumes with the same N)")
    replay.add_argument("--cipher-key-file", metavar="FILE", help="with --store: the key of an encrypted store "
                        "(or set EXCHANGE_STORE_CIPHER_KEY)")
    replay.set_defaults(handler=_replay)


def _iso_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _replay(args: argparse.Namespace) -> int:
    from exchange.common.logs import setup_logging
    from exchange.tools import replay

    if args.bundles and not args.key:
        raise InvalidInput("--bundles needs --key, the agency's bundle public key")
    if args.jobs < 1:
        raise InvalidInput(f"--jobs takes a number of processes, at least 1, not {args.jobs}")
    if args.bundles and args.jobs != 1:
        raise InvalidInput("--jobs works with --store; a folder of bundles is replayed in one job")
    setup_logging()
    options = {"until": args.until, "until_position": args.until_position, "resource": args.resource}
    if args.store:
        from exchange.store.at_rest import cipher_from

        cipher = cipher_from(args.cipher_key_file)
        if args.jobs == 1:
            stats = replay.replay(args.store, args.agency, args.target, cipher=cipher, **options)
        else:
            from exchange.tools.replay_parts import replay_in_parts

            stats = replay_in_parts(args.store, args.agency, args.target, jobs=args.jobs, cipher=cipher, **options)
    else:
        from exchange.transport.offline.bundle_log import BundleLog
        from exchange.transport.offline.bundles import load_hub_private_key, load_trusted_keys

        log = BundleLog(args.bundles, args.agency, load_trusted_keys({args.agency: args.key}),
                        load_hub_private_key(args.decrypt_key) if args.decrypt_key else None)
        stats = replay.replay_log(log, args.agency, args.target, **options)
    print_json(stats)
    return 0
