"""The gRPC calls behind ``exchange catalog ...``: submitting entry files, reading and deciding entries."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any, Callable

import grpc

from exchange.cli.output import print_json
from exchange.cli.remote import hub_channel
from exchange.contracts.errors import InvalidInput
from exchange.transport.rpc.channel import client_settings
from hub.catalog import metadata, wire
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

TIMEOUT_SECONDS = 60.0


def load_entry_file(path: str | Path) -> dict[str, Any]:
    """The content of an entry file (TOML, or JSON by its .json suffix), checked.

    Raises InvalidEntry naming the file, each field and its rule, or
    InvalidInput when the file cannot be read as an entry at all."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidInput(f"{path}: cannot read: {e.strerror}") from None
    try:
        content = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise InvalidInput(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    if not isinstance(content, dict):
        raise InvalidInput(f"{path}: expected a table of entry fields")
    return metadata.check(content, where=str(path))


def submit(args: argparse.Namespace) -> int:
    """``exchange catalog submit``: check every file first, then save each (submitted unless ``--draft``)."""
    cfg = client_settings(args)
    contents, problems = [], []
    for name in args.files:
        try:
            contents.append((name, load_entry_file(name)))
        except InvalidInput as e:
            problems.append(str(e))
        except metadata.InvalidEntry as e:
            problems.append("\n".join(f"{name}: {p}" for p in e.problems))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"exchange: nothing submitted: {len(problems)} of {len(args.files)} files have problems",
              file=sys.stderr)
        return 2
    refused = 0
    with hub_channel(cfg) as channel:
        stub = pb_grpc.CatalogStub(channel)
        for name, content in contents:
            try:
                entry = stub.SaveEntry(pb.SaveEntryRequest(content=wire.content_to_pb(content), submit=not args.draft),
                                       timeout=TIMEOUT_SECONDS)
                print_json({"file": name, "code": entry.code, "status": entry.status, "version": entry.version})
            except grpc.RpcError as e:
                refused += 1
                print(f"{name}: the hub refused: {e.details()} ({e.code().name})", file=sys.stderr)
    return 1 if refused else 0


def call(args: argparse.Namespace) -> int:
    """Run one reading or deciding ``exchange catalog`` action against the hub; the exit status."""
    cfg = client_settings(args)
    with hub_channel(cfg) as channel:
        return CALLS[args.action](pb_grpc.CatalogStub(channel), args)


def _list(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> int:
    entries = stub.ListEntries(pb.ListRequest(agency=args.agency, status=args.status), timeout=TIMEOUT_SECONDS).entries
    if args.json:
        print_json([wire.entry_from_pb(e) for e in entries])
    else:
        for e in entries:
            flag = "  schema changed, due " + e.schema_flag.due if e.has_schema_flag else ""
            print(f"{e.code}\t{e.status}\t{e.content.agency}\t{e.content.name}{flag}")
    return 0


def _show(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> int:
    ref = pb.EntryRef(code=args.code)
    shown: Any = (wire.history_from_pb(stub.GetHistory(ref, timeout=TIMEOUT_SECONDS)) if args.history
                  else wire.entry_from_pb(stub.GetEntry(ref, timeout=TIMEOUT_SECONDS)))
    print(json.dumps(shown, ensure_ascii=False, indent=2))
    return 0


def _report(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> int:
    report = wire.report_from_pb(stub.GetReport(pb.ReportRequest(at=args.at), timeout=TIMEOUT_SECONDS))
    if args.json:
        print_json(report)
    else:
        print(render_report(report))
    return 0


def _dcat(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> int:
    document = stub.ExportDcat(pb.DcatRequest(), timeout=TIMEOUT_SECONDS).json_ld
    if args.out:
        Path(args.out).write_text(document + "\n", encoding="utf-8")
    else:
        print(document)
    return 0


def _deciding(request: Callable[[pb_grpc.CatalogStub, argparse.Namespace], pb.Entry]) -> Callable[..., int]:
    """An action that changes an entry and prints its code, new status and version."""
    def run(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> int:
        entry = request(stub, args)
        print_json({"code": entry.code, "status": entry.status, "version": entry.version})
        return 0
    return run


def _decisions(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> list[pb.ItemDecision]:
    rejected = {}
    for text in args.reject:
        item, sep, reason = text.partition("=")
        if not sep or not reason.strip():
            raise InvalidInput(f"--reject {text!r}: expected ITEM=REASON")
        rejected[item] = reason.strip()
    accepted = list(args.accept)
    if args.accept_all:
        items = stub.GetEntry(pb.EntryRef(code=args.code), timeout=TIMEOUT_SECONDS).content.items
        accepted += [i.name for i in items if i.name not in rejected and i.name not in accepted]
    if not accepted and not rejected:
        raise InvalidInput("give --accept ITEM..., --accept-all or --reject ITEM=REASON...")
    return ([pb.ItemDecision(item=i, accepted=True) for i in accepted]
            + [pb.ItemDecision(item=i, accepted=False, reason=r) for i, r in rejected.items()])


CALLS: dict[str, Callable[[pb_grpc.CatalogStub, argparse.Namespace], int]] = {
    "list": _list,
    "show": _show,
    "report": _report,
    "dcat": _dcat,
    "secrecy": _deciding(lambda stub, args: stub.RecordSecrecyReview(pb.SecrecyReviewRequest(
        code=args.code, cleared=args.cleared, sensitivity=args.sensitivity, note=args.note), timeout=TIMEOUT_SECONDS)),
    "review": _deciding(lambda stub, args: stub.ReviewItems(pb.ReviewItemsRequest(
        code=args.code, decisions=_decisions(stub, args)), timeout=TIMEOUT_SECONDS)),
    "publish": _deciding(lambda stub, args: stub.Publish(pb.EntryRef(code=args.code), timeout=TIMEOUT_SECONDS)),
    "return": _deciding(lambda stub, args: stub.Return(pb.ReturnRequest(
        code=args.code, reasons=args.reason), timeout=TIMEOUT_SECONDS)),
    "full-review": _deciding(lambda stub, args: stub.RecordFullReview(pb.FullReviewRequest(
        code=args.code, note=args.note), timeout=TIMEOUT_SECONDS)),
}


def render_report(report: dict[str, Any]) -> str:
    """The report as readable text."""
    lines = [f"Catalog report at {report['at']}", "", "Overdue entries:"]
    lines += [f"  {o['code']}  {o['agency']}  {o['kind']}  due {o['due']}  ({o['name']})" for o in report["overdue"]] \
        or ["  none"]
    lines += ["", "Data published by more than one agency (one datum, one source):"]
    lines += [f"  {s['item']} [{s['conflict']}]: "
              + "; ".join(f"{p['agency']}{' (authoritative)' if p['authoritative'] else ''} ({', '.join(p['codes'])})"
                          for p in s["providers"]) + f"\n    {s['reason']}"
              for s in report["one_datum_one_source"]] or ["  none"]
    lines += ["", "Evaluation per agency:",
              "  agency  entries  published  completeness  overdue  late answers  sync lag (s)  uncatalogued"]
    for e in report["evaluation"]:
        completeness = f"{e['completeness']:.0%}" if e["completeness"] is not None else "—"
        lines.append(f"  {e['agency']}  {e['entries']}  {e['published']}  {completeness}  {e['overdue_entries']}  "
                     f"{_dash(e['late_answers'])}  {_dash(e['sync_lag_seconds'])}  "
                     f"{', '.join(e['uncatalogued_resources']) or '—'}")
    return "\n".join(lines)


def _dash(value: Any) -> str:
    return "—" if value is None else str(value)
