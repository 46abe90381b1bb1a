"""``exchange catalog ...``: compile entry files, submit them, and review, list and report over gRPC."""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path
from typing import Any

import grpc

from exchange.transport.rpc.channel import add_hub_arguments, client_settings, open_channel
from hub.catalog import metadata, wire
from hub.catalog.entry import STATUSES
from hub.catalog.terms import SENSITIVITIES
from protos.exchange.v1 import catalog_pb2 as pb
from protos.exchange.v1 import catalog_pb2_grpc as pb_grpc

TIMEOUT_SECONDS = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``catalog`` subcommands."""
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    draft = actions.add_parser("draft", help="write an editable entry file for each captured table (node)")
    draft.add_argument("--config", help="node TOML file: the source and tables to describe")
    draft.add_argument("--to", required=True, metavar="DIR", help="directory for the entry files (existing files are kept)")
    draft.add_argument("--format", choices=("toml", "json"), default="toml", help="file format (default toml)")

    submit = actions.add_parser("submit", help="check entry files and submit them for review")
    submit.add_argument("files", nargs="+", metavar="FILE", help="entry files (.toml or .json)")
    submit.add_argument("--draft", action="store_true", help="save them as drafts without submitting")
    add_hub_arguments(submit)

    listing = actions.add_parser("list", help="list catalog entries")
    listing.add_argument("--agency", default="", help="only this agency's entries")
    listing.add_argument("--status", default="", choices=("",) + STATUSES, help="only entries in this status")
    listing.add_argument("--json", action="store_true", help="print JSON")
    add_hub_arguments(listing)

    show = actions.add_parser("show", help="show one entry, or with --history every event of it")
    show.add_argument("code")
    show.add_argument("--history", action="store_true", help="print the entry's whole history")
    add_hub_arguments(show)

    secrecy = actions.add_parser("secrecy", help="record the secrecy review of a submitted entry (administrators)")
    secrecy.add_argument("code")
    outcome = secrecy.add_mutually_exclusive_group(required=True)
    outcome.add_argument("--cleared", action="store_true", help="the content may be provided as declared")
    outcome.add_argument("--not-cleared", action="store_true", help="it may not (say why with --note)")
    secrecy.add_argument("--sensitivity", nargs="*", default=[], choices=sorted(SENSITIVITIES),
                         help="kinds of protected data it holds (sharing then needs a secrecy agreement)")
    secrecy.add_argument("--note", default="", help="the reviewer's note")
    add_hub_arguments(secrecy)

    review = actions.add_parser("review", help="record item-by-item decisions on a submitted entry (administrators)")
    review.add_argument("code")
    review.add_argument("--accept", nargs="*", default=[], metavar="ITEM", help="data items accepted")
    review.add_argument("--accept-all", action="store_true", help="accept every data item not rejected")
    review.add_argument("--reject", nargs="*", default=[], metavar="ITEM=REASON", help="data items not accepted, and why")
    add_hub_arguments(review)

    publish = actions.add_parser("publish", help="publish a reviewed entry (administrators)")
    publish.add_argument("code")
    add_hub_arguments(publish)

    back = actions.add_parser("return", help="return a submitted entry to its agency with reasons (administrators)")
    back.add_argument("code")
    back.add_argument("--reason", action="append", default=[], help="a reason (repeatable)")
    add_hub_arguments(back)

    full = actions.add_parser("full-review", help="record the yearly full review of a published entry (administrators)")
    full.add_argument("code")
    full.add_argument("--note", default="")
    add_hub_arguments(full)

    report = actions.add_parser("report", help="overdue entries, one datum one source, and the per-agency evaluation")
    report.add_argument("--at", default="", metavar="TIME", help="evaluate as of this ISO-8601 time (default now)")
    report.add_argument("--json", action="store_true", help="print JSON")
    add_hub_arguments(report)

    dcat = actions.add_parser("dcat", help="export the published catalog as DCAT JSON-LD")
    dcat.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    add_hub_arguments(dcat)


def load_entry_file(path: str | Path) -> dict[str, Any]:
    """The content of an entry file (TOML, or JSON by its .json suffix), checked.

    Raises InvalidEntry naming the file, each field and its rule, or
    ValueError when the file cannot be read as an entry at all."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ValueError(f"{path}: cannot read: {e.strerror}") from None
    try:
        content = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {e}") from None
    if not isinstance(content, dict):
        raise ValueError(f"{path}: expected a table of entry fields")
    return metadata.check(content, where=str(path))


def run(args: argparse.Namespace) -> int:
    """Carry out one ``exchange catalog`` command; the exit status."""
    if args.action == "draft":
        from node import config
        from exchange.tools import catalog_draft

        print(json.dumps(catalog_draft.draft(config.load(args.config), args.to, args.format), ensure_ascii=False))
        return 0
    cfg = client_settings(args)
    address = cfg["hub.address"]
    if args.action == "submit":
        return _submit(args, address, cfg)
    with open_channel(address, cfg) as channel:
        stub = pb_grpc.CatalogStub(channel)
        try:
            return _call(stub, args)
        except grpc.RpcError as e:
            print(f"exchange: the hub refused: {e.details()} ({e.code().name})", file=sys.stderr)
            return 1


