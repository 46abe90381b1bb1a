"""Committed transactions of the stream turned into the changes capture emits, with their positions.

Row images (``Change.before``/``after``), in changes.py terms:

* INSERT: ``after`` is the whole row.  DELETE: ``before`` is the replica
  identity: the key columns (DEFAULT, USING INDEX) or the whole row (FULL).
* UPDATE: ``after`` holds every column that arrived.  An unchanged TOASTed
  value is not sent by PostgreSQL; with REPLICA IDENTITY FULL it is taken
  from the old row, otherwise the column is left out of ``after`` (never
  None or a placeholder), so the node's Updated event does not carry it.
  ``before`` is the old row under FULL, the old key when the key changed,
  else the key taken from the new row.  A key change under DEFAULT identity
  of a row with an unchanged TOASTed value therefore creates the new record
  without that column: use REPLICA IDENTITY FULL for such tables.
* Rows of tables without a key carry their copy number (keyless.py).
* A re-snapshot request in the transaction (resnapshot.py) starts the next
  snapshot pass of each captured table it names (snapshot.py).
* A change is emitted only where the snapshot regions let it through
  (snapshot.py), and a SCHEMA change comes first whenever the relation
  differs from the schema last emitted (schema_history.py), naming the
  columns renamed; a change that needs it has the table read again.  Column types,
  NOT NULL and defaults are as reported by the catalog (NOT NULL and
  defaults as they are when the change is read).  Generated columns are not
  published by pgoutput and are left out.

TRUNCATE of captured tables becomes one TRUNCATE change per table, in its place
in the transaction.

A transaction arrives in pieces (stream.py) and is decoded piece by piece,
numbered as extents.py says, so only a piece's changes are held at a time.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from adapters.postgres import pgoutput
from adapters.postgres.catalog import CatalogColumn, Table, load_table
from adapters.postgres.dialect import split
from adapters.postgres.extents import Extents
from adapters.postgres.keyless import CopyCounts
from adapters.postgres.position import check_lsn
from adapters.postgres.schema_history import SchemaHistory
from adapters.postgres.snapshot import Snapshots
from adapters.postgres.stream import Piece
from adapters.postgres.types import Parser, Types
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, SourceNotReady, TableSchema

log = logging.getLogger(__name__)


@dataclass
class _Open:
    """The transaction being decoded: what its pieces share."""

    begin: pgoutput.Begin
    base: Position  # the position before its first change
    after: Position  # its changes up to here are stored at the node already
    index: int = 0  # changes numbered so far
    emitted: dict[str, TableSchema | None] = field(default_factory=dict)  # the last schema emitted, by table


class TransactionDecoder:
    """Turns transactions into changes, knowing the relations (tables) the stream has described.

    ``db`` returns the source's connection; the other collaborators are the
    source's, which the changes read and extend.
    """

    def __init__(self, slot: str, database: str, tables: Sequence[str], keys: dict[str, tuple[str, ...]],
                 db: Callable[[], Any], types: Types, snapshots: Snapshots, history: SchemaHistory,
                 copies: CopyCounts, extents: Extents):
        self.slot, self.database, self.tables, self.keys = slot, database, tables, keys
        self._db, self._types = db, types
        self._snapshots, self._history, self._copies, self._extents = snapshots, history, copies, extents
        self._relations: dict[int, pgoutput.Relation] = {}
        self._tables: dict[int, Table | None] = {}  # by relation OID: the captured table it is
        self._parsers: dict[int, list[Parser]] = {}  # by relation OID: one per column
        self._open: _Open | None = None

    def clear(self) -> None:
        """Forget the relations and the transaction being read (the stream starts again)."""
        self._relations, self._tables, self._parsers = {}, {}, {}
        self._open = None

    def forget_uncaptured(self) -> None:
        """Look again at relations found not captured (the captured tables grew)."""
        self._tables = {oid: table for oid, table in self._tables.items() if table is not None}

    @property
    def keyless(self) -> bool:
        """Whether a table without a key was seen."""
        return any(t.keyless for t in self._tables.values() if t is not None)

    def changes(self, piece: Piece, after: Position) -> list[ch.Change]:
        """The changes of one piece of a committed transaction to emit (those after ``after``,
        as it was when the transaction began), with their positions."""
        begin = piece.begin
        if piece.first:
            check_lsn(begin.final_lsn)
            self._open = _Open(begin, self._extents.base(begin.final_lsn), after)
        t = self._open
        assert t is not None and t.begin is begin, "a piece of a transaction whose beginning was not read"
        commit_lsn, base, after = begin.final_lsn, t.base, t.after
        changes: list[ch.Change] = []

        def next_position() -> Position:
            t.index += 1
            return self._extents.position(commit_lsn, base, t.index)

        def add(position: Position, **fields: Any) -> None:
            if position > after:  # else the node has it already
                changes.append(ch.Change(position, commit_time=begin.commit_time, txid=str(begin.xid), **fields))

        rows = []
        for message in piece.messages:
            if isinstance(message, pgoutput.Relation):
                self._relations[message.oid] = message
                self._tables.pop(message.oid, None)
            elif isinstance(message, pgoutput.Truncate):
                rows += [(table, ch.TRUNCATE, None, None) for table in map(self._relation_table, message.oids)
                         if table is not None]
            elif isinstance(message, pgoutput.Message):
                if base > after:  # else the node stored a change after it: the pass started before
                    self._request(message, base)
            elif (table := self._relation_table(message.oid)) is not None:
                rows += [(table, *change) for change in self._row_changes(table, message, commit_lsn)]
        emitted = t.emitted
        for table, op, before, after_ in rows:
            resource, schema = table.resource, table.schema
            if resource not in emitted:
                emitted[resource] = self._history.before(resource, base)
            if emitted[resource] is not schema:
                if emitted[resource] != schema:
                    position = next_position()
                    if position > after:
                        described = self._history.describe(position, resource, schema, begin.commit_time)
                        add(position, table=resource, op=ch.SCHEMA, schema=schema, renames=described.change.renames)
                        if described.reread:
                            self._snapshots.reread(resource, position)
                emitted[resource] = schema
            position = next_position()
            if op == ch.TRUNCATE and table.keyless and position > after:
                self._copies.truncate(resource, position)
            add(position, table=resource, op=op, before=self._copies.number(table, before, -1, position, after),
                after=self._copies.number(table, after_, 1, position, after))
        if piece.commit is not None:
            self._extents.close(commit_lsn, Position(base + t.index))
            self._open = None
        return changes

    def _request(self, message: pgoutput.Message, position: Position) -> None:
        """Start a snapshot pass of each captured table the request names."""
        requested = json.loads(message.content)["tables"]
        with self._db().cursor() as cur:
            for resource in dict.fromkeys(requested):
                if resource in self.tables:
                    self._snapshots.request(cur, resource, position)
                else:
                    log.warning("re-snapshot of %s requested, but it is not captured", resource)

    def _relation_table(self, oid: int) -> Table | None:
        """The captured table the last relation message for ``oid`` describes
        (None when not captured): columns as sent, the rest from the catalog."""
        if oid not in self._tables:
            relation = self._relations[oid]
            resource = next((r for r in self.tables if split(r) == (relation.namespace, relation.name)), None)
            self._tables[oid] = None if resource is None else self._load_relation(resource, relation)
            self._parsers[oid] = [self._types.parser(c.type_oid) for c in relation.columns]
        return self._tables[oid]

    def _load_relation(self, resource: str, relation: pgoutput.Relation) -> Table:
        with self._db().cursor() as cur:
            current = load_table(cur, resource, self.keys.get(resource, ()))
        if current is None:
            raise SourceNotReady(f"table {resource!r} no longer exists in database {self.database!r}")
        columns = []
        for c in relation.columns:
            known = current.column(c.name)
            type_name = self._types.name(c.type_oid, c.typmod)
            if known is not None and known.type_oid == c.type_oid:
                columns.append(CatalogColumn(c.name, type_name, c.type_oid, known.notnull, known.default,
                                             known.collation))
            else:
                columns.append(CatalogColumn(c.name, type_name, c.type_oid))
        return current.with_columns(columns)

    def _row_changes(self, table: Table, message: Any, commit_lsn: int) -> list[tuple[str, dict | None, dict | None]]:
        """(op, before, after) for a row message, as far as the regions let it through."""
        relation = self._relations[message.oid]
        if isinstance(message, pgoutput.Insert):
            before, after = None, self._image(relation, message.new)
        elif isinstance(message, pgoutput.Delete):
            before, after = self._old_image(table, relation, message.old), None
        else:
            old = self._old_image(table, relation, message.old) if message.old is not None else None
            after = self._image(relation, message.new)
            if old is not None and table.identity == "f":
                after = {**{k: v for k, v in old.items() if k not in after}, **after}  # unchanged TOASTed values
                after = {c.name: after[c.name] for c in table.columns if c.name in after}
            before = old if old is not None else {k: after[k] for k in table.key if k in after}
        keep_before = before is not None and self._snapshots.in_region(table, before, commit_lsn)
        keep_after = after is not None and self._snapshots.in_region(table, after, commit_lsn)
        if keep_before and keep_after:
            return [(ch.UPDATE, before, after)]
        if keep_after:
            return [(ch.INSERT, None, after)]
        if keep_before:
            return [(ch.DELETE, before, None)]
        return []

    def _image(self, relation: pgoutput.Relation, values: tuple) -> dict[str, Any]:
        return {c.name: None if v is None else parse(v) for c, parse, v in
                zip(relation.columns, self._parsers[relation.oid], values) if v is not pgoutput.UNCHANGED}

    def _old_image(self, table: Table, relation: pgoutput.Relation, values: tuple) -> dict[str, Any]:
        image = self._image(relation, values)
        if table.identity == "f":
            return image
        return {c.name: image[c.name] for c in relation.columns if c.key and c.name in image}
