"""Compare two databases table by table: row counts, content checksums, columns.

Each side is streamed once in key order; columns are compared by name,
whatever their order in the table, values in the normal form of
exchange/tools/equivalence.py (so SQLite, PostgreSQL and MariaDB/MySQL
holding the same data compare equal).  The checksum is the sum (mod
2**256) of the rows' SHA-256 digests, so it does not depend on row order; the
merge of the two key-ordered streams names the first differing keys.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any, Iterator

import adapters
from exchange.contracts.changes import TableReader
from exchange.contracts.events import canonical_json
from exchange.tools import equivalence

MAX_DIFFERENCES = 5
_MISSING = object()


@dataclass
class Side:
    """One side of a table comparison."""

    rows: int
    checksum: str  # 64 hex digits
    columns: list[str]


@dataclass
class Difference:
    key: dict[str, Any]
    reason: str  # "missing in target", "missing in source" or "values differ: col, ..."


@dataclass
class TableResult:
    table: str
    source: Side | None  # None: the table does not exist there
    target: Side | None
    differences: list[Difference] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.source is not None and self.source == self.target


@dataclass
class Report:
    source_url: str
    target_url: str
    tables: list[TableResult]

    @property
    def equal(self) -> bool:
        return all(t.equal for t in self.tables)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (bytes in keys become {"$bytes": base64})."""
        return json.loads(canonical_json({
            "source": self.source_url,
            "target": self.target_url,
            "equal": self.equal,
            "tables": [{**asdict(t), "equal": t.equal} for t in self.tables],
        }))

    def render(self) -> str:
        """A readable report: one line per table, then its differing keys."""
        lines = [f"verify {self.source_url} -> {self.target_url}: {'EQUAL' if self.equal else 'DIFFERENT'}"]
        width = max((len(t.table) for t in self.tables), default=0)
        for t in self.tables:
            lines.append(f"  {t.table:<{width}}  source {_count(t.source)}  target {_count(t.target)}  "
                         f"{'OK' if t.equal else 'DIFFERENT'}")
            if t.source and t.target and t.source.columns != t.target.columns:
                lines.append(f"    columns differ: source {', '.join(t.source.columns)}; "
                             f"target {', '.join(t.target.columns)}")
            lines.extend(f"    {canonical_json(d.key)}: {d.reason}" for d in t.differences)
        return "\n".join(lines)


def _count(side: Side | None) -> str:
    return "missing" if side is None else f"{side.rows} rows"


def verify(source_url: str, target_url: str, tables: list[str] | None = None) -> Report:
    """Compare ``tables`` (default: every table of either side) of two databases."""
    source, target = adapters.open_reader(source_url), adapters.open_reader(target_url)
    try:
        in_source, in_target = set(source.tables()), set(target.tables())
        names = tables if tables is not None else sorted(in_source | in_target)
        results = [_compare(name, source if name in in_source else None, target if name in in_target else None)
                   for name in names]
        return Report(source_url, target_url, results)
    finally:
        source.close()
        target.close()


class _Stream:
    """A side's rows in key order, counted and checksummed as they pass."""

    def __init__(self, reader: TableReader | None, table: str, key: list[str],
                 normals: dict[str, equivalence.Normal]):
        self.exists = reader is not None
        self._normals = normals
        # By name: the order of a table's columns differs after some DDL (an added column comes last).
        self.columns = sorted(reader.table_schema(table).column_names) if reader is not None else []
        self._rows: Iterator[dict[str, Any]] = reader.rows(table, order_by=key) if reader is not None else iter(())
        self._count = 0
        self._sum = 0

    def next(self) -> dict[str, Any] | None:
        row = next(self._rows, None)
        if row is not None:
            row = equivalence.row(row, self._normals)
            self._count += 1
            self._sum = (self._sum + int(hashlib.sha256(canonical_json(row).encode()).hexdigest(), 16)) % 2**256
        return row

    def side(self) -> Side | None:
        return Side(self._count, f"{self._sum:064x}", self.columns) if self.exists else None


def _compare(table: str, source: TableReader | None, target: TableReader | None) -> TableResult:
    key = _key_columns(table, source, target)
    normals = _normals(table, source, target)
    left, right = _Stream(source, table, key, normals), _Stream(target, table, key, normals)
    differences: list[Difference] = []

    def note(row: dict[str, Any], reason: str) -> None:
        if len(differences) < MAX_DIFFERENCES:
            differences.append(Difference({k: row.get(k) for k in key}, reason))

    a, b = left.next(), right.next()
    while a is not None or b is not None:
        order_a = _order(a, key) if a is not None else None
        order_b = _order(b, key) if b is not None else None
        if b is None or (a is not None and order_a < order_b):
            note(a, "missing in target")
            a = left.next()
        elif a is None or order_b < order_a:
            note(b, "missing in source")
            b = right.next()
        else:
            changed = [c for c in dict.fromkeys([*a, *b]) if not _same(a.get(c, _MISSING), b.get(c, _MISSING))]
            if changed:
                note(a, "values differ: " + ", ".join(changed))
            a, b = left.next(), right.next()
    return TableResult(table, left.side(), right.side(), differences)


def _key_columns(table: str, *readers: TableReader | None) -> list[str]:
    """The declared primary key of either side, else every column (rows are then their own key)."""
    schemas = [r.table_schema(table) for r in readers if r is not None]
    for schema in schemas:
        if schema.primary_key:
            return list(schema.primary_key)
    return list(schemas[0].column_names) if schemas else []


def _normals(table: str, *readers: TableReader | None) -> dict[str, equivalence.Normal]:
    """The normal form of each column, by the types both sides declare it."""
    declared: dict[str, list[str]] = {}
    for reader in readers:
        for c in reader.table_schema(table).columns if reader is not None else ():
            declared.setdefault(c.name, []).append(c.type)
    return {name: equivalence.column(types) for name, types in declared.items()}


def _order(row: dict[str, Any], key: list[str]) -> tuple:
    """Sort key matching SQLite's order: NULL < numbers < text < blobs."""
    ranked = []
    for column in key:
        value = row.get(column)
        rank = (0 if value is None else 1 if isinstance(value, (int, float, Decimal)) else 2 if isinstance(value, str)
                else 3)
        ranked.append((rank, value if value is not None else 0))
    return tuple(ranked)


def _same(x: Any, y: Any) -> bool:
    return type(x) is type(y) and x == y  # 1 and 1.0 are different stored values
