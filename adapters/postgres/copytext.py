"""Rows of ``COPY ... TO STDOUT`` in text format, split into columns of text values in bulk.

COPY's text format ends each row with a newline and separates values by
tabs; NULL is ``\\N``; a backslash, a tab, a newline and the other control
characters PostgreSQL escapes inside a value are written as ``\\\\``,
``\\t``, ``\\n``, ``\\r``, ``\\b``, ``\\f`` and ``\\v`` (COPY TO writes no
octal or hex escapes).  So a chunk without any backslash needs no
unescaping at all, which is the common case, and one whole chunk is split
by two string operations.
"""

from __future__ import annotations

import re

_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
_ESCAPE = re.compile(r"\\(.)")
NULL = "\\N"


def _unescape(value: str) -> str:
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)), value)


def columns(data: str, width: int) -> list[list[str | None]]:
    """The ``width`` columns of the rows in ``data`` (COPY text output), each a list of text values or None."""
    if not data:
        return [[] for _ in range(width)]
    fields: list[str | None] = data.replace("\n", "\t").split("\t")  # type: ignore[assignment]
    fields.pop()  # after the last row's newline
    if len(fields) % width:
        raise ValueError(f"COPY output of {len(fields)} values is not rows of {width} columns")
    split = [fields[i::width] for i in range(width)]
    if "\\" not in data:
        return split
    return [[None if v == NULL else _unescape(v) if "\\" in v else v for v in column]  # type: ignore[operator]
            for column in split]
