"""Logging set-up: readable text by default, one JSON object per line on request."""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone

from exchange.contracts.text import bounded

_STANDARD = set(vars(logging.makeLogRecord({})))


MESSAGE_CHARS = 4096  # of one log message; values a client sent can be megabytes


class TextFormatter(logging.Formatter):
    """The plain text format, with messages cut to ``MESSAGE_CHARS``."""

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        record.message = bounded(record.message, MESSAGE_CHARS)
        return super().formatMessage(record)


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": bounded(record.getMessage(), MESSAGE_CHARS),
        }
        entry.update({k: bounded(v, MESSAGE_CHARS) for k, v in vars(record).items()
                      if k not in _STANDARD and not k.startswith("_")})
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("text", "json")


def setup_logging(level: str = "info", fmt: str = "text") -> None:
    """Log to stderr at ``level`` as ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JSONFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError:
        raise ValueError(f"unknown log level {level!r}: use {', '.join(LOG_LEVELS)}") from None
