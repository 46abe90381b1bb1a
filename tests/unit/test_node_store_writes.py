"""What capture writes into a SQLite node store: the same events, states and bytes however they are
produced, on connections that keep a large page cache and still sync every commit."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from exchange.contracts import changes as ch
from exchange.contracts.events import make_mapper
from exchange.store import RecordState, open_store
from exchange.store.sqlite import CACHE_SIZE
from node.capture import Capture, byte_parts, change_bytes

pytestmark = pytest.mark.unit

AGENCY = "91310000MB2F31887X"
AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
SCHEMA = ch.TableSchema("t", (ch.Column("id", "integer"), ch.Column("name", "text"), ch.Column("n", "real")),
                        ("id",))


class Listed:
    """A capture source handing out a fixed list of changes."""

    def __init__(self, changes: list[ch.Change]):
        self.changes = changes

    def schemas(self) -> dict[str, ch.TableSchema]:
        return {"t": SCHEMA}

    def read(self, after: ch.Position, limit: int) -> list[ch.Change]:
        return [c for c in self.changes if c.position > after][:limit]

    def acknowledge(self, position: ch.Position) -> None:
        pass


def stream() -> list[ch.Change]:
    """A snapshot pass, then inserts, updates (one of a key), deletes and a truncate; keys of several kinds."""
    changes: list[ch.Change] = [ch.Change(ch.Position(1), "t", ch.SCHEMA, schema=SCHEMA, commit_time=AT),
                                ch.Change(ch.Position(2), "t", ch.SNAPSHOT_BEGIN, commit_time=AT)]

    def add(op: str, before=None, after=None, txid: str = "") -> None:
        changes.append(ch.Change(ch.Position(len(changes) + 1), "t", op, before, after, AT, txid))

    for i in range(30):
        add(ch.SNAPSHOT, after={"id": i, "name": f"n{i}" if i % 3 else None, "n": i / 7})
    add(ch.SNAPSHOT_END)
    for i in range(30, 40):
        add(ch.INSERT, after={"id": i if i % 2 else str(i), "name": "é\"\\", "n": 1e-7}, txid="7")
    add(ch.UPDATE, {"id": 3, "name": "n3", "n": 3 / 7}, {"id": 3, "name": "x", "n": 3 / 7}, txid="8")
    add(ch.UPDATE, {"id": 4, "name": "n4", "n": 4 / 7}, {"id": 400, "name": "n4", "n": 4 / 7}, txid="8")
    add(ch.DELETE, before={"id": 5, "name": "n5", "n": 5 / 7}, txid="9")
    add(ch.INSERT, after={"id": 2**70, "name": "big", "n": None}, txid="9")
    add(ch.TRUNCATE)
    add(ch.INSERT, after={"id": 1, "name": "again", "n": 0.5})
    return changes


def test_stored_events_are_the_mapper_form_of_the_captured_events(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/node.db")
    recorder = store.node_recorder(AGENCY)
    captured = []
    capture = Capture(AGENCY, Listed(stream()), recorder, batch_size=7, on_stored=captured.extend,
                      snapshot_batch_size=14)
    while capture.step():
        pass
    mapper = make_mapper()
    expected = [mapper.to_stored_event(e) for e in captured]
    held = recorder.read(0, 1000)
    assert len(held) == len(expected) > 40
    assert [(n.originator_id, n.originator_version, n.topic, n.state) for n in held] == \
        [(s.originator_id, s.originator_version, s.topic, s.state) for s in expected]
    live = {e.originator_id.hex: e.key for e in captured if e.resource == "t" and e.key}
    states = recorder.record_states(sorted(live))
    assert states and all(s.key == mapper.transcoder.encode(live[oid]) for oid, s in states.items())
    store.close()


def test_states_written_in_any_order_read_back_as_given(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/node.db")
    recorder = store.node_recorder(AGENCY)
    states = {f"{i * 7919 % 1000:032x}": RecordState(1, f"h{i}", bool(i % 2), "t" * 32, b'{"id":%d}' % i, i)
              for i in range(1000)}
    recorder.insert_events([], states=states)
    assert recorder.record_states(list(states)) == states
    store.close()


def test_store_connections_keep_a_large_cache_and_sync_each_commit(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/node.db")
    store.node_recorder(AGENCY)
    for commit in (False, True):
        with store.datastore.transaction(commit=commit) as c:
            c.execute("PRAGMA cache_size")
            assert c.fetchone()[0] == CACHE_SIZE
            c.execute("PRAGMA journal_mode")
            assert c.fetchone()[0] == "wal"
            c.execute("PRAGMA synchronous")
            assert c.fetchone()[0] == 2  # FULL: a commit is on disk when it returns
    store.close()


def test_byte_parts_of_known_sizes_are_those_of_computed_ones():
    changes = stream()
    sizes = [change_bytes(c) for c in changes]
    for limit in (1, 300, 2000, sum(sizes), 10**9):
        assert byte_parts(changes, limit, sizes) == byte_parts(changes, limit)
    assert byte_parts([], 10, []) == []
