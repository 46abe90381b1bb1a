"""Field policy: columns excluded or masked at the node, before anything is stored.

Capture applies the policy to every change it reads, before the change
becomes an event, so excluded and unmasked values never reach the node's
store, the hub, bundles or any replay.

- ``[policy] exclude = {table = [columns]}``: the columns disappear from row
  images and from schema events.  A key column cannot be excluded (a record
  needs its key).
- ``[policy] mask = {table = {column = "hmac"}}``: each value is replaced by
  the hex HMAC-SHA256 of the value under the key in ``[policy]
  mask_key_file``.  The same value gives the same mask in every table and
  column and on every run, so masked keys and references still join.  Nulls
  stay null.  A masked column's type becomes TEXT in schema events.
- A column renamed at the source stays excluded or masked under its new
  name (logged); the configuration must then name it so before the next start.

A masked key column makes the record id uuid5(agency, table, masked key):
ids stay stable for as long as the mask key stays the same, and a record id
reveals nothing about the real key (an id computed from the real key could be
confirmed by anyone guessing identity numbers).  Changing the mask key, or
the policy, after capture started therefore starts new records; set both
before the node's first run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any, Mapping

from exchange.common.config import Config
from exchange.contracts.changes import Change, Column, TableSchema
from exchange.contracts.errors import InvalidInput
from exchange.contracts.events import canonical_json

MASK_METHODS = ("hmac",)
log = logging.getLogger(__name__)


class FieldPolicy:
    """Which columns of which tables are excluded or masked."""

    def __init__(self, exclude: Mapping[str, list[str]] | None = None,
                 mask: Mapping[str, Mapping[str, str]] | None = None, mask_key: bytes | None = None):
        self.exclude = {table: frozenset(columns) for table, columns in (exclude or {}).items()}
        self.mask = {table: frozenset(columns) for table, columns in (mask or {}).items()}
        for table, columns in (mask or {}).items():
            for column, method in columns.items():
                if method not in MASK_METHODS:
                    raise InvalidInput(f"[policy] mask: {table}.{column} = {method!r}: "
                                     f"expected one of {', '.join(MASK_METHODS)}")
        if self.mask and not mask_key:
            raise InvalidInput("[policy] mask needs [policy] mask_key_file (create one with `exchange store keygen`)")
        self._key = mask_key or b""

    @classmethod
    def from_config(cls, cfg: Config) -> "FieldPolicy":
        """The policy in the node settings ``policy.*``."""
        exclude, mask = cfg.policy.exclude, cfg.policy.mask
        for table, columns in exclude.items():
            if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
                raise InvalidInput(f"[policy] exclude: {table} must be a list of column names, got {columns!r}")
        for table, columns in mask.items():
            if not isinstance(columns, dict):
                raise InvalidInput(f"[policy] mask: {table} must be a table {{column = \"hmac\"}}, got {columns!r}")
        key = None
        if cfg.policy.mask_key_file:
            key = _read_key(cfg.policy.mask_key_file)
        return cls(exclude, mask, key)

    def __bool__(self) -> bool:
        return bool(self.exclude or self.mask)

    def check(self, schemas: Mapping[str, TableSchema]) -> None:
        """Refuse a policy naming tables or columns the source does not have
        (a misspelt column would otherwise leave the node unmasked)."""
        for kind, rules in (("exclude", self.exclude), ("mask", self.mask)):
            for table, columns in rules.items():
                if table not in schemas:
                    raise InvalidInput(f"[policy] {kind}: {table} is not a captured table "
                                     f"(captured: {', '.join(sorted(schemas))})")
                missing = sorted(columns - set(schemas[table].column_names))
                if missing and schemas[table].columns:  # no columns: known only once data arrives (file drops)
                    raise InvalidInput(f"[policy] {kind}: table {table} has no column {', '.join(missing)}")
        for table, columns in self.exclude.items():
            keys = sorted(columns & set(schemas[table].primary_key))
            if keys:
                raise InvalidInput(f"[policy] exclude: {table}.{keys[0]} is part of the table's key and cannot be "
                                 "excluded; mask it instead")

    def apply(self, change: Change) -> Change:
        """The change as it may leave the node."""
        table = change.table
        if table not in self.exclude and table not in self.mask:
            return change
        renames = change.renames and self._follow(table, change.renames)
        return replace(change, before=self.row(table, change.before), after=self.row(table, change.after),
                       schema=change.schema and self.table_schema(change.schema), renames=renames or None)

    def _follow(self, table: str, renames: dict[str, str]) -> dict[str, str]:
        """A renamed column stays excluded or masked under its new name (the configuration still names
        the old one: the node refuses to start until it is changed); the renames that may leave the node."""
        for rules, kind in ((self.exclude, "exclude"), (self.mask, "mask")):
            renamed = {new for old, new in renames.items() if old in rules.get(table, ())}
            if renamed:
                rules[table] = rules[table] | renamed
                log.warning("[policy] %s: columns of %s were renamed to %s; they stay under the policy, which must "
                            "now name them so", kind, table, ", ".join(sorted(renamed)),
                            extra={"table": table, "columns": sorted(renamed)})
        return {old: new for old, new in renames.items() if old not in self.exclude.get(table, ())}

    def row(self, table: str, image: dict[str, Any] | None) -> dict[str, Any] | None:
        if image is None:
            return None
        excluded, masked = self.exclude.get(table, frozenset()), self.mask.get(table, frozenset())
        return {column: (self.masked(value) if column in masked else value)
                for column, value in image.items() if column not in excluded}

    def table_schema(self, schema: TableSchema) -> TableSchema:
        excluded, masked = self.exclude.get(schema.name, frozenset()), self.mask.get(schema.name, frozenset())
        columns = tuple(Column(c.name, "TEXT", c.notnull, None) if c.name in masked else c
                        for c in schema.columns if c.name not in excluded)
        return replace(schema, columns=columns)

    def masked(self, value: Any) -> str | None:
        """The keyed hash of a value (hex); None stays None."""
        if value is None:
            return None
        data = value.encode() if isinstance(value, str) else canonical_json(value).encode()
        return hmac.new(self._key, data, hashlib.sha256).hexdigest()


def _read_key(path: str | Path) -> bytes:
    """The masking key: base64 text, as ``exchange store keygen`` writes it."""
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise InvalidInput(f"cannot read [policy] mask_key_file {path}: {e.strerror}") from None
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"[policy] mask_key_file {path}: not base64 (create one with `exchange store keygen`)") from None
    if len(key) < 16:
        raise InvalidInput(f"[policy] mask_key_file {path}: the key is too short ({len(key)} bytes; use 32)")
    return key
