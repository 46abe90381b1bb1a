"""Agency ids: the names that key every agency's log, table, certificate and bundle."""

from __future__ import annotations

import re

from exchange.contracts.errors import ExchangeError
from exchange.contracts.text import excerpt

AGENCY_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")  # matched whole (fullmatch): "$" would let a final newline pass


class InvalidAgency(ValueError, ExchangeError):
    """An agency id that is not 1-64 letters, digits or underscores."""


def check_agency(agency: str) -> str:
    """``agency``, if it is a valid agency id (it names tables and files); else InvalidAgency."""
    if not isinstance(agency, str) or not AGENCY_PATTERN.fullmatch(agency):
        raise InvalidAgency(f"invalid agency id {excerpt(agency)}: use 1-64 letters, digits or underscores")
    return agency
