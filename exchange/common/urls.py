"""Helpers for the database URLs in configs: SQLite paths, and passwords kept out of logs."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from exchange.contracts.errors import InvalidInput


def sqlite_path(url: str) -> str:
    """The file path of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL (InvalidInput otherwise)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise InvalidInput(f"unsupported URL {url!r}: expected sqlite:///PATH")
    return url[len(prefix):]


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, for logs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)))
