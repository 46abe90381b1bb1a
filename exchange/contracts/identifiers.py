"""Check characters of the identifiers records are keyed by (Art. 13 of the Measures, docs/design.md).

Unified social credit code: GB 32100-2015, mod 31.  Resident identity card
number: GB 11643-1999, mod 11 with X.
"""

from __future__ import annotations

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK = "10X98765432"


def uscc_check_char(first17: str) -> str:
    """The 18th character of a unified social credit code."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def is_valid_uscc(code: str) -> bool:
    return (
        isinstance(code, str)
        and len(code) == 18
        and all(c in USCC_CHARSET for c in code)
        and uscc_check_char(code[:17]) == code[17]
    )


def resident_id_check_char(first17: str) -> str:
    """The 18th character of a resident identity card number."""
    total = sum(int(c) * w for c, w in zip(first17, _RESIDENT_WEIGHTS, strict=True))
    return _RESIDENT_CHECK[total % 11]


def is_valid_resident_id(number: str) -> bool:
    return (
        isinstance(number, str)
        and len(number) == 18
        and number[:17].isdigit()
        and resident_id_check_char(number[:17]) == number[17]
    )
