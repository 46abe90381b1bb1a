"""What commands write: JSON on standard output for scripts, logs on standard error."""

from __future__ import annotations

import json
from typing import Any

from exchange.common.config import Config


def print_json(value: Any) -> None:
    """``value`` as one line of JSON, non-ASCII characters kept."""
    print(json.dumps(value, ensure_ascii=False))


def logging_as_configured(cfg: Config) -> None:
    """Log to standard error at the ``[log]`` level and in the format ``cfg`` sets."""
    from exchange.common.logs import setup_logging

    setup_logging(cfg.log.level, cfg.log.format)
