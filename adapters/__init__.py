"""One module per kind of database, behind the interfaces in exchange.changes.

``open_source``, ``open_target`` and ``open_reader`` choose the module by the
URL's scheme.
"""

from __future__ import annotations

from typing import Any

from exchange.changes import ApplyTarget, CaptureSource, TableReader

SCHEMES = ("sqlite", "postgresql")


def _scheme(url: str) -> str:
    scheme = url.partition("://")[0]
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported database URL {url!r}: expected one of {', '.join(s + '://' for s in SCHEMES)}")
    return scheme


def open_source(url: str, tables: list[str], keys: dict[str, list[str]] | None = None, **options: Any) -> CaptureSource:
    """The capture source for a business database URL."""
    if _scheme(url) == "postgresql":
        from adapters.postgres import PostgresSource

        return PostgresSource(url, tables, keys or {}, **options)
    from adapters.sqlite import SQLiteSource

    return SQLiteSource(url, tables, keys or {}, **options)


def open_target(url: str) -> ApplyTarget:
    """An apply target (for replay) for a database URL."""
    if _scheme(url) == "postgresql":
        from adapters.postgres import PostgresTarget

        return PostgresTarget(url)
    from adapters.sqlite import SQLiteTarget

    return SQLiteTarget(url)


def open_reader(url: str) -> TableReader:
    """A table reader (for verify) for a database URL."""
    if _scheme(url) == "postgresql":
        from adapters.postgres import PostgresReader

        return PostgresReader(url)
    from adapters.sqlite import SQLiteReader

    return SQLiteReader(url)
