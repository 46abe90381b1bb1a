"""Identifier checks at capture and the node's data-quality report (Art. 13).

Columns declared in ``[source] identifiers`` hold unified social credit
codes (GB 32100) or resident ID numbers (GB 11643).  An invalid value is
still captured, because the source is the truth of what it holds, but each
one written into an event is counted in
``exchange_node_invalid_identifiers_total{resource,kind}``; ``exchange node
quality`` lists the records whose current value is invalid, read from the
node's own event log, so the report can never disagree with what was
captured.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Callable, Iterable, Sequence

from adapters.selection import selected
from exchange.common.config import Config
from exchange.contracts.errors import InvalidInput
from exchange.contracts.events import RecordCreated, RecordDeleted, RecordEvent, RecordUpdated, make_mapper
from exchange.contracts.identifiers import is_valid_resident_id, is_valid_uscc
from exchange.store import EventStore
from exchange.store.at_rest import store_cipher
from node.metrics import METRICS, NodeMetrics

KINDS: dict[str, Callable[[Any], bool]] = {"uscc": is_valid_uscc, "resident_id": is_valid_resident_id}
READ_BATCH = 5000


class IdentifierCheck:
    """The declared identifier columns of each captured table, and their check."""

    def __init__(self, declared: dict[str, dict[str, str]], tables: Sequence[str], metrics: NodeMetrics = METRICS,
                 exclude: Sequence[str] = ()):
        self.metrics = metrics
        for table, columns in declared.items():
            if not selected(table, tables, exclude):
                raise InvalidInput(f"[source] identifiers names table {table!r}, which [source] tables does not "
                                   "select")
            if not isinstance(columns, dict):
                raise InvalidInput(f"[source] identifiers.{table}: expected {{column = \"uscc\" | \"resident_id\"}}")
            for column, kind in columns.items():
                if kind not in KINDS:
                    raise InvalidInput(f"[source] identifiers.{table}.{column}: unknown kind {kind!r}; "
                                     f"use {' or '.join(KINDS)}")
        self.declared = declared

    @classmethod
    def from_config(cls, cfg: Config, metrics: NodeMetrics = METRICS) -> "IdentifierCheck":
        return cls(cfg.source.identifiers, cfg.source.tables, metrics, cfg.source.exclude)

    def invalid(self, table: str, values: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """(column, kind, value) of each declared column in ``values`` whose value is invalid (nulls are not)."""
        return [(column, kind, values[column]) for column, kind in self.declared.get(table, {}).items()
                if column in values and values[column] is not None and not KINDS[kind](values[column])]

    def count(self, events: Iterable[RecordEvent]) -> None:
        """Count the invalid identifiers that captured events carry (the capture hook, once per batch)."""
        found = Counter((event.resource, kind) for event in events if event.resource in self.declared
                        for _, kind, _ in self.invalid(event.resource, _values(event)))
        for (resource, kind), invalid in found.items():
            self.metrics.invalid_identifiers.labels(resource, kind).inc(invalid)


def _values(event: RecordEvent) -> dict[str, Any]:
    if isinstance(event, RecordCreated):
        return event.row
    if isinstance(event, RecordUpdated):
        return event.changed
    return {}


def quality_report(cfg: Config) -> dict[str, Any]:
    """Records whose declared identifier columns currently hold an invalid value, with counts."""
    check = IdentifierCheck.from_config(cfg)
    store = EventStore(cfg.store.url, create=False, cipher=store_cipher(cfg))
    mapper = make_mapper()
    invalid: dict[str, dict[str, dict[str, Any]]] = {}  # record id -> column -> finding
    captured: dict[tuple[str, str], int] = {}
    try:
        recorder = store.node_recorder(cfg.agency)
        position = 0
        while batch := recorder.read(position, READ_BATCH):
            position = batch[-1].id
            for notification in batch:
                if not notification.topic.startswith("exchange.record:"):
                    continue
                event = mapper.to_domain_event(notification)
                if event.resource not in check.declared:
                    continue
                oid = str(event.originator_id)
                values = _values(event)
                found = invalid.pop(oid, {}) if isinstance(event, RecordDeleted) else invalid.setdefault(oid, {})
                for column in values:
                    found.pop(column, None)
                for column, kind, value in check.invalid(event.resource, values):
                    captured[(event.resource, kind)] = captured.get((event.resource, kind), 0) + 1
                    found[column] = {"resource": event.resource, "key": event.key, "column": column, "kind": kind,
                                     "value": value}
                if not found:
                    invalid.pop(oid, None)
    finally:
        store.close()
    findings = sorted((f for columns in invalid.values() for f in columns.values()),
                      key=lambda f: (f["resource"], f["column"], str(f["key"])))
    current: dict[tuple[str, str], int] = {}
    for f in findings:
        current[(f["resource"], f["kind"])] = current.get((f["resource"], f["kind"]), 0) + 1
    return {
        "agency": cfg.agency,
        "declared": check.declared,
        "summary": [{"resource": r, "kind": k, "invalid_now": current.get((r, k), 0), "invalid_captured": n}
                    for (r, k), n in sorted(captured.items())],
        "invalid": findings,
    }


def render(report: dict[str, Any]) -> str:
    """The report as readable text."""
    if not report["declared"]:
        return "no identifier columns are declared: set [source] identifiers = {table = {column = \"uscc\"}}"
    lines = [f"Data quality of agency {report['agency']}: identifiers with an invalid check character", ""]
    lines += [f"  {s['resource']} {s['kind']}: {s['invalid_now']} invalid now, {s['invalid_captured']} captured "
              "with an invalid value" for s in report["summary"]] or ["  every captured identifier is valid"]
    if report["invalid"]:
        lines += ["", "Records holding an invalid identifier now:"]
        lines += [f"  {f['resource']} {f['key']}: {f['column']} = {f['value']!r} (not a valid {f['kind']})"
                  for f in report["invalid"]]
    return "\n".join(lines)
