"""Core metadata of a catalog entry (GB/T 21063, the 2017 national compilation guide) and its rules.

An entry's content is a plain dict, the same in the editable files agencies
submit, in catalog events and (field by field) in the gRPC messages:

    code = "101001/0001"             # classification code / sequence number
    name, summary                    # what the resource is
    agency                           # exchange agency id (names its event log)
    provider, provider_uscc          # providing agency and its unified social credit code
    resource                         # the captured table the entry describes ("" for none)
    format                           # one of FORMATS
    share_type                       # 1 unconditional, 2 conditional, 3 not shared
    share_condition                  # required for share type 2
    not_shared_basis                 # legal basis, required for share type 3
    share_modes                      # subset of SHARE_MODES
    open_to_public, open_condition   # open data, and on what condition
    update_cycle                     # one of UPDATE_CYCLES
    related                          # codes of related resources
    items = [{name, type, length,    # data items; type one of ITEM_TYPES
              element, authoritative}]  # optional: standard data element code, and whether
                                     # the agency is its authoritative source (Art. 12)

``validate`` lists every broken rule as a ``Problem`` naming the field.
The publish date is not content: the hub sets it when it publishes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from exchange.contracts.agency import AGENCY_PATTERN
from exchange.contracts.errors import ExchangeError
from exchange.contracts.identifiers import is_valid_uscc
from exchange.contracts.text import excerpt

CODE = re.compile(r"^(?P<category>[1-3])(?P<item>\d{2})(?P<subitem>\d{3})(?P<detail>\d*)/(?P<sequence>\d{4,})$")
CATEGORIES = {"1": "base", "2": "subject", "3": "department"}
FORMATS = ("file", "spreadsheet", "database", "image", "stream", "self-describing", "other")
ITEM_TYPES = {
    "C": "character", "N": "numeric", "Y": "currency", "D": "date", "T": "date and time", "L": "logical",
    "M": "memo", "G": "general", "B": "binary", "I": "integer", "F": "floating point",
}
SHARE_TYPES = {1: "unconditional", 2: "conditional", 3: "not shared"}
SHARE_MODES = ("platform:table", "platform:file", "platform:interface", "mail", "media")
UPDATE_CYCLES = ("realtime", "daily", "weekly", "monthly", "quarterly", "yearly")

TEXT_FIELDS = ("code", "name", "agency", "provider", "provider_uscc", "resource", "summary", "format",
               "share_condition", "not_shared_basis", "open_condition", "update_cycle")
FIELDS = TEXT_FIELDS + ("share_type", "share_modes", "open_to_public", "related", "items")
# Lengths in characters: an entry is copied into every event that edits it, so none may grow without bound.
TEXT_LIMITS = {"code": 64, "name": 200, "agency": 64, "provider": 200, "provider_uscc": 18, "resource": 128,
               "summary": 4000, "format": 32, "share_condition": 2000, "not_shared_basis": 2000,
               "open_condition": 2000, "update_cycle": 32}
MAX_ITEMS = 2000  # data items of one entry (the largest 2016 entries had a few hundred)
MAX_ITEM_NAME = 128
ELEMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")  # a standard data element code, e.g. DE0001
ITEM_FIELDS = ("name", "type", "length", "element", "authoritative")
MAX_RELATED = 200
REQUIRED = ("code", "name", "agency", "provider", "provider_uscc", "summary", "format", "share_type",
            "share_modes", "update_cycle", "items")


@dataclass(frozen=True)
class Problem:
    """One broken rule: the field (``items[2].type``) and what it must be."""

    field: str
    rule: str

    def __str__(self) -> str:
        return f"{self.field}: {self.rule}"


class InvalidEntry(ValueError, ExchangeError):
    """Entry content that breaks metadata rules; ``problems`` lists each."""

    def __init__(self, problems: list[Problem], where: str = ""):
        self.problems = problems
        prefix = f"{where}: " if where else ""
        super().__init__("; ".join(f"{prefix}{p}" for p in problems))


def blank() -> dict[str, Any]:
    """Content with every field present and empty."""
    return {"code": "", "name": "", "agency": "", "provider": "", "provider_uscc": "", "resource": "", "summary": "",
            "format": "", "share_type": 0, "share_condition": "", "not_shared_basis": "", "share_modes": [],
            "open_to_public": False, "open_condition": "", "update_cycle": "", "related": [], "items": []}


def normalise(content: dict[str, Any]) -> dict[str, Any]:
    """``content`` with missing optional fields filled in and text stripped (nothing checked)."""
    result = blank()
    result.update(content)
    for key in TEXT_FIELDS:
        if isinstance(result[key], str):
            result[key] = result[key].strip()
    return result


def validate(content: dict[str, Any]) -> list[Problem]:
    """Every metadata rule ``content`` breaks (empty when it is a valid entry)."""
    problems: list[Problem] = []

    def bad(field: str, rule: str) -> None:
        problems.append(Problem(field, rule))

    for key in sorted(set(content) - set(FIELDS)):
        bad(key if len(key) <= MAX_ITEM_NAME else excerpt(key), f"unknown field; known: {', '.join(FIELDS)}")
    c = normalise(content)
    for key in TEXT_FIELDS:
        if not isinstance(c[key], str):
            bad(key, "must be text")
            c[key] = ""
        elif len(c[key]) > TEXT_LIMITS[key]:
            bad(key, f"at most {TEXT_LIMITS[key]} characters, got {len(c[key])}")
            c[key] = c[key][:TEXT_LIMITS[key]]  # the other rules see no more than the limit
    hints = {"share_type": "1 (unconditional), 2 (conditional) or 3 (not shared)",
             "format": "one of " + ", ".join(FORMATS), "update_cycle": "one of " + ", ".join(UPDATE_CYCLES),
             "share_modes": "any of " + ", ".join(SHARE_MODES), "code": "e.g. 101001/0001"}
    for key in REQUIRED:
        if c[key] in ("", [], 0):
            bad(key, f"required: {hints[key]}" if key in hints else "required")
    if c["code"] and not CODE.match(c["code"]):
        bad("code", "must be a classification code (category 1 digit: 1 base, 2 subject or 3 department; item "
                    "2 digits, subitem 3 digits, optional detail digits), a slash and a sequence number of at "
                    "least 4 digits, e.g. 101001/0001")
    if c["agency"] and not AGENCY_PATTERN.fullmatch(c["agency"]):
        bad("agency", "must be 1-64 letters, digits or underscores (the exchange agency id)")
    if c["provider_uscc"] and not is_valid_uscc(c["provider_uscc"]):
        bad("provider_uscc", "must be an 18-character unified social credit code with a valid check character "
                             "(GB 32100)")
    if c["format"] and c["format"] not in FORMATS:
        bad("format", f"must be one of {', '.join(FORMATS)}")
    if c["update_cycle"] and c["update_cycle"] not in UPDATE_CYCLES:
        bad("update_cycle", f"must be one of {', '.join(UPDATE_CYCLES)}")
    _check_share(c, bad)
    _check_list(c, "share_modes", bad, lambda m: m in SHARE_MODES, f"one of {', '.join(SHARE_MODES)}")
    _check_list(c, "related", bad, lambda r: bool(CODE.match(r)), "a resource code like 101001/0001")
    if c["code"] and c["code"] in (c["related"] if isinstance(c["related"], list) else []):
        bad("related", "must not name the entry itself")
    _check_items(c["items"], bad)
    return problems


def check(content: dict[str, Any], where: str = "") -> dict[str, Any]:
    """The normalised content; raises InvalidEntry listing every problem."""
    problems = validate(content)
    if problems:
        raise InvalidEntry(problems, where)
    return normalise(content)


def _check_share(c: dict[str, Any], bad) -> None:
    share_type = c["share_type"]
    if isinstance(share_type, bool) or not isinstance(share_type, int) or share_type not in (0, 1, 2, 3):
        bad("share_type", "must be 1 (unconditional), 2 (conditional) or 3 (not shared)")
        return
    if share_type == 2 and not c["share_condition"]:
        bad("share_condition", "required when share_type is 2 (conditional): the condition of sharing")
    if share_type != 2 and c["share_condition"]:
        bad("share_condition", "only for share_type 2 (conditional)")
    if share_type == 3 and not c["not_shared_basis"]:
        bad("not_shared_basis", "required when share_type is 3 (not shared): the law or regulation it rests on")
    if share_type != 3 and c["not_shared_basis"]:
        bad("not_shared_basis", "only for share_type 3 (not shared)")
    if not isinstance(c["open_to_public"], bool):
        bad("open_to_public", "must be true or false")
    elif share_type == 3 and c["open_to_public"]:
        bad("open_to_public", "a resource that is not shared cannot be open to the public")
    if c["open_condition"] and c["open_to_public"] is not True:
        bad("open_condition", "only for resources open to the public")


def _check_list(c: dict[str, Any], key: str, bad, ok, what: str) -> None:
    values = c[key]
    if not isinstance(values, list):
        bad(key, "must be a list")
        return
    if len(values) > MAX_RELATED:
        bad(key, f"at most {MAX_RELATED} values, got {len(values)}")
        return
    for i, value in enumerate(values):
        if not isinstance(value, str) or not ok(value):
            bad(f"{key}[{i}]", f"must be {what}, got {excerpt(value)}")
    if len(set(map(str, values))) != len(values):
        bad(key, "lists a value twice")


def _check_items(items: Any, bad) -> None:
    if not isinstance(items, list):
        bad("items", "must be a list of data items")
        return
    if len(items) > MAX_ITEMS:
        bad("items", f"at most {MAX_ITEMS} data items, got {len(items)}")
        return
    seen: set[str] = set()
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict):
            bad(where, "must be a table with name, type and length")
            continue
        for key in sorted(set(item) - set(ITEM_FIELDS)):
            bad(f"{where}.{key if len(key) <= MAX_ITEM_NAME else excerpt(key)}",
                "unknown field; known: " + ", ".join(ITEM_FIELDS))
        name, kind, length = item.get("name"), item.get("type"), item.get("length", 0)
        if not isinstance(name, str) or not name.strip():
            bad(f"{where}.name", "required")
        elif len(name) > MAX_ITEM_NAME:
            bad(f"{where}.name", f"at most {MAX_ITEM_NAME} characters, got {len(name)}")
        elif name in seen:
            bad(f"{where}.name", f"{excerpt(name)} is listed twice")
        else:
            seen.add(name)
        if kind not in ITEM_TYPES:
            bad(f"{where}.type", "must be a data type code: "
                                 + ", ".join(f"{k} ({v})" for k, v in ITEM_TYPES.items()))
        if isinstance(length, bool) or not isinstance(length, int) or length < 0:
            bad(f"{where}.length", "must be a whole number of characters or digits (0: not limited)")
        element = item.get("element", "")
        if not isinstance(element, str) or (element and not ELEMENT.match(element)):
            bad(f"{where}.element", "must be a data element code: a letter or digit, then up to 63 letters, digits "
                                    "or _ . : / -, e.g. DE0001")
        if not isinstance(item.get("authoritative", False), bool):
            bad(f"{where}.authoritative", "must be true or false")


def item_names(content: dict[str, Any]) -> tuple[str, ...]:
    return tuple(item["name"] for item in content.get("items", []))
