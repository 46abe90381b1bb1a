"""``exchange catalog draft``: one editable catalog entry file per captured table (Art. 9, system integration).

The data items are filled in from the source schema (names, type codes
mapped from column types, lengths where the type declares one); what only
the agency can say (code, name, summary, share type, ...) is left empty for
it to fill in before ``exchange catalog submit``.  A file that already
exists is never overwritten: it may hold the agency's edits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import adapters
from adapters.selection import select
from exchange.common.config import Config
from exchange.contracts.changes import TableSchema
from exchange.contracts.identifiers import is_valid_uscc
from hub.catalog import metadata
from node.field_policy import FieldPolicy

# (pattern on the lower-cased declared type, type code); the first match wins.
TYPE_CODES = [
    (r"bool", "L"),
    (r"money", "Y"),
    (r"^(int|integer|bigint|smallint|tinyint|mediumint|serial|bigserial|smallserial)\b|int\d", "I"),
    (r"real|double|float", "F"),
    (r"numeric|decimal|number", "N"),
    (r"timestamp|datetime|^time\b", "T"),
    (r"^date$", "D"),
    (r"blob|bytea|binary", "B"),
    (r"json|xml|clob|longtext|mediumtext", "M"),
    (r"char|text|uuid|string|enum", "C"),
]
FIELD_HELP = {
    "code": "classification code / sequence number, e.g. 101001/0001 (category 1 digit, item 2, subitem 3, detail)",
    "name": "resource name",
    "provider": "providing agency's name",
    "provider_uscc": "providing agency's unified social credit code (18 characters)",
    "summary": "what the resource holds and what it is for",
    "format": "one of " + ", ".join(metadata.FORMATS),
    "share_type": "1 unconditional, 2 conditional (fill share_condition), 3 not shared (fill not_shared_basis)",
    "share_modes": "any of " + ", ".join(metadata.SHARE_MODES),
    "open_to_public": "true if open to the public (say on what condition in open_condition)",
    "update_cycle": "one of " + ", ".join(metadata.UPDATE_CYCLES),
    "related": "codes of related resources",
}


def item_type(declared: str) -> tuple[str, int]:
    """The data type code and length for a column's declared type (``VARCHAR(50)`` -> ("C", 50))."""
    lowered = declared.strip().lower()
    code = next((c for pattern, c in TYPE_CODES if re.search(pattern, lowered)), "C")
    size = re.search(r"\((\d+)", lowered)
    return code, int(size.group(1)) if size and code in ("C", "N", "B") else 0


def draft_content(agency: str, schema: TableSchema) -> dict[str, Any]:
    """A draft entry for one table: data items from its columns, the rest left for the agency."""
    content = metadata.blank()
    content.update({
        "agency": agency, "resource": schema.name, "name": schema.name, "format": "database",
        "provider_uscc": agency if is_valid_uscc(agency) else "", "share_modes": ["platform:interface"],
        "update_cycle": "realtime",
        "items": [dict(zip(("name", "type", "length"), (c.name, *item_type(c.type)))) for c in schema.columns],
    })
    return content


def draft(cfg: Config, directory: str | Path, file_format: str = "toml") -> dict[str, Any]:
    """Write a draft file for every captured table without one; report what was written and kept."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    policy = FieldPolicy.from_config(cfg)
    reader = adapters.open_reader(cfg.source.url)
    written, kept = [], []
    try:
        for table in select(reader.tables(), cfg.source.tables, cfg.source.exclude):
            path = directory / f"{table}.{file_format}"
            if path.exists():
                kept.append(str(path))
                continue
            # The items as they leave the node: excluded columns never do, masked ones are text.
            content = draft_content(cfg.agency, policy.table_schema(reader.table_schema(table)))
            text = json.dumps(content, ensure_ascii=False, indent=2) + "\n" if file_format == "json" else to_toml(content)
            temporary = path.with_suffix(path.suffix + ".tmp")
            temporary.write_text(text, encoding="utf-8")
            temporary.replace(path)
            written.append(str(path))
    finally:
        reader.close()
    return {"written": written, "kept": kept}


def to_toml(content: dict[str, Any]) -> str:
    """An entry as commented TOML (strings written as JSON strings, which TOML accepts)."""
    lines = [f"# Catalog entry for table {content['resource']}: fill in the empty fields, then",
             "#   exchange catalog submit FILE --hub HOST:PORT", ""]
    for key in metadata.FIELDS:
        if key == "items":
            continue
        if key in FIELD_HELP:
            lines.append(f"# {FIELD_HELP[key]}")
        lines.append(f"{key} = {_value(content[key])}")
    lines.append("")
    lines.append("# Data items: type one of " + ", ".join(f"{k} ({v})" for k, v in metadata.ITEM_TYPES.items())
                 + "; length 0: not limited")
    for item in content["items"]:
        lines += ["[[items]]", f"name = {_value(item['name'])}", f"type = {_value(item['type'])}",
                  f"length = {item['length']}", ""]
    return "\n".join(lines)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)
