"""The gRPC call behind ``exchange share receipts``: the hub's kept receipts, streamed to a file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from exchange.cli.output import print_json
from exchange.cli.remote import hub_channel
from exchange.tools.receipts import export_line
from exchange.transport.offline.bundles import write_atomically
from exchange.transport.rpc.channel import client_settings
from protos.exchange.v1 import sharing_pb2 as pb
from protos.exchange.v1 import sharing_pb2_grpc as pb_grpc

TIMEOUT_SECONDS = 600.0


def export(args: argparse.Namespace) -> int:
    """Write each receipt as one JSON line (to ``--out`` atomically, else standard output)."""
    query = pb.ReceiptQuery(provider=args.provider or "", consumer=args.consumer or "")
    lines = []
    with hub_channel(client_settings(args)) as channel:
        for r in pb_grpc.ReceiptsStub(channel).Export(query, timeout=TIMEOUT_SECONDS):
            line = export_line(r.receipt_id, r.payload, r.signature, r.certificate, r.recorded_at)
            if args.out:
                lines.append(line)
            else:
                print(line)
    if args.out:
        write_atomically(Path(args.out), "".join(f"{line}\n" for line in lines).encode())
        print_json({"file": args.out, "receipts": len(lines)})
    else:
        sys.stdout.flush()
    return 0
