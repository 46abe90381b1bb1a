"""Record ids read as text: ``hex_id`` reads exactly what ``UUID()`` reads, as ``UUID.hex`` gives it."""

from __future__ import annotations

import uuid

import pytest

from exchange.store import hex_id

RECORD = uuid.UUID("0123abcd-4567-89ef-0123-456789abcdef")


@pytest.mark.parametrize("text", [
    str(RECORD), str(RECORD).upper(), RECORD.hex, RECORD.hex.upper(), "{%s}" % RECORD, RECORD.urn,
    "-".join(RECORD.hex[i:i + 4] for i in range(0, 32, 4)),  # dashes elsewhere: UUID() drops them all
    "-" + RECORD.hex,
])
def test_every_form_uuid_reads_gives_its_hex(text):
    assert hex_id(text) == uuid.UUID(text).hex == RECORD.hex


@pytest.mark.parametrize("text", [
    "", "0123", RECORD.hex[:-1] + "g", RECORD.hex + "0", RECORD.hex[:30] + " 0",
    RECORD.hex[:28] + " " + RECORD.hex[28:30] + " ",  # 32 characters bytes.fromhex reads (as 15 bytes)
    # What int(text, 16) takes, so UUID() too: whitespace around, other scripts' digits.
    "\t" + RECORD.hex[1:], RECORD.hex[:31] + "\u0660",
])
def test_any_other_text_is_read_or_refused_as_uuid_does(text):
    try:
        expected = uuid.UUID(text).hex
    except ValueError:
        with pytest.raises(ValueError):
            hex_id(text)
    else:
        assert hex_id(text) == expected


def test_a_uuid_gives_its_hex():
    assert hex_id(RECORD) == RECORD.hex
