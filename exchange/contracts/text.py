"""Client-supplied text made safe to repeat in errors, logs and audit entries.

A value a client sent may be megabytes long or hold control characters.
Wherever the system repeats it (an error message, a log line, an audit
entry, a status detail) it repeats an escaped excerpt, with the full
value's length and SHA-256 so that the original can still be matched.
"""

from __future__ import annotations

import hashlib
from typing import Any

EXCERPT_CHARS = 80  # of a value quoted inside a message
DETAIL_CHARS = 1024  # of a whole message or audit detail


def excerpt(value: Any, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` when short; else its first ``limit`` characters escaped, its length and hash."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{text[:limit]!r}… ({len(text)} characters, sha256 {digest}…)"


def bounded(value: Any, limit: int = DETAIL_CHARS) -> Any:
    """``value`` with every string longer than ``limit`` replaced by its excerpt (lists and dicts walked)."""
    if isinstance(value, str):
        return value if len(value) <= limit else excerpt(value, limit // 4)
    if isinstance(value, (bytes, bytearray)):
        return bounded(bytes(value).decode("utf-8", "backslashreplace"), limit)
    if isinstance(value, dict):
        return {bounded(k, limit): bounded(v, limit) for k, v in list(value.items())[:limit]}
    if isinstance(value, (list, tuple)):
        return [bounded(v, limit) for v in value[:limit]]
    return value
