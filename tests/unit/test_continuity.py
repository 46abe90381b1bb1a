"""The version check every store makes before it writes a batch."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import StoredEvent

from exchange.store import VersionGapError, check_continuity

RECORD = uuid.uuid4()


def stored(versions: dict[str, int]):
    return lambda hex_ids: {h: versions[h] for h in hex_ids if h in versions}


@pytest.mark.parametrize("form", [lambda u: u, str, lambda u: u.hex])
def test_a_record_named_in_any_form_follows_on_from_its_stored_version(form):
    events = [StoredEvent(form(RECORD), 3, "t", b""), StoredEvent(RECORD, 4, "t", b"")]
    check_continuity(events, stored({RECORD.hex: 2}))
    with pytest.raises(VersionGapError, match=f"record {RECORD}: expected version 3, got 4"):
        check_continuity(events[1:], stored({RECORD.hex: 2}))


def test_a_gap_inside_the_batch_names_the_version_expected():
    events = [StoredEvent(RECORD, 1, "t", b""), StoredEvent(uuid.uuid4(), 1, "t", b""), StoredEvent(str(RECORD), 3, "t", b"")]
    with pytest.raises(VersionGapError, match=f"record {RECORD}: expected version 2, got 3"):
        check_continuity(events, stored({}))
