"""A PostgreSQL log's batch insert: the binary COPY stream it makes, and the versions it remembers between
batches instead of asking the store (trusted only while no other writer has stored since)."""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.persistence import StoredEvent, Tracking

from exchange.store import EventStore, VersionGapError, stored_signal

AGENCY = "91310000MA00000019"
RECORD = uuid.uuid5(uuid.NAMESPACE_OID, "record")


def events(first: int, last: int, record: uuid.UUID = RECORD) -> list[StoredEvent]:
    return [StoredEvent(record, v, "exchange.record:Updated", b'{"v": %d}' % v) for v in range(first, last + 1)]


def test_ids_in_every_text_form_and_any_topic_and_state_are_stored_as_given(postgres):
    store = EventStore(postgres.url(postgres.create_database("copy_forms")))
    try:
        recorder = store.recorder(AGENCY)
        ids = [uuid.uuid4() for _ in range(5)]
        forms = [str(ids[0]), ids[1].hex, str(ids[2]).upper(), "{%s}" % ids[3], ids[4].urn]
        batch = [StoredEvent(form, 1, topic, state) for form, topic, state in zip(
            forms, ["t", "主题:变更", "", "t" * 300, "t"], [b"", b"\x00\xff" * 40_000, b"{}", b"\\N\t\n", b"x"])]
        stored_ids = recorder.insert_events(batch)
        stored = recorder.read(0, 10)
        assert [n.id for n in stored] == list(stored_ids)
        assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in stored] == \
            [(i, 1, e.topic, e.state) for i, e in zip(ids, batch)]
    finally:
        store.close()


def test_versions_another_writer_stored_meanwhile_are_read_from_the_store(postgres):
    url = postgres.url(postgres.create_database("versions_elsewhere"))
    first, second = EventStore(url), EventStore(url)  # two processes on one log
    try:
        mine, theirs = first.recorder(AGENCY), second.recorder(AGENCY)
        mine.insert_events(events(1, 3))
        theirs.insert_events(events(4, 4))
        with pytest.raises(VersionGapError, match="expected version 5, got 4"):
            mine.insert_events(events(4, 4))  # what this recorder stored last says 4 comes next: it does not
        with pytest.raises(VersionGapError, match="expected version 5, got 6"):
            mine.insert_events(events(6, 6))
        mine.insert_events(events(5, 6))
        assert [n.originator_version for n in mine.read(0, 10)] == [1, 2, 3, 4, 5, 6]
    finally:
        first.close()
        second.close()


def test_a_batch_that_did_not_commit_leaves_no_versions_behind(postgres, monkeypatch):
    store = EventStore(postgres.url(postgres.create_database("versions_rolled_back")))
    try:
        recorder = store.recorder(AGENCY)
        recorder.insert_events(events(1, 2), tracking=Tracking("node:" + AGENCY, 2))

        def fail(*args: object) -> None:
            raise RuntimeError("lost after the COPY")

        with monkeypatch.context() as patched:
            patched.setattr(stored_signal, "announce", fail)
            with pytest.raises(RuntimeError):
                recorder.insert_events(events(3, 4), tracking=Tracking("node:" + AGENCY, 4))
        recorder.insert_events(events(3, 4), tracking=Tracking("node:" + AGENCY, 4))  # sent again: taken
        with pytest.raises(VersionGapError, match="expected version 5, got 4"):
            recorder.insert_events(events(4, 4))
        assert [n.originator_version for n in recorder.read(0, 10)] == [1, 2, 3, 4]
        assert recorder.position("node:" + AGENCY) == 4
    finally:
        store.close()


def test_versions_whose_last_event_a_promoted_standby_lost_are_read_from_the_store(postgres):
    db = postgres.create_database("versions_failover")
    url = postgres.url(db)
    first, second = EventStore(url), EventStore(url)
    try:
        mine, theirs = first.recorder(AGENCY), second.recorder(AGENCY)
        mine.insert_events(events(1, 2))
        # As on a standby promoted before the second event reached it: gone, and its id handed out again.
        table, last = f'"events_{AGENCY}"', max(n.id for n in mine.read(0, 10))
        postgres.execute(f"DELETE FROM {table} WHERE notification_id = {last}; SELECT setval(pg_get_serial_sequence("
                         f"'{table}', 'notification_id'), {last - 1})", dbname=db)
        theirs.insert_events(events(1, 1, uuid.uuid4()))
        assert max(n.id for n in theirs.read(0, 10)) == last
        mine.insert_events(events(2, 2))
        assert sorted(n.originator_version for n in mine.read(0, 10) if n.originator_id == RECORD) == [1, 2]
    finally:
        first.close()
        second.close()
