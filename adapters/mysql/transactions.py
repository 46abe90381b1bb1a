"""Binlog transactions turned into the changes capture emits, with their positions.

* Rows: INSERT gives ``after``, DELETE ``before``, UPDATE both, full images
  (``binlog_row_image = FULL``), values as types.py says.  A change is
  emitted only where the snapshot regions let it through (snapshot.py).
* A SCHEMA change comes before a table's row changes whenever the columns
  the binlog's table map names differ from the schema last emitted.
* DDL statements (ddl.py): ``ALTER TABLE`` of a captured table gives a
  SCHEMA change with the columns it renamed, the table as the catalog has
  it now; when the change altered values the binlog does not carry (a
  type changed, a column added with a value for existing rows) the table
  is read again as a snapshot pass.  ``TRUNCATE`` gives a TRUNCATE change.
  ``DROP TABLE`` and ``RENAME TABLE`` of a captured table end its capture
  (the history keeps its rows); ``CREATE TABLE`` or ``RENAME TABLE`` to a
  name ``[source] tables`` selects starts capturing it (snapshot first).
  A statement capture cannot parse that may touch a captured table stops
  capture with an error naming it.
* A row of bookkeeping table ``requests`` is a re-snapshot request; of
  ``markers``, a snapshot session's marker (source.py).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Callable, Sequence

from adapters.keyless import CopyCounts
from adapters.mysql import ddl
from adapters.mysql.bookkeeping import BOOKKEEPING
from adapters.mysql.catalog import CatalogColumn, Table, load_table
from adapters.mysql.history import SchemaHistory, needs_reread
from adapters.mysql.position import SHIFT, Frame, UnsupportedChange, describe
from adapters.mysql.snapshot import Snapshots
from adapters.mysql.stream import Rows, Statement, Transaction
from adapters.mysql.types import Convert, convert_row, converters, datetime_of
from adapters.selection import selected
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, TableSchema
from exchange.contracts.errors import OperationFailed

log = logging.getLogger(__name__)


class UninterpretableStatement(OperationFailed):
    """A DDL statement on a captured table that capture cannot describe."""


class TransactionDecoder:
    """Turns transactions into changes; ``tables`` is the source's (shared) list of captured tables."""

    def __init__(self, source: str, database: str, tables: list[str], entries: Sequence[str], exclude: Sequence[str],
                 keys: dict[str, tuple[str, ...]], db: Callable[[], Any], snapshots: Snapshots,
                 history: SchemaHistory, copies: CopyCounts, frame: Frame):
        """``frame`` packs the source's coordinates into positions (position.py)."""
        self.source, self.database, self.tables = source, database, tables
        self._frame = frame
        self.entries, self.exclude, self.keys = entries, exclude, keys
        self._db, self._snapshots, self._history, self._copies = db, snapshots, history, copies
        self._tables: dict[str, tuple[Table, dict[str, Convert]]] = {}

    def clear(self) -> None:
        self._tables = {}

    @property
    def keyless(self) -> bool:
        """Whether a table without a key was seen."""
        return any(table.keyless for table, _ in self._tables.values())

    def marker(self, unit: Transaction) -> str | None:
        """The marker id a transaction writes, if it is a snapshot marker of this source."""
        for item in unit.items:
            if isinstance(item, Rows) and item.schema == BOOKKEEPING and item.table == "markers":
                for row in item.rows:
                    values = row.get("values") or {}
                    if values.get("source") == self.source:
                        return values.get("id")
        return None

    def changes(self, unit: Transaction, after: Position) -> list[ch.Change]:
        """The changes of one transaction after ``after``, with their positions."""
        base, capacity = self._frame.pack(unit.start), (unit.end - unit.start) << SHIFT
        commit_time = datetime_of(unit.commit_time)
        changes: list[ch.Change] = []
        positions = (Position(base + i) for i in range(1, capacity))
        last = [Position(base)]

        def next_position() -> Position:
            last[0] = next(positions, None)
            if last[0] is None:
                raise UnsupportedChange(f"transaction {unit.txid} has more changes than positions can encode")
            return last[0]

        def add(**fields: Any) -> None:
            position = next_position()
            if position > after:
                changes.append(ch.Change(position, commit_time=commit_time, txid=unit.txid, **fields))

        for item in unit.items:
            if isinstance(item, Statement):
                self._statement(item, unit, after, next_position, changes, commit_time)
            elif item.schema == BOOKKEEPING:
                if item.table == "requests" and base > after:
                    self._request(item, base)
            elif item.schema == self.database and item.table in self.tables:
                table, convert = self._table(item.table)
                if item.columns != table.schema.column_names:
                    table, convert = self._reload(item.table, item.columns)
                kept = []
                for op, before, after_ in self._rows(item, convert):
                    keep_before = before is not None and self._snapshots.in_region(table, before, unit.start)
                    keep_after = after_ is not None and self._snapshots.in_region(table, after_, unit.start)
                    if keep_before and keep_after:
                        kept.append((ch.UPDATE, before, after_))
                    elif keep_after:
                        kept.append((ch.INSERT, None, after_))
                    elif keep_before:
                        kept.append((ch.DELETE, before, None))
                if kept and self._history.before(item.table, last[0] + 1) != table.schema:
                    schema_position = next_position()
                    if schema_position > after:
                        changes.append(self._history.change(schema_position, item.table, table.schema, commit_time,
                                                            unit.txid))
                for op, before, after_ in kept:
                    position = next_position()
                    if position > after:
                        changes.append(ch.Change(
                            position, item.table, op, self._copies.number(table, before, -1, position, after),
                            self._copies.number(table, after_, 1, position, after), commit_time, unit.txid))
        return changes

    def _rows(self, item: Rows, convert: dict[str, Convert]) -> list[tuple[str, dict | None, dict | None]]:
        found = []
        for row in item.rows:
            if item.op == "insert":
                found.append(("insert", None, _image(row, "values", "none_sources", convert)))
            elif item.op == "delete":
                found.append(("delete", _image(row, "values", "none_sources", convert), None))
            else:
                found.append(("update", _image(row, "before_values", "before_none_sources", convert),
                              _image(row, "after_values", "after_none_sources", convert)))
        return found

    def _statement(self, item: Statement, unit: Transaction, after: Position, next_position: Callable[[], Position],
                   changes: list[ch.Change], commit_time) -> None:
        for action in ddl.interpret(item.query, item.schema, self.database):
            table = action.table
            captured = table in self.tables
            if action.kind == "unknown":
                if captured:
                    raise UninterpretableStatement(
                        f"capture cannot interpret a statement on captured table {table!r} at "
                        f"{describe(unit.start)} ({unit.txid}): {item.query[:500]!r}. Capture stops here rather "
                        f"than guess; to go on, add {table!r} to [source] exclude and restart the node, then take it "
                        "out again and run exchange node resnapshot for it")
                continue
            if action.kind == "alter" and captured:
                position = next_position()
                previous = self._history.before(table, position)
                current = self._after_statement(table, previous, action)
                if position > after:
                    changes.append(self._history.change(position, table, current.schema, commit_time, unit.txid,
                                                        action.renames))
                    if needs_reread(previous, current.schema, action.renames):
                        self._snapshots.reread(table, position)
            elif action.kind == "truncate" and captured:
                position = next_position()
                if position > after:
                    if self._table(table)[0].keyless:
                        self._copies.truncate(table, position)
                    changes.append(ch.Change(position, table, ch.TRUNCATE, commit_time=commit_time, txid=unit.txid))
            elif action.kind in ("drop", "rename") and captured:
                log.warning("captured table %s was %s at %s: its capture ends (the history keeps its rows)", table,
                            "dropped" if action.kind == "drop" else f"renamed to {action.new}", describe(unit.start))
                self.tables.remove(table)
                self._tables.pop(table, None)
                self._snapshots.forget_table(table)
            if action.kind in ("create", "rename"):
                name = action.new or table
                if name not in self.tables and selected(name, self.entries, self.exclude):
                    log.info("capturing new table %s (created at %s)", name, describe(unit.start))
                    self.tables.append(name)
                    self._tables.pop(name, None)

    def _request(self, item: Rows, position: int) -> None:
        with self._db().cursor() as cur:
            for row in item.rows:
                values = row.get("values") or {}
                if values.get("source") != self.source:
                    continue
                for resource in dict.fromkeys(json.loads(values["tables"])):
                    if resource in self.tables:
                        self._snapshots.request(cur, resource, position)
                    else:
                        log.warning("re-snapshot of %s requested, but it is not captured", resource)

    def _table(self, resource: str) -> tuple[Table, dict[str, Convert]]:
        if resource not in self._tables:
            with self._db().cursor() as cur:
                table = load_table(cur, self.database, resource, self.keys.get(resource))
            if table is None:
                raise OperationFailed(f"table {resource!r} no longer exists in database {self.database!r}")
            self._tables[resource] = (table, converters(table.columns, binlog=True))
        return self._tables[resource]

    def _after_statement(self, resource: str, previous: TableSchema | None, action: ddl.Ddl) -> Table:
        """The table as the ALTER statement left it: the catalog's, unless later statements already changed
        the catalog's columns, then the columns the statement leaves (their details from the catalog, the
        schema before or the statement)."""
        self._tables.pop(resource, None)
        current, _ = self._table(resource)
        names = action.columns(list(previous.column_names)) if previous is not None else None
        if names is None or tuple(names) == current.schema.column_names:
            return current
        old = {action.renames.get(c.name, c.name): c for c in previous.columns}
        columns = []
        for name in names:
            declared = action.added_type(name)
            known = current.column(name)
            if known is not None and (declared is None or known.column_type.startswith(declared)):
                columns.append(known)
            elif declared is not None or name not in old:
                columns.append(CatalogColumn(name, (declared or "longtext").split("(")[0].split()[0],
                                             declared or "longtext"))
            else:
                before = old[name]
                columns.append(CatalogColumn(name, before.type.split("(")[0].split()[0].lower(), before.type,
                                             before.notnull, before.default))
        key = tuple(k for k in current.key if k in names) or tuple(k for k in previous.primary_key if k in names)
        table = Table(resource, tuple(columns), key if not current.configured_key else current.primary_key,
                      current.unique_keys, current.configured_key, current.keyless)
        self._tables[resource] = (table, converters(table.columns, binlog=True))
        return table

    def _reload(self, resource: str, names: tuple[str, ...]) -> tuple[Table, dict[str, Convert]]:
        """The table with the columns the table map names (the catalog may be ahead of the binlog)."""
        self._tables.pop(resource, None)
        table, convert = self._table(resource)
        if table.schema.column_names == names:
            return table, convert
        columns = tuple(table.column(n) or CatalogColumn(n, "longtext", "longtext") for n in names)
        narrowed = Table(table.resource, columns, table.primary_key, table.unique_keys, table.configured_key,
                         table.keyless)
        self._tables[resource] = (narrowed, converters(columns, binlog=True))
        return self._tables[resource]


def _image(row: dict[str, Any], values: str, nones: str, convert: dict[str, Convert]) -> dict[str, Any]:
    image = dict(row[values])
    for name, why in (row.get(nones) or {}).items():
        if why == "empty set" and name in image:
            image[name] = ""
    return convert_row(convert, image)
