"""The MariaDB/MySQL column type a declared column type becomes in a target (docs/mariadb.md).

Declared types come from any kind of source: SQLite's (upper case, mapped
by SQLite's affinity rules, as the PostgreSQL target maps them),
PostgreSQL's (``format_type``) and MariaDB's own (``COLUMN_TYPE``).  Types
are written in lower case the way ``information_schema`` reports them,
without integer display widths, so a table's current types compare with
the wanted ones (``canonical``).  Text in a key becomes ``varchar`` of at
most ``key_length`` characters (InnoDB indexes at most 3072 bytes).
"""

from __future__ import annotations

import re

KEY_BYTES = 3072  # InnoDB's largest index key
MAX_KEY_CHARS = KEY_BYTES // 4  # utf8mb4: up to 4 bytes a character
MAX_VARCHAR = 16383  # utf8mb4 characters in a row's 65535 bytes
TEXT = "text"  # the kinds ``kind`` tells apart
BINARY = "binary"
OTHER = "other"

_SQLITE_AFFINITIES = (("INT", "bigint"), ("CHAR", TEXT), ("CLOB", TEXT), ("TEXT", TEXT), ("BLOB", BINARY),
                      ("REAL", "double"), ("FLOA", "double"), ("DOUB", "double"))
_INTEGERS = {"smallint": "smallint", "int2": "smallint", "smallserial": "smallint", "integer": "int", "int": "int",
             "int4": "int", "serial": "int", "bigint": "bigint", "int8": "bigint", "bigserial": "bigint",
             "tinyint": "tinyint", "mediumint": "mediumint", "oid": "int unsigned"}
_FLOATS = {"real": "double", "float4": "double", "double precision": "double", "double": "double",
           "float8": "double", "float": "float"}
_TEXTS = {"text", "character varying", "varchar", "character", "char", "bpchar", "name", "citext", "tinytext",
          "mediumtext", "longtext", "nchar", "nvarchar", "national char", "national varchar", "uuid"}
_BINARIES = {"bytea", "blob", "tinyblob", "mediumblob", "longblob", "binary", "varbinary"}
_SAME = {"date": "date", "year": "year", "json": "json", "jsonb": "json", "boolean": "tinyint(1)", "bool": "tinyint(1)"}
_SHAPE = re.compile(r"([a-z][a-z0-9 _]*?)\s*(?:\(\s*([0-9, ]*)\))?\s*((?:unsigned|zerofill|signed|\s)*)"
                    r"(with time zone|without time zone)?")
_WIDTH = re.compile(r"^(tinyint|smallint|mediumint|int|bigint)\(\d+\)")


def kind(type_: str) -> str:
    """TEXT, BINARY or OTHER: what a MariaDB type (as this module writes it) holds."""
    base = type_.split("(")[0]
    if base in ("varchar", "char", "longtext", "text", "mediumtext", "tinytext", "enum", "set"):
        return TEXT
    return BINARY if base in ("longblob", "varbinary", "binary", "blob", "mediumblob", "tinyblob") else OTHER


def canonical(type_: str) -> str:
    """A MariaDB type as this module writes it: lower case, integers without display width."""
    type_ = " ".join(type_.lower().split())
    return type_ if type_.startswith("tinyint(1)") else _WIDTH.sub(r"\1", type_)


def column_type(declared: str, key_length: int | None = None) -> str:
    """The MariaDB type of a column declared ``declared``; ``key_length`` (characters) when it is in a key."""
    kept = _mapped(declared.strip())
    if key_length is None:
        return kept
    if kind(kept) == TEXT or kept == "json":
        length = _length(kept)
        return f"varchar({min(length or key_length, key_length)})"
    if kind(kept) == BINARY:
        length = _length(kept)
        return f"varbinary({min(length or key_length * 4, key_length * 4)})"
    return kept


def row_bytes(type_: str) -> int:
    """The bytes a value of ``type_`` may take in the row itself (MariaDB allows 65535 in all); 0 for
    types stored apart (``longtext``, ``longblob``, ``json``) or small ones."""
    length = _length(type_)
    if length is None:
        return 0
    return length * 4 + 2 if kind(type_) == TEXT else length + 2


def _length(type_: str) -> int | None:
    found = re.match(r"^(?:var)?(?:char|binary)\((\d+)\)$", type_)
    return int(found.group(1)) if found else None


def _mapped(declared: str) -> str:
    if not declared or (declared == declared.upper() and not declared.startswith('"')):
        upper = declared.upper()
        affinity = next((t for marker, t in _SQLITE_AFFINITIES if marker in upper), TEXT)
        return {TEXT: "longtext", BINARY: "longblob"}.get(affinity, affinity)
    lowered = declared.lower()
    if lowered.endswith("]"):
        return "json"  # arrays: JSON lists
    if lowered.startswith(("enum(", "set(")):
        return declared
    shape = _SHAPE.fullmatch(lowered)
    if shape is None:
        return "longtext"
    base, args, flags, zone = shape.group(1), shape.group(2), shape.group(3).split(), shape.group(4)
    numbers = [int(a) for a in (args or "").replace(" ", "").split(",") if a]
    unsigned = " unsigned" if "unsigned" in flags else ""
    if base in _INTEGERS:
        return ("tinyint(1)" if base == "tinyint" and numbers == [1] else _INTEGERS[base]) + unsigned
    if base in ("numeric", "decimal", "dec", "fixed"):
        precision, scale = (numbers + [0, 0])[:2] if numbers else (65, 30)
        return f"decimal({precision},{scale}){unsigned}" if precision <= 65 and scale <= 38 else "longtext"
    if base in _FLOATS:
        return "double" if numbers else _FLOATS[base]
    if base in ("timestamp", "timestamptz", "datetime"):
        return "datetime(6)"
    if base in ("time", "timetz"):
        return "longtext" if zone == "with time zone" or base == "timetz" else "time(6)"
    if base in _SAME:
        return _SAME[base]
    if base in _TEXTS:
        mysql_length = base in ("varchar", "char", "character varying", "character") and numbers and numbers[0] <= MAX_VARCHAR
        return f"varchar({numbers[0]})" if mysql_length else ("varchar(36)" if base == "uuid" else "longtext")
    if base in _BINARIES:
        return f"{base}({numbers[0]})" if base in ("binary", "varbinary") and numbers else "longblob"
    return "longtext"  # intervals, network addresses, ...: their text
