"""Which tables ``[source] tables`` and ``[source] exclude`` select.

An entry is a table name or an fnmatch pattern (``*``, ``?``, ``[abc]``),
optionally schema-qualified: ``orders``, ``sales.order_*``, ``public.*``,
``*.*``.  An entry without a schema means schema ``public``.  Matching is
case-sensitive, on the schema and the table name separately, so ``*`` never
crosses the dot.  A table is selected when an entry of ``tables`` matches it
and no entry of ``exclude`` does.  Names selected by a pattern are written
``table`` in schema public and ``schema.table`` elsewhere; an entry without
wildcards keeps its own spelling.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Iterable, Sequence

from exchange.contracts.errors import InvalidInput

WILDCARDS = frozenset("*?[")


def is_pattern(entry: str) -> bool:
    """Whether ``entry`` holds a wildcard (else it names one table)."""
    return not WILDCARDS.isdisjoint(entry)


def parts(name: str) -> tuple[str, str]:
    """(schema, table) of ``table``, ``schema.table`` or such a pattern; schema ``public`` by default."""
    schema, dot, table = name.partition(".")
    return (schema, table) if dot else ("public", name)


def matches(name: str, entry: str) -> bool:
    """Whether the table ``name`` is the one ``entry`` names, or one it matches."""
    (schema, table), (schema_pattern, table_pattern) = parts(name), parts(entry)
    return fnmatchcase(schema, schema_pattern) and fnmatchcase(table, table_pattern)


def selected(name: str, tables: Sequence[str], exclude: Sequence[str] = ()) -> bool:
    """Whether ``tables`` selects ``name`` and ``exclude`` does not."""
    return any(matches(name, e) for e in tables) and not any(matches(name, e) for e in exclude)


def select(candidates: Iterable[str], tables: Sequence[str], exclude: Sequence[str] = ()) -> list[str]:
    """The tables selected: literal entries as written (unless excluded), then
    the ``candidates`` (existing tables) that a pattern selects, each table once."""
    chosen = [e for e in tables if not is_pattern(e) and not any(matches(e, x) for x in exclude)]
    seen = {parts(name) for name in chosen}
    patterns = [e for e in tables if is_pattern(e)]
    for name in sorted(candidates):
        if parts(name) not in seen and selected(name, patterns, exclude):
            chosen.append(name)
            seen.add(parts(name))
    return chosen


def check_plain(tables: Sequence[str], exclude: Sequence[str], kind: str) -> None:
    """Refuse patterns and exclusions for a kind of source that lists its tables one by one."""
    patterns = [e for e in tables if is_pattern(e)]
    if patterns or exclude:
        what = f"table patterns ({', '.join(patterns)})" if patterns else "[source] exclude"
        raise InvalidInput(f"{what}: only PostgreSQL sources select tables by pattern; "
                           f"list the {kind} tables by name in [source] tables")
