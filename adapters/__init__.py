"""One package per kind of database, behind the interfaces in exchange.contracts.changes.

``open_source``, ``open_target`` and ``open_reader`` choose the module by the
URL's scheme.  ``files://`` (a directory of table exports, adapters/files/source.py)
is a capture source only.  ``selection.py`` says which tables ``[source]
tables`` patterns and ``[source] exclude`` select.
"""

from __future__ import annotations

from typing import Any

from adapters.selection import check_plain
from exchange.common.config import Config
from exchange.contracts.changes import ApplyTarget, CaptureSource, TableReader
from exchange.contracts.errors import InvalidInput

SCHEMES = ("sqlite", "postgresql", "mysql")
SOURCE_SCHEMES = (*SCHEMES, "files")


def _scheme(url: str, schemes: tuple[str, ...] = SCHEMES) -> str:
    scheme = url.partition("://")[0]
    if scheme not in schemes:
        raise InvalidInput(f"unsupported database URL {url!r}: expected one of {', '.join(s + '://' for s in schemes)}")
    return scheme


def open_source(url: str, tables: list[str], keys: dict[str, list[str]] | None = None, **options: Any) -> CaptureSource:
    """The capture source for a business database URL (or a file-drop directory).

    ``tables`` may hold patterns and ``options`` an ``exclude`` list
    (adapters/selection.py) for PostgreSQL and MariaDB/MySQL sources only."""
    scheme = _scheme(url, SOURCE_SCHEMES)
    exclude = options.pop("exclude", ())
    if scheme == "postgresql":
        from adapters.postgres.source import PostgresSource

        return PostgresSource(url, tables, keys or {}, exclude=exclude, **options)
    if scheme == "mysql":
        from adapters.mysql.source import MySQLSource

        return MySQLSource(url, tables, keys or {}, exclude=exclude, **options)
    check_plain(tables, exclude, "SQLite" if scheme == "sqlite" else "file-drop")
    if scheme == "files":
        from adapters.files.source import FileDropSource

        return FileDropSource(url, tables, keys or {}, **options)
    from adapters.sqlite.source import SQLiteSource

    return SQLiteSource(url, tables, keys or {}, **options)


def source_options(cfg: Config) -> dict[str, Any]:
    """The node settings that ``open_source`` takes as options for the configured source's kind."""
    options: dict[str, Any] = {"exclude": cfg.source.exclude}
    if cfg.source.url.startswith("files://"):
        options.update(settle_seconds=cfg.source.settle_seconds, state_path=cfg.source.state_path)
    if cfg.source.url.startswith("mysql://"):
        options.update(server_id=cfg.source.server_id)
    return options


def open_target(url: str) -> ApplyTarget:
    """An apply target (for replay) for a database URL."""
    scheme = _scheme(url)
    if scheme == "postgresql":
        from adapters.postgres.target import PostgresTarget

        return PostgresTarget(url)
    if scheme == "mysql":
        from adapters.mysql.target import MySQLTarget

        return MySQLTarget(url)
    from adapters.sqlite.target import SQLiteTarget

    return SQLiteTarget(url)


def open_reader(url: str) -> TableReader:
    """A table reader (for verify) for a database URL."""
    scheme = _scheme(url)
    if scheme == "postgresql":
        from adapters.postgres.reader import PostgresReader

        return PostgresReader(url)
    if scheme == "mysql":
        from adapters.mysql.reader import MySQLReader

        return MySQLReader(url)
    from adapters.sqlite.reader import SQLiteReader

    return SQLiteReader(url)
