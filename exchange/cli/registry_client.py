"""The gRPC calls behind ``exchange registry ...``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from exchange.cli.remote import hub_channel
from exchange.transport.rpc.channel import client_settings
from hub.registry.api import record_from_pb
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

TIMEOUT_SECONDS = 60.0
FIELDS = ("uscc", "name", "parent", "district", "administrators", "reviewers")


def call(args: argparse.Namespace) -> int:
    """Run one ``exchange registry`` action; prints JSON (``list``: indented, to be kept as a file)."""
    with hub_channel(client_settings(args)) as channel:
        stub = pb_grpc.RegistryStub(channel)
        if args.action == "list":
            shown: Any = [record_from_pb(r) for r in stub.ListAgencies(pb.AgencyRef(), timeout=TIMEOUT_SECONDS).agencies]
        elif args.action == "show":
            shown = record_from_pb(stub.GetAgency(pb.AgencyRef(agency=args.agency), timeout=TIMEOUT_SECONDS))
        else:
            shown = record_from_pb(_save(stub, args))
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0


def _save(stub: pb_grpc.RegistryStub, args: argparse.Namespace) -> pb.AgencyRecord:
    given = {k: getattr(args, k) for k in FIELDS if getattr(args, k) is not None}
    if args.action == "add":
        return stub.SaveAgency(pb.SaveAgencyRequest(record=pb.AgencyRecord(agency=args.agency, **given), create=True),
                               timeout=TIMEOUT_SECONDS)
    current = stub.GetAgency(pb.AgencyRef(agency=args.agency), timeout=TIMEOUT_SECONDS)
    record = {**{k: v for k, v in record_from_pb(current).items() if k not in ("updated_at", "updated_by")}, **given}
    return stub.SaveAgency(pb.SaveAgencyRequest(record=pb.AgencyRecord(**record)), timeout=TIMEOUT_SECONDS)
