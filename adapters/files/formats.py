"""Reading drop files: CSV with a header row, JSON arrays of objects, JSON lines.

Each reader yields ``(line, columns, row)`` per record and refuses a
malformed file with ``DropRefused`` naming the line: whatever a parser
raises on hostile input (nesting too deep, a record too large, a number out
of range, bad Unicode...) refuses that file only.  Files are read once, in
bounded memory (a JSON array is decoded one element at a time, no line or
record may exceed ``MAX_RECORD_BYTES``), and hashed on the way
(``HashedText.sha256``).  JSON numbers must be finite; integers outside the
signed 64-bit range are kept exactly, as their decimal text, so that every
apply target can store them.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import re
from typing import Any, BinaryIO, Iterator

from exchange.contracts.errors import OperationFailed
from exchange.contracts.text import excerpt as escaped_excerpt

_CHUNK = 1 << 20
MAX_RECORD_BYTES = 64 << 20  # a longer line, or JSON object, refuses the file
_SCALARS = (str, int, float, bool, type(None))
_INT64 = range(-(1 << 63), 1 << 63)
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone surrogates ("\\ud800" in JSON) cannot be stored as UTF-8
EXCERPT_CHARS = 80


def excerpt(text: str, quoted: bool = False) -> str:
    """``text`` fit for a log line: as is when short and printable (and not ``quoted``), else escaped and
    cut as exchange.contracts.text does for every value a client sent."""
    if len(text) <= EXCERPT_CHARS and text.isprintable() and not quoted:
        return text
    return escaped_excerpt(text, EXCERPT_CHARS)


class DropRefused(OperationFailed):
    """A malformed drop file: ``line`` (1-based, 0 when it is not about one line) and what is wrong."""

    def __init__(self, line: int, reason: str):
        super().__init__(f"line {line}: {reason}" if line else reason)
        self.line = line
        self.reason = reason


class HashedText:
    """A binary file read once: hashed, its lines counted, decoded as UTF-8 (a BOM is dropped)."""

    def __init__(self, f: BinaryIO):
        self.f = f
        self.sha256 = hashlib.sha256()
        self.line = 0  # lines completely read so far

    def lines(self) -> Iterator[str]:
        """Decoded lines (with their line ends); ``self.line`` is the number of the last one."""
        while raw := self.f.readline(MAX_RECORD_BYTES + 1):
            self.sha256.update(raw)
            self.line += 1
            if len(raw) > MAX_RECORD_BYTES and not raw.endswith(b"\n"):  # the limit does not count the line end
                raise DropRefused(self.line, f"a line longer than {MAX_RECORD_BYTES} bytes")
            try:
                yield raw.decode("utf-8-sig" if self.line == 1 else "utf-8")
            except UnicodeDecodeError:
                raise DropRefused(self.line, "not UTF-8 text") from None

    def chunks(self) -> Iterator[tuple[int, str]]:
        """(number of the line the chunk starts on, decoded text) in large pieces."""
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        line = 1
        while True:
            raw = self.f.read(_CHUNK)
            self.sha256.update(raw)
            try:
                text = decoder.decode(raw, final=not raw)
            except UnicodeDecodeError as e:
                raise DropRefused(line + raw.count(b"\n", 0, max(e.start, 0)), "not UTF-8 text") from None
            if text:
                yield line, text
                line += text.count("\n")
            if not raw:
                return


def _rows_csv(source: HashedText) -> Iterator[tuple[int, list[str], dict[str, Any] | None]]:
    """(line, header, None) for the header row, then (line, header, row) for each record."""
    reader = csv.reader(source.lines(), strict=True)
    header: list[str] | None = None
    while True:
        start = reader.line_num + 1
        try:
            record = next(reader, None)
        except csv.Error as e:
            where = "" if reader.line_num == start else f" in the record that starts on line {start}"
            raise DropRefused(reader.line_num, f"bad CSV{where}: {e}") from None
        if record is None:
            break
        if not record:
            continue  # an empty line
        if header is None:
            header = record
            _check_header(header, reader.line_num)
            yield reader.line_num, header, None
            continue
        if len(record) != len(header):
            raise DropRefused(reader.line_num, f"{len(record)} fields where the header has {len(header)}")
        yield reader.line_num, header, dict(zip(header, record))
    if header is None:
        raise DropRefused(0, "empty file: a CSV drop needs a header row")


def _check_header(header: list[str], line: int) -> None:
    if any(not name for name in header):
        raise DropRefused(line, "the header has an empty column name")
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise DropRefused(line, f"the header names {excerpt(', '.join(duplicates))} more than once")


def _rows_jsonl(source: HashedText) -> Iterator[tuple[int, list[str], dict[str, Any] | None]]:
    """(line, columns, row) for each object of a JSON lines file (blank lines are skipped)."""
    decoder = _decoder()
    columns: list[str] | None = None
    for text in source.lines():
        if not text.strip():
            continue
        try:
            value = decoder.decode(text)
        except (ValueError, RecursionError) as e:
            raise DropRefused(source.line, f"bad JSON: {_json_fault(e)}") from None
        columns = columns or _object_columns(value, source.line)
        yield source.line, columns, _check_object(value, columns, source.line)
    if columns is None:  # cannot be told from a failed export
        raise DropRefused(0, "empty file: to empty a table, drop an empty array ([]) as a .json file")


def _rows_json(source: HashedText) -> Iterator[tuple[int, list[str], dict[str, Any] | None]]:
    """Records of a JSON array of objects, decoded one element at a time (bounded memory)."""
    decoder = _decoder()
    chunks = source.chunks()
    buffer, pos, line, done = "", 0, 1, False  # line: the line number of buffer[0]

    def more() -> bool:
        nonlocal buffer, pos, line, done
        if done:
            return False
        line += buffer.count("\n", 0, pos)
        buffer, pos = buffer[pos:], 0
        for _, text in chunks:
            buffer += text
            return True
        done = True
        return False

    def skip_space() -> str:
        nonlocal pos
        while True:
            while pos < len(buffer) and buffer[pos] in " \t\r\n":
                pos += 1
            if pos < len(buffer):
                return buffer[pos]
            if not more():
                return ""

    def here() -> int:
        return line + buffer.count("\n", 0, pos)

    if skip_space() != "[":
        raise DropRefused(here(), "a .json drop must be an array of objects")
    pos += 1
    columns: list[str] | None = None
    while True:
        mark = skip_space()
        if mark == "]":
            pos += 1
            break
        if columns is not None:
            if mark != ",":
                raise DropRefused(here(), "bad JSON: expected ',' or ']' between the array's objects")
            pos += 1
            mark = skip_space()
        if mark != "{":
            raise DropRefused(here(), "bad JSON: each element of the array must be an object"
                              if mark else "bad JSON: the file ends inside the array")
        start = here()
        while True:
            try:
                value, end = decoder.raw_decode(buffer, pos)
                break
            except (ValueError, RecursionError) as e:
                fault = DropRefused(_fault_line(e, line, start), f"bad JSON: {_json_fault(e)}")
                if not _maybe_cut(e, len(buffer)):
                    raise fault from None
                if len(buffer) - pos > MAX_RECORD_BYTES:
                    raise DropRefused(start, f"an object longer than {MAX_RECORD_BYTES} characters") from None
                if not more():
                    raise fault from None
        pos = end
        columns = columns or _object_columns(value, start)
        yield start, columns, _check_object(value, columns, start)
    if skip_space():
        raise DropRefused(here(), "bad JSON: text after the closing ']'")


def _maybe_cut(e: Exception, length: int) -> bool:
    """Whether a decoding fault may only mean that the object goes on past the text read so far."""
    if not isinstance(e, json.JSONDecodeError):
        return False
    return e.msg.startswith("Unterminated string") or e.pos >= length - 64


def _fault_line(e: Exception, buffer_line: int, fallback: int) -> int:
    return buffer_line + e.lineno - 1 if isinstance(e, json.JSONDecodeError) else fallback


def _json_fault(e: Exception) -> str:
    if isinstance(e, json.JSONDecodeError):
        return e.msg
    return "arrays or objects nested too deeply" if isinstance(e, RecursionError) else str(e)


def _decoder() -> json.JSONDecoder:
    return json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite, parse_int=_int64_or_text,
                            object_pairs_hook=_unique_keys)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: a key given twice would silently keep only one value."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            raise ValueError(f"the key {excerpt(key, quoted=True)} appears twice in one object")
        found[key] = value
    return found


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {excerpt(text)} is out of range (only finite numbers can be captured)")
    return value


def _int64_or_text(text: str) -> int | str:
    """A JSON integer: an int within the signed 64-bit range, else its exact decimal text."""
    if len(text) > 20:  # no int() of huge literals (Python limits them to 4300 digits anyway)
        return text
    value = int(text)
    return value if value in _INT64 else text


def _object_columns(value: Any, line: int) -> list[str]:
    if not isinstance(value, dict):
        raise DropRefused(line, "each record must be a JSON object")
    if not value:
        raise DropRefused(line, "an object without columns")
    strange = [name for name in value if not name or _SURROGATE.search(name)]
    if strange:
        raise DropRefused(line, "a column name that is empty or holds a lone surrogate: "
                          f"{excerpt(strange[0], quoted=True)}")
    return list(value)


def _check_object(value: Any, columns: list[str], line: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise DropRefused(line, "each record must be a JSON object")
    if value.keys() != set(columns):
        missing, extra = set(columns) - value.keys(), value.keys() - set(columns)
        raise DropRefused(line, "the columns differ from the first record's: "
                          + "; ".join(p for p in (_named("missing", missing), _named("unexpected", extra)) if p))
    for name, item in value.items():
        if not isinstance(item, _SCALARS):
            raise DropRefused(line, f"column {excerpt(name, quoted=True)} holds a JSON {type(item).__name__}: "
                              "only strings, numbers, true/false and null can be captured")
        if isinstance(item, str) and _SURROGATE.search(item):
            raise DropRefused(line, f"column {excerpt(name, quoted=True)} holds a lone surrogate (\\ud800-\\udfff), "
                              "which is not a Unicode character")
    return value


def _named(what: str, names: set[str]) -> str:
    return f"{what} {excerpt(', '.join(sorted(names)))}" if names else ""


_PARSERS = {"csv": _rows_csv, "json": _rows_json, "jsonl": _rows_jsonl}


def read_rows(fmt: str, source: HashedText) -> Iterator[tuple[int, list[str], dict[str, Any] | None]]:
    """(line, columns, row) for each record of a ``fmt`` (csv, json, jsonl) file; a CSV
    file first gives (header line, header, None).  Raises DropRefused, also for
    whatever else parsing raises (OSError, a failure to read, excepted)."""
    rows = _PARSERS[fmt](source)
    while True:
        try:
            item = next(rows)
        except StopIteration:
            return
        except (DropRefused, OSError):
            raise
        except Exception as e:  # RecursionError, MemoryError, ... on hostile input: refuse this file only
            raise DropRefused(source.line, f"cannot be parsed ({type(e).__name__}: {excerpt(str(e))})") from None
        yield item
