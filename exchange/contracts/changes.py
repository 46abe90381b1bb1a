"""What capture adapters produce and apply targets consume.

Every adapter (``adapters/<kind>/``) offers the same small interface:
prepare the source for capture, read committed changes after a position,
acknowledge a durably stored position, and read table contents (for
verification).  Apply targets rebuild tables from replayed events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator, NamedTuple, NewType, Protocol, Sequence

from exchange.contracts.errors import ExchangeError

# A place in a source's change stream, packed into one integer below 2**63
# (what the node stores): a change-log id, an LSN with an index, ...  Only the
# source that produced a position knows how to unpack it.
Position = NewType("Position", int)


class SourceNotReady(ExchangeError):
    """The source is not set up for capture; the message says what to change."""


class PositionLost(ExchangeError):
    """The source no longer holds the changes after the node's position (a
    dropped or invalidated replication slot, removed WAL, a purged binlog).
    The message names the repair: ``exchange node resnapshot``."""


class DatabaseUnavailable(ExchangeError):
    """A database to apply to or read from cannot be opened (unreachable, missing, refused); the message says why."""


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # declared type as the source reports it, e.g. "TEXT", "INTEGER"
    notnull: bool = False
    default: str | None = None  # SQL default expression, as declared


@dataclass(frozen=True)
class TableSchema:
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "columns": [
                {"name": c.name, "type": c.type, "notnull": c.notnull, "default": c.default}
                for c in self.columns
            ],
            "primary_key": list(self.primary_key),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TableSchema":
        return cls(
            name=d["name"],
            columns=tuple(Column(**c) for c in d["columns"]),
            primary_key=tuple(d["primary_key"]),
        )


# Change operations.
INSERT = "insert"
UPDATE = "update"
DELETE = "delete"
SNAPSHOT = "snapshot"  # a row read by the initial (or re-) snapshot: upsert if different
SCHEMA = "schema"  # the table's schema as of this position (``renames`` maps old -> new column names)
TRUNCATE = "truncate"  # the table was emptied: every live record of it is deleted, in stream order
SNAPSHOT_BEGIN = "snapshot_begin"  # a (re-)snapshot of the table starts: rows follow as SNAPSHOT changes
SNAPSHOT_END = "snapshot_end"  # the pass is complete: live records neither read by it nor changed since
#                                 its SNAPSHOT_BEGIN no longer exist at the source and are deleted


@dataclass(frozen=True)
class Change:
    """One committed row change (or schema change) at a source position.

    ``position`` strictly increases along the source's change stream and is
    what the node stores (atomically with the events) to resume from.
    ``before``/``after`` are full row images as dicts of column -> value;
    ``before`` is None for inserts and snapshot rows, ``after`` is None for
    deletes.  For ``SCHEMA`` changes ``schema`` is set and both images are None;
    ``renames`` (old name -> new name) says which columns of the previous
    schema were renamed, so their values carry over.  ``TRUNCATE``,
    ``SNAPSHOT_BEGIN`` and ``SNAPSHOT_END`` carry only the table.
    """

    position: Position
    table: str
    op: str
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    commit_time: datetime | None = None
    txid: str = ""
    schema: TableSchema | None = None
    renames: dict[str, str] | None = None


class CaptureSource(Protocol):
    """A business database captured by a node."""

    def prepare(self) -> None:
        """Check the source and install what capture needs.

        Idempotent.  Raises SourceNotReady naming what to change when the
        source cannot be captured as configured.
        """

    def schemas(self) -> dict[str, TableSchema]:
        """The captured tables as they are now."""

    def read(self, after: Position, limit: int) -> list[Change]:
        """Committed changes with position > ``after``, oldest first, at most
        about ``limit`` (never splitting one source transaction)."""

    def pending(self, after: Position) -> int:
        """How many changes wait after ``after`` (for status and metrics)."""

    def acknowledge(self, position: Position) -> None:
        """Everything up to ``position`` is durably stored at the node."""

    def request_resnapshot(self, tables: Sequence[str]) -> None:
        """Ask for the captured ``tables`` to be read again, whether or not a
        node is reading the source now.

        The request takes its place in the change stream: the ``read`` that
        reaches it produces, per table, SNAPSHOT_BEGIN, the table's rows as
        SNAPSHOT changes (streamed changes go on meanwhile) and SNAPSHOT_END,
        so the node repairs what it holds.  Where the source has lost the
        node's position (PositionLost), requesting every captured table
        captures again from the source's current position, by such a pass.
        Sources that cannot re-read raise an ExchangeError saying why.
        """

    def close(self) -> None: ...


class TableReader(Protocol):
    """Reads tables for verification."""

    def tables(self) -> list[str]:
        """User tables (capture bookkeeping excluded), sorted."""

    def table_schema(self, table: str) -> TableSchema: ...

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        """All rows of ``table`` ordered by primary key."""

    def close(self) -> None: ...


@dataclass
class RowOp:
    """One replayed row operation for an apply target."""

    table: str
    op: str  # INSERT (full row), UPDATE (changed columns), DELETE
    key: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)


class Run(NamedTuple):
    """Row operations of one shape on one table, applied with one statement: ``rows`` holds each one's
    parameters, values as events give them, in the order adapters/sql.py ``row_sql`` binds them."""

    table: str
    op: str
    columns: tuple[str, ...]  # the columns an INSERT or UPDATE writes
    key: tuple[str, ...]  # the key columns a DELETE or UPDATE matches
    nulls: tuple[bool, ...]  # which key values are NULL, matched by IS NULL and left out of ``rows`` (empty: none)
    rows: list[Sequence[Any]]


class ApplyTarget(Protocol):
    """A database that replayed events are applied to."""

    def apply_schema(self, schema: TableSchema, renames: dict[str, str] | None = None) -> None:
        """Create the table, or alter it to match ``schema``, first renaming the
        columns ``renames`` names (old -> new), so their values are kept."""

    def drop_table(self, table: str, checkpoint: str | None = None) -> None:
        """Drop ``table`` when it exists and forget the checkpoint named
        ``checkpoint`` with it, in one transaction."""

    def apply(self, ops: Sequence[RowOp], checkpoint: tuple[str, int] | None = None) -> None:
        """Apply row operations in order, in one transaction; a ``checkpoint``
        (name, position) is recorded in the same transaction."""

    def apply_runs(self, runs: Sequence[Run], checkpoint: tuple[str, int] | None = None) -> None:
        """As ``apply``, for operations already grouped in runs of one shape (``adapters.sql.runs``)."""

    def checkpoint(self, name: str) -> int | None:
        """The position last recorded under ``name`` (None when there is none)."""

    def close(self) -> None: ...