def _submit(args: argparse.Namespace, address: str, cfg: dict[str, Any]) -> int:
    contents, problems = [], []
    for name in args.files:
        try:
            contents.append((name, load_entry_file(name)))
        except ValueError as e:  # InvalidEntry included
            problems.append(str(e) if not isinstance(e, metadata.InvalidEntry) else
                            "\n".join(f"{name}: {p}" for p in e.problems))
    if problems:
        print("\n".join(problems), file=sys.stderr)
        print(f"exchange: nothing submitted: {len(problems)} of {len(args.files)} files have problems",
              file=sys.stderr)
        return 2
    refused = 0
    with open_channel(address, cfg) as channel:
        stub = pb_grpc.CatalogStub(channel)
        for name, content in contents:
            try:
                entry = stub.SaveEntry(pb.SaveEntryRequest(content=wire.content_to_pb(content), submit=not args.draft),
                                       timeout=TIMEOUT_SECONDS)
                print(json.dumps({"file": name, "code": entry.code, "status": entry.status, "version": entry.version},
                                 ensure_ascii=False))
            except grpc.RpcError as e:
                refused += 1
                print(f"{name}: the hub refused: {e.details()} ({e.code().name})", file=sys.stderr)
    return 1 if refused else 0


def _call(stub: pb_grpc.CatalogStub, args: argparse.Namespace) -> int:
    t = TIMEOUT_SECONDS
    if args.action == "list":
        entries = stub.ListEntries(pb.ListRequest(agency=args.agency, status=args.status), timeout=t).entries
        if args.json:
            print(json.dumps([wire.entry_from_pb(e) for e in entries], ensure_ascii=False))
        else:
            for e in entries:
                flag = "  schema changed, due " + e.schema_flag.due if e.has_schema_flag else ""
                print(f"{e.code}\t{e.status}\t{e.content.agency}\t{e.content.name}{flag}")
        return 0
    if args.action == "show":
        if args.history:
            print(json.dumps(wire.history_from_pb(stub.GetHistory(pb.EntryRef(code=args.code), timeout=t)),
                             ensure_ascii=False, indent=2))
        else:
            print(json.dumps(wire.entry_from_pb(stub.GetEntry(pb.EntryRef(code=args.code), timeout=t)),
                             ensure_ascii=False, indent=2))
        return 0
    if args.action == "report":
        report = wire.report_from_pb(stub.GetReport(pb.ReportRequest(at=args.at), timeout=t))
        print(json.dumps(report, ensure_ascii=False) if args.json else render_report(report))
        return 0
    if args.action == "dcat":
        document = stub.ExportDcat(pb.DcatRequest(), timeout=t).json_ld
        if args.out:
            Path(args.out).write_text(document + "\n", encoding="utf-8")
        else:
            print(document)
        return 0
    entry = _decide(stub, args, t)
    print(json.dumps({"code": entry.code, "status": entry.status, "version": entry.version}, ensure_ascii=False))
    return 0


def _decide(stub: pb_grpc.CatalogStub, args: argparse.Namespace, t: float) -> pb.Entry:
    if args.action == "secrecy":
        return stub.RecordSecrecyReview(pb.SecrecyReviewRequest(
            code=args.code, cleared=args.cleared, sensitivity=args.sensitivity, note=args.note), timeout=t)
    if args.action == "review":
        return stub.ReviewItems(pb.ReviewItemsRequest(code=args.code, decisions=_decisions(stub, args, t)), timeout=t)
    if args.action == "publish":
        return stub.Publish(pb.EntryRef(code=args.code), timeout=t)
    if args.action == "return":
        return stub.Return(pb.ReturnRequest(code=args.code, reasons=args.reason), timeout=t)
    if args.action == "full-review":
        return stub.RecordFullReview(pb.FullReviewRequest(code=args.code, note=args.note), timeout=t)
    raise AssertionError(args.action)


def _decisions(stub: pb_grpc.CatalogStub, args: argparse.Namespace, t: float) -> list[pb.ItemDecision]:
    rejected = {}
    for text in args.reject:
        item, sep, reason = text.partition("=")
        if not sep or not reason.strip():
            raise ValueError(f"--reject {text!r}: expected ITEM=REASON")
        rejected[item] = reason.strip()
    accepted = list(args.accept)
    if args.accept_all:
        items = stub.GetEntry(pb.EntryRef(code=args.code), timeout=t).content.items
        accepted += [i.name for i in items if i.name not in rejected and i.name not in accepted]
    if not accepted and not rejected:
        raise ValueError("give --accept ITEM..., --accept-all or --reject ITEM=REASON...")
    return ([pb.ItemDecision(item=i, accepted=True) for i in accepted]
            + [pb.ItemDecision(item=i, accepted=False, reason=r) for i, r in rejected.items()])


def render_report(report: dict[str, Any]) -> str:
    """The report as readable text."""
    lines = [f"Catalog report at {report['at']}", "", "Overdue entries:"]
    lines += [f"  {o['code']}  {o['agency']}  {o['kind']}  due {o['due']}  ({o['name']})" for o in report["overdue"]] \
        or ["  none"]
    lines += ["", "Data items published by more than one agency (one datum, one source):"]
    lines += [f"  {s['item']}: " + "; ".join(f"{p['agency']} ({', '.join(p['codes'])})" for p in s["providers"])
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
