"""``exchange share query``: one page of a resource's current state from the hub's Query service (Art. 16)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from exchange.cli.output import message_json
from exchange.contracts.errors import InvalidInput
from protos.exchange.v1 import query_pb2 as pb


def request(args: argparse.Namespace, agency: str) -> pb.QueryRequest:
    """The QueryRequest the flags describe; InvalidInput for flags that do not make one."""
    provider, slash, resource = args.resource.partition("/")
    if not slash:
        provider, resource = args.provider or "", args.resource
    elif args.provider and args.provider != provider:
        raise InvalidInput(f"--resource {args.resource!r} names provider {provider}, --provider says {args.provider}")
    if not provider or not resource:
        raise InvalidInput(f"--resource {args.resource!r}: name the provider (PROVIDER/RESOURCE or --provider)")
    key = []
    for text in args.key:
        item, equals, value = text.partition("=")
        if not equals or not item:
            raise InvalidInput(f"--key {text!r} is not ITEM=VALUE")
        key.append(pb.KeyPart(item=item, value=value))
    if key and (args.where or args.page_token):
        raise InvalidInput("--key looks up one record: not with --where or --page-token")
    if args.page_size < 0:
        raise InvalidInput(f"--page-size must be positive, got {args.page_size}")
    return pb.QueryRequest(agency=agency, provider=provider, resource=resource, key=key, where=args.where,
                           page_size=args.page_size, page_token=args.page_token, purpose=args.purpose)


def page_json(page: pb.QueryPage) -> dict[str, Any]:
    """The page as JSON values, each row as the object the hub sent."""
    data = message_json(page)
    data["rows"] = [{"version": row.version, "row": json.loads(row.row)} for row in page.rows]
    return data
