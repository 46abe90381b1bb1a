"""The schemas capture has emitted, by table and position, kept in the source database.

A SCHEMA change comes before a table's snapshot rows and before the first
change whose relation (columns, types) differs from the last schema
emitted.  The history is stored (table ``exchange_capture.schemas``) with
the position it was emitted at, so a source that starts again knows what the
node has seen.

Columns are identified by their number in the catalog (``pg_attribute.attnum``,
never reused), kept with each schema emitted: pgoutput's relation messages
name columns only, so a column whose number stays while its name changes
was renamed, and the SCHEMA change says so (``Change.renames``).  A change
that keeps values but cannot be described exactly (a column's type changed,
a column added with a default that filled the existing rows, columns
dropped and added at once) asks for the table to be read again
(``Described.reread``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

from adapters.postgres.dialect import BOOKKEEPING, COPY_COLUMN, qualified
from exchange.contracts import changes as ch
from exchange.contracts.changes import Position, TableSchema


@dataclass(frozen=True)
class Emitted:
    position: int
    schema: TableSchema
    attnums: dict[str, int]  # column name -> attnum (columns of histories written before attnums: none)


@dataclass(frozen=True)
class Described:
    """A SCHEMA change and whether the table must be read again to stay equal to the source."""

    change: ch.Change
    reread: bool


class SchemaHistory:
    """The schemas emitted for the slot ``slot``; ``db`` returns the source's connection."""

    def __init__(self, slot: str, db: Callable[[], Any]):
        self.slot = slot
        self._db = db
        self._schemas: dict[str, list[Emitted]] = {}  # emitted, by position

    def load(self, cur) -> None:
        """Read the stored history (after the rows beyond the node's position were deleted)."""
        cur.execute(f"SELECT resource, position, schema FROM {BOOKKEEPING}.schemas WHERE slot = %s "
                    "ORDER BY position", (self.slot,))
        self._schemas = {}
        for resource, position, schema in cur.fetchall():
            data = json.loads(schema)
            self._schemas.setdefault(resource, []).append(
                Emitted(position, TableSchema.from_dict(data), data.get("attnums", {})))

    def before(self, resource: str, position: int) -> TableSchema | None:
        """The schema last emitted for ``resource`` before ``position``."""
        found = self._before(resource, position)
        return found.schema if found else None

    def change(self, position: Position, resource: str, schema: TableSchema, at: datetime) -> ch.Change:
        """The SCHEMA change emitting ``schema`` at ``position``, recorded."""
        return self.describe(position, resource, schema, at).change

    def describe(self, position: Position, resource: str, schema: TableSchema, at: datetime) -> Described:
        """The SCHEMA change emitting ``schema`` at ``position`` (with the columns renamed since the
        schema before), recorded; and whether the table is to be read again."""
        previous = self._before(resource, position)
        attnums = self._attnums(resource, schema, previous)
        renames, reread = _compare(previous, schema, attnums)
        self.record(position, resource, schema, attnums)
        return Described(ch.Change(position, resource, ch.SCHEMA, commit_time=at, schema=schema,
                                   renames=renames or None), reread)

    def record(self, position: Position, resource: str, schema: TableSchema,
               attnums: dict[str, int] | None = None) -> None:
        """Remember (and store) that ``schema`` is emitted at ``position``."""
        history = self._schemas.setdefault(resource, [])
        if any(e.position == position for e in history):
            return
        if attnums is None:
            attnums = self._attnums(resource, schema, self._before(resource, position))
        history.append(Emitted(position, schema, attnums))
        history.sort(key=lambda entry: entry.position)
        with self._db().cursor() as cur:
            cur.execute(f"INSERT INTO {BOOKKEEPING}.schemas VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                        (self.slot, resource, position,
                         json.dumps({**schema.to_dict(), "attnums": attnums}, ensure_ascii=False)))

    def _before(self, resource: str, position: int) -> Emitted | None:
        found = [e for e in self._schemas.get(resource, []) if e.position < position]
        return found[-1] if found else None

    def _attnums(self, resource: str, schema: TableSchema, previous: Emitted | None) -> dict[str, int]:
        """The numbers of the schema's columns (see ``number_columns``), from the catalog as it is now."""
        with self._db().cursor() as cur:
            cur.execute("SELECT attname, attnum FROM pg_attribute WHERE attrelid = to_regclass(%s) "
                        "AND attnum > 0 AND NOT attisdropped", (qualified(resource),))
            catalog = dict(cur.fetchall())
        return number_columns([n for n in schema.column_names if n != COPY_COLUMN], catalog,
                              previous.attnums if previous else {})


def number_columns(names: list[str], catalog: dict[str, int], known: dict[str, int]) -> dict[str, int]:
    """The attnums of columns ``names`` (in attnum order, as relation messages and the catalog list them).

    A name is numbered as the catalog has it now, else as the schema before had it; a number not below
    the numbers after it is dropped (the name belongs to a column added since).  Names left without a number, before
    a numbered one, take the numbers of the schema before that lie between them and are not
    taken, when there are as many of those as names (a column renamed, then renamed again before
    capture read the change, keeps its place)."""
    numbers: list[int | None] = [catalog.get(name, known.get(name)) for name in names]
    below = None  # from the right: a number not below every number after it is out of order
    for i in reversed(range(len(names))):
        number = numbers[i]
        if number is not None and below is not None and number >= below:
            numbers[i] = None
        elif number is not None:
            below = number
    taken = {n for n in numbers if n is not None}
    free = sorted(set(known.values()) - taken)
    i = 0
    while i < len(names):
        if numbers[i] is not None:
            i += 1
            continue
        end = i
        while end < len(names) and numbers[end] is None:
            end += 1
        low = numbers[i - 1] if i else 0
        high = numbers[end] if end < len(names) else None  # none after the last: columns are added there
        between = [n for n in free if high is not None and (low or 0) < n < high]
        if between and len(between) == end - i:
            numbers[i:end] = between
        i = end
    return {name: number for name, number in zip(names, numbers) if number is not None}


def _compare(previous: Emitted | None, schema: TableSchema, attnums: dict[str, int]) -> tuple[dict[str, str], bool]:
    """(renames old -> new, whether to read the table again) from ``previous`` to ``schema``."""
    if previous is None:
        return {}, False
    old_names = {number: name for name, number in previous.attnums.items()}
    old_columns = {c.name: c for c in previous.schema.columns if c.name != COPY_COLUMN}
    renames: dict[str, str] = {}
    reread = added = False
    kept = set()
    for column in schema.columns:
        if column.name == COPY_COLUMN:
            continue
        number = attnums.get(column.name)
        old_name = old_names.get(number) if number is not None else None
        if old_name is None and column.name in old_columns and column.name not in previous.attnums:
            old_name = column.name  # not numbered before (a history written before numbers were kept)
        if old_name is None:
            added = True
            reread = reread or column.default is not None  # the existing rows hold the default
            continue
        kept.add(old_name)
        if old_name != column.name:
            renames[old_name] = column.name
        reread = reread or old_columns[old_name].type != column.type
    dropped = any(name not in kept for name in old_columns)
    return renames, reread or (added and dropped)
