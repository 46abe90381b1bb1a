"""What the catalog tells the rest of the hub about a published resource.

Sharing (requests, subscriptions, offline export) asks the catalog only
through ``TermsSource.terms``, so the sharing rules never read catalog
internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

UNCONDITIONAL, CONDITIONAL, NOT_SHARED = 1, 2, 3
SENSITIVITIES = frozenset({"secret", "commercial", "personal"})


@dataclass(frozen=True)
class ResourceTerms:
    """Share terms of one published resource (one captured table of one provider)."""

    provider: str              # provider agency id (USCC)
    resource: str              # the captured table the entry describes
    code: str                  # catalog resource code, e.g. "101001/0001"
    share_type: int            # UNCONDITIONAL, CONDITIONAL or NOT_SHARED
    items: tuple[str, ...]     # data items (column names) the entry publishes
    condition: str = ""        # for CONDITIONAL: the condition of sharing
    basis: str = ""            # for NOT_SHARED: the legal basis
    sensitivity: frozenset[str] = frozenset()  # subset of SENSITIVITIES: needs a secrecy agreement


class TermsSource(Protocol):
    def terms(self, provider: str, resource: str) -> ResourceTerms | None:
        """Terms of the provider's published resource, or None when it has no published entry."""
