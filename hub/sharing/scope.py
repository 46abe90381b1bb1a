"""Row filters (Art. 15 scope): the small predicate language a share request's rows are chosen by.

    district IN ('静安区', '黄浦区') AND NOT (status = 'closed' OR issued < '2020-01-01')
    age BETWEEN 18 AND 65

Comparisons ``=  !=  <>  <  <=  >  >=``, ``IN (...)``, ``NOT IN (...)`` and
``BETWEEN low AND high`` between a data item and a literal; ``AND``, ``OR``,
``NOT`` and parentheses combine them (keywords in any letter case).
Literals: 'text' (a quote inside doubled: 'O''Brien'), numbers (``-12``,
``3.5``), ``TRUE``, ``FALSE``.  A data item is a name, or "double quoted"
when it holds other characters.  As in SQL, a comparison with a missing
(null) value, or between a text and a number, is unknown, and a row is in
scope only when the whole filter is true.

Parsed with lark (LALR), so the grammar below is the whole definition and an
error names the position where the filter stops making sense.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable

from lark import Lark, Token, Transformer, UnexpectedEOF, UnexpectedInput, v_args

from exchange.contracts.errors import InvalidInput

MAX_CHARS = 4000

GRAMMAR = r"""
?start: disj
?disj: conj (_OR conj)*
?conj: neg (_AND neg)*
?neg: _NOT neg -> negation
    | "(" disj ")"
    | name OP value -> compare
    | name _IN "(" values ")" -> member
    | name _NOT _IN "(" values ")" -> not_member
    | name _BETWEEN value _AND value -> between
values: value ("," value)*
name: NAME | QUOTED_NAME
value: STRING -> text
     | NUMBER -> number
     | _TRUE -> true
     | _FALSE -> false
