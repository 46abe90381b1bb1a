"""SQL that the SQLite, PostgreSQL and MariaDB/MySQL apply targets write alike.

The dialects apply replayed row operations with the same statements; what
differs (placeholders, how a table is named, how identifiers are quoted:
double quotes unless ``quote`` says otherwise, column types and defaults)
is passed in by the dialect modules (adapters/sqlite/dialect.py,
adapters/postgres/dialect.py, adapters/mysql/dialect.py).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import chain, groupby
from typing import Any, Callable, Iterable, Sequence

from exchange.contracts import changes as ch
from exchange.contracts.changes import RowOp, Run

Quote = Callable[[str], str]


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


def column_sql(name: str, type_: str | None, notnull: bool, default: str | None, quote: Quote = quote) -> str:
    """A column definition; ``type_`` and ``default`` are SQL as the dialect declares them."""
    parts = [quote(name)]
    if type_:
        parts.append(type_)
    if notnull:
        parts.append("NOT NULL")
    if default is not None:
        parts.append(f"DEFAULT {default}")
    return " ".join(parts)


def rename_sql(table: str, present: Iterable[str], renames: dict[str, str] | None, columns: Iterable[str]) -> list[str]:
    """ALTER TABLE statements renaming the columns of ``table`` (already quoted) that ``renames`` maps
    (old -> new) and that are ``present``, through interim names, so that names may be swapped; none
    when the table already has the ``columns`` wanted, in their order (the renames were applied before)."""
    wanted = pending_renames(present, renames, columns)
    interim = {old: f"_exchange_renaming_{i}" for i, old in enumerate(wanted)}
    return ([f"ALTER TABLE {table} RENAME COLUMN {quote(old)} TO {quote(interim[old])}" for old in wanted] +
            [f"ALTER TABLE {table} RENAME COLUMN {quote(interim[old])} TO {quote(new)}" for old, new in wanted.items()])


def pending_renames(present: Iterable[str], renames: dict[str, str] | None, columns: Iterable[str]) -> dict[str, str]:
    """The renames (old -> new) still to apply to a table with the ``present`` columns: those of ``renames``
    whose old name is present; none when the table already has the ``columns`` wanted, in their order."""
    present = list(present)
    if present == list(columns):
        return {}
    return {old: new for old, new in (renames or {}).items() if old in present and old != new}


def create_sql(table: str, definitions: Iterable[str], primary_key: tuple[str, ...], quote: Quote = quote) -> str:
    """CREATE TABLE ``table`` (already quoted) with column ``definitions`` and the primary key, if any."""
    definitions = list(definitions)
    if primary_key:
        definitions.append(f"PRIMARY KEY ({', '.join(quote(k) for k in primary_key)})")
    return f"CREATE TABLE {table} ({', '.join(definitions)})"


def runs(ops: Iterable[RowOp]) -> list[Run]:
    """Consecutive operations of one shape, each run with its rows' parameters."""
    return [Run(*shape, [_params(op) for op in run]) for shape, run in groupby(ops, key=_shape)]


def converted(rows: list[Sequence[Any]], convert: Callable[[Any], Any],
              unchanged: frozenset[type] = frozenset()) -> list[Sequence[Any]]:
    """``rows`` with their values passed through ``convert``; ``unchanged``: the types ``convert``
    returns as they are (rows of only those are kept, the usual case, which one pass over the run tells)."""
    if unchanged.issuperset(set(map(type, chain.from_iterable(rows)))):
        return rows
    return [row if unchanged.issuperset(map(type, row)) else [convert(v) for v in row] for row in rows]


def key_params(key: Iterable[Any]) -> tuple[tuple[bool, ...], tuple[Any, ...]]:
    """Which of the ``key`` values are NULL (empty when none is, the usual case) and the others: NULL
    keys are matched by IS NULL, so only the others are a statement's key parameters."""
    key = tuple(key)
    if None not in key:
        return (), key
    return tuple(v is None for v in key), tuple(v for v in key if v is not None)


def _shape(op: RowOp) -> tuple[str, str, tuple[str, ...], tuple[str, ...], tuple[bool, ...]]:
    return op.table, op.op, tuple(op.values), tuple(op.key), key_params(op.key.values())[0]


def _params(op: RowOp) -> tuple[Any, ...]:
    """The parameters of ``op``'s statement (see ``row_sql``)."""
    if op.op == ch.INSERT:
        return tuple(op.values.values())
    key = key_params(op.key.values())[1]
    return key if op.op == ch.DELETE else (*op.values.values(), *key)


@lru_cache(maxsize=1024)
def row_sql(table: str, op: str, columns: tuple[str, ...], key: tuple[str, ...], nulls: tuple[bool, ...],
            placeholder: str, quote: Quote = quote) -> str | None:
    """The statement for operations of one shape on ``table`` (already quoted); None for an
    update of no columns."""
    where = " AND ".join(f"{quote(k)} IS NULL" if null else f"{quote(k)} = {placeholder}"
                         for k, null in zip(key, nulls or (False,) * len(key)))
    if op == ch.INSERT:
        return (f"INSERT INTO {table} ({', '.join(quote(c) for c in columns)}) "
                f"VALUES ({', '.join([placeholder] * len(columns))})")
    if op == ch.UPDATE:
        if not columns:
            return None
        return f"UPDATE {table} SET {', '.join(f'{quote(c)} = {placeholder}' for c in columns)} WHERE {where}"
    if op == ch.DELETE:
        return f"DELETE FROM {table} WHERE {where}"
    raise ValueError(f"unknown row operation {op!r}")