OP: "<=" | ">=" | "<>" | "!=" | "=" | "<" | ">"
_OR.2: /or\b/i
_AND.2: /and\b/i
_NOT.2: /not\b/i
_IN.2: /in\b/i
_BETWEEN.2: /between\b/i
_TRUE.2: /true\b/i
_FALSE.2: /false\b/i
NAME: /[^\W\d]\w*/
QUOTED_NAME: /"(?:[^"]|"")+"/
STRING: /'(?:[^']|'')*'/
NUMBER: /-?\d+(\.\d+)?([eE][-+]?\d+)?/
%import common.WS
%ignore WS
"""

_PARSER = Lark(GRAMMAR, parser="lalr", maybe_placeholders=False)


class BadFilter(InvalidInput):
    """A row filter that does not parse, or names data items it may not; the message says where."""


@dataclass(frozen=True)
class Filter:
    """A parsed row filter: ``matches(row)`` says whether a row is in scope; ``text`` is its canonical form."""

    tree: tuple
    text: str

    @property
    def items(self) -> frozenset[str]:
        """The data items the filter names."""
        return frozenset(_names(self.tree))

    def matches(self, row: dict[str, Any] | None) -> bool:
        """True when ``row`` (a stored row image; None: no row) is in scope."""
        return row is not None and _eval(self.tree, row) is True


def parse(text: str) -> Filter:
    """Parse a row filter; raises BadFilter naming the position of the first error."""
    if len(text) > MAX_CHARS:
        raise BadFilter(f"row filter: at most {MAX_CHARS} characters, got {len(text)}")
    if not text.strip():
        raise BadFilter("row filter is empty")
    try:
        tree = _Build().transform(_PARSER.parse(text))
    except UnexpectedInput as e:
        raise BadFilter(_explain(text, e)) from None
    except RecursionError:
        raise BadFilter("row filter nests too deeply") from None
    return Filter(tree, _render(tree))


def check_items(flt: Filter, allowed: Iterable[str], what: str) -> None:
    """Refuse a filter naming a data item outside ``allowed`` (``what`` says whose items those are)."""
    allowed = set(allowed)
    outside = sorted(flt.items - allowed)
    if outside:
        raise BadFilter(f"row filter names {', '.join(outside)}, not among {what} ({', '.join(sorted(allowed))})")


def both(first: Filter | None, second: Filter | None) -> Filter | None:
    """The filter a row must pass to pass both (None: no filter, every row)."""
    if first is None or second is None:
        return first or second
    if first.text == second.text:
        return first
    tree = ("and", first.tree, second.tree)
    return Filter(tree, _render(tree))


def either(filters: Iterable[Filter | None]) -> Filter | None:
    """The filter a row must pass to pass any one of ``filters`` (None among them: every row)."""
    found: list[Filter] = []
    for f in filters:
        if f is None:
            return None
        if f.text not in (g.text for g in found):
            found.append(f)
    if not found:
        return None
    tree = found[0].tree
    for f in found[1:]:
        tree = ("or", tree, f.tree)
    return Filter(tree, _render(tree))


@functools.lru_cache(maxsize=1024)
def optional(text: str) -> Filter | None:
    """``parse(text)``, or None for an empty text (no row filter)."""
    return parse(text) if text.strip() else None


# Building the tree: nodes are tuples ("and"|"or", a, b), ("not", a), ("cmp", name, op, value),
# ("in", name, values), ("between", name, low, high).

@v_args(inline=True)
class _Build(Transformer):
    def disj(self, *parts):
        return _chain("or", parts)

    def conj(self, *parts):
        return _chain("and", parts)

    def negation(self, inner):
        return ("not", inner)

    def compare(self, name, op, value):
        return ("cmp", name, "!=" if str(op) == "<>" else str(op), value)

    def member(self, name, values):
        return ("in", name, values)

    def not_member(self, name, values):
        return ("not", ("in", name, values))

    def between(self, name, low, high):
        return ("between", name, low, high)

    def values(self, *values):
        return tuple(values)

    def name(self, token: Token) -> str:
        text = str(token)
        return text[1:-1].replace('""', '"') if token.type == "QUOTED_NAME" else text

    def text(self, token: Token) -> str:
        return str(token)[1:-1].replace("''", "'")

    def number(self, token: Token) -> Decimal:
        return Decimal(str(token))

    def true(self) -> bool:
        return True

    def false(self) -> bool:
        return False


def _chain(op: str, parts: tuple) -> tuple:
    tree = parts[0]
    for part in parts[1:]:
        tree = (op, tree, part)
    return tree


def _explain(text: str, e: UnexpectedInput) -> str:
    position = getattr(e, "pos_in_stream", None)
    if position is None or position < 0 or isinstance(e, UnexpectedEOF) or \
            getattr(getattr(e, "token", None), "type", None) == "$END":
        position = len(text)
    found = text[position:position + 12]
    expected = sorted(getattr(e, "expected", None) or getattr(e, "allowed", None) or ())
    hint = f"; expected {' or '.join(_terminal(t) for t in expected)}" if expected else ""
    where = f"at position {position + 1} ({found!r})" if found else f"at its end (position {position + 1})"
    return f"row filter {text!r}: unexpected input {where}{hint}"


def _terminal(name: str) -> str:
    names = {"_OR": "OR", "_AND": "AND", "_NOT": "NOT", "_IN": "IN", "_BETWEEN": "BETWEEN", "_TRUE": "TRUE",
             "_FALSE": "FALSE", "NAME": "a data item", "QUOTED_NAME": "a \"quoted\" data item",
             "STRING": "a 'text'", "NUMBER": "a number", "OP": "a comparison", "LPAR": "'('", "RPAR": "')'",
             "COMMA": "','", "$END": "the end"}
    return names.get(name, name)


def _names(tree: tuple) -> Iterable[str]:
    kind = tree[0]
    if kind in ("and", "or"):
        yield from _names(tree[1])
        yield from _names(tree[2])
    elif kind == "not":
        yield from _names(tree[1])
    else:
        yield tree[1]


# Rendering: the canonical text every decision stores; parsing it again gives the same tree.

def _render(tree: tuple) -> str:
    kind = tree[0]
    if kind in ("and", "or"):
        return f"{_group(tree[1], kind)} {kind.upper()} {_group(tree[2], kind)}"
    if kind == "not":
        inner = tree[1]
        if inner[0] == "in":
            return f"{_name(inner[1])} NOT IN ({', '.join(_literal(v) for v in inner[2])})"
        return f"NOT {_group(inner, 'not')}"
    if kind == "cmp":
        return f"{_name(tree[1])} {tree[2]} {_literal(tree[3])}"
    if kind == "in":
        return f"{_name(tree[1])} IN ({', '.join(_literal(v) for v in tree[2])})"
    return f"{_name(tree[1])} BETWEEN {_literal(tree[2])} AND {_literal(tree[3])}"


def _group(tree: tuple, parent: str) -> str:
    text = _render(tree)
    return f"({text})" if tree[0] in ("and", "or") and (parent == "not" or tree[0] != parent) else text


def _name(name: str) -> str:
    plain = name.isidentifier() and name.lower() not in ("or", "and", "not", "in", "between", "true", "false")
    return name if plain else '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, Decimal):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# Evaluation with SQL's three values: True, False, None (unknown).

def _eval(tree: tuple, row: dict[str, Any]) -> bool | None:
    kind = tree[0]
    if kind == "and":
        a = _eval(tree[1], row)
        if a is False:
            return False
        b = _eval(tree[2], row)
        return False if b is False else (None if a is None or b is None else True)
    if kind == "or":
        a = _eval(tree[1], row)
        if a is True:
            return True
        b = _eval(tree[2], row)
        return True if b is True else (None if a is None or b is None else False)
    if kind == "not":
        inner = _eval(tree[1], row)
        return None if inner is None else not inner
    value = plain_value(row.get(tree[1]))
    if kind == "cmp":
        return _compare(value, tree[2], tree[3])
    if kind == "in":
        results = [_compare(value, "=", v) for v in tree[2]]
        return True if True in results else (None if None in results else False)
    low, high = _compare(value, ">=", tree[2]), _compare(value, "<=", tree[3])
    return False if False in (low, high) else (None if None in (low, high) else True)


def plain_value(value: Any) -> Any:
    """A stored row value as the filter compares it: decimals as Decimal, dates and times as ISO text."""
    if isinstance(value, dict) and "_data_" in value:
        data = value["_data_"]
        if value.get("_type_") == "decimal_str":
            try:
                return Decimal(data)
            except (InvalidOperation, TypeError):
                return None
        return data if isinstance(data, str) else json.dumps(data, sort_keys=True)
    return value


def _compare(value: Any, op: str, literal: Any) -> bool | None:
    if value is None:
        return None
    if isinstance(literal, bool) or isinstance(value, bool):
        if not (isinstance(literal, bool) and isinstance(value, bool)):
            return None
    elif isinstance(literal, Decimal):
        if not isinstance(value, (int, float, Decimal)):
            return None
        if isinstance(value, float):
            value = Decimal(repr(value))
    elif not isinstance(value, str):
        return None
    if op == "=":
        return value == literal
    if op == "!=":
        return value != literal
    if op == "<":
        return value < literal
    if op == "<=":
        return value <= literal
    if op == ">":
        return value > literal
    return value >= literal
