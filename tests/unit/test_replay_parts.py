"""Replay in parts (``exchange replay --jobs N``): the tables one job builds, through schema changes,
resumed from parts that stopped at different places, and refused where it cannot take up a replay."""

from __future__ import annotations

import sqlite3
import threading

import pytest
from support.records import capture_all

import adapters
from exchange.store import EventStore
from exchange.tools.replay import Limits, ProgressBar, ReplayError, fold_log, replay
from exchange.tools.replay_parts import Part, part_names, replay_in_parts
from exchange.tools.verify import verify

AGENCY = "91310000MB2F31887X"
TABLES = ["r", "s"]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """A captured SQLite source: rows, then schema changes and changes (up to ``first``), then row
    changes only (up to ``second``), then more of both; copies of the source at ``first`` and the end."""
    tmp_path = tmp_path_factory.mktemp("history")
    path = tmp_path / "agency.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE r (id INTEGER PRIMARY KEY, val TEXT, n INTEGER)")
    db.executemany("INSERT INTO r VALUES (?, ?, ?)", [(i, f"v{i}", i) for i in range(1, 61)])
    db.execute("CREATE TABLE s (id INTEGER PRIMARY KEY, v TEXT)")
    db.executemany("INSERT INTO s VALUES (?, ?)", [(i, f"s{i}") for i in range(1, 31)])
    url, store_url = f"sqlite:///{path}", f"sqlite:///{tmp_path / 'node.db'}"
    source = adapters.open_source(url, TABLES, snapshot_chunk=7)
    try:
        capture_all(AGENCY, source, store_url, batch_size=5)
        db.execute("ALTER TABLE r RENAME COLUMN val TO v2")
        db.execute("ALTER TABLE r ADD COLUMN extra TEXT")
        db.execute("UPDATE r SET v2 = 'changed', extra = 'x' WHERE id % 3 = 0")
        db.execute("DELETE FROM s WHERE id % 2 = 0")
        first = capture_all(AGENCY, source, store_url, batch_size=5)
        with sqlite3.connect(tmp_path / "first.db") as copy:
            db.backup(copy)
        db.executemany("INSERT INTO r (id, v2, n, extra) VALUES (?, ?, ?, ?)", [(i, f"n{i}", i, "new")
                                                                               for i in range(100, 140)])
        db.executemany("INSERT INTO s VALUES (?, ?)", [(i, f"t{i}") for i in range(100, 120)])
        db.execute("UPDATE r SET extra = 'y' WHERE id % 5 = 0")
        second = capture_all(AGENCY, source, store_url, batch_size=5)
        db.execute("ALTER TABLE r ADD COLUMN later INTEGER")
        db.execute("UPDATE r SET extra = 'z', later = id WHERE id % 7 = 0")
        db.execute("DELETE FROM r WHERE id % 11 = 0")
        capture_all(AGENCY, source, store_url, batch_size=5)
    finally:
        source.close()
        db.close()
    return url, store_url, first, second


def test_a_replay_in_parts_builds_what_one_job_builds_through_schema_changes(history, tmp_path):
    url, store_url, _, _ = history
    one = replay(store_url, AGENCY, f"sqlite:///{tmp_path / 'one.db'}", progress=False)
    parts = replay_in_parts(store_url, AGENCY, f"sqlite:///{tmp_path / 'parts.db'}", jobs=3, progress=False)
    assert verify(url, f"sqlite:///{tmp_path / 'parts.db'}", tables=TABLES).equal
    assert (parts["events"], parts["schema_changes"], parts["position"], parts["jobs"]) == \
        (one["events"], one["schema_changes"], one["position"], 3)


def test_parts_that_stopped_at_different_places_resume_with_nothing_lost_or_applied_twice(history, tmp_path):
    url, store_url, first, second = history
    target = f"sqlite:///{tmp_path / 'resumed.db'}"
    replay_in_parts(store_url, AGENCY, target, jobs=2, until_position=first, progress=False)
    assert verify(url.replace("agency.db", "first.db"), target, tables=TABLES).equal
    # The first part alone goes on to ``second`` (row changes only since ``first``), as when the
    # other was killed before its next checkpoint: the two checkpoints now differ.
    names = part_names(AGENCY, None, 2)
    applied = adapters.open_target(target)
    store = EventStore(store_url, create=False)
    try:
        start = applied.checkpoint(names[0])
        fold_log(store.recorder(AGENCY), applied, names[0], start, Limits(until_position=second),
                 ProgressBar(False, 0), Part(0, 2, start, start, threading.Barrier(1)))
        assert applied.checkpoint(names[0]) > applied.checkpoint(names[1])
    finally:
        applied.close()
        store.close()
    resumed = replay_in_parts(store_url, AGENCY, target, jobs=2, progress=False)
    assert resumed["resumed_from"] < resumed["position"]
    assert verify(url, target, tables=TABLES).equal


def test_a_replay_is_continued_with_the_number_of_jobs_it_was_made_with(history, tmp_path):
    url, store_url, first, _ = history
    in_parts, in_one = f"sqlite:///{tmp_path / 'in_parts.db'}", f"sqlite:///{tmp_path / 'in_one.db'}"
    replay_in_parts(store_url, AGENCY, in_parts, jobs=2, until_position=first, progress=False)
    replay(store_url, AGENCY, in_one, until_position=first, progress=False)
    with pytest.raises(ReplayError, match="--jobs"):
        replay(store_url, AGENCY, in_parts, progress=False)
    with pytest.raises(ReplayError, match="--jobs"):
        replay_in_parts(store_url, AGENCY, in_parts, jobs=3, progress=False)
    with pytest.raises(ReplayError, match="without --jobs"):
        replay_in_parts(store_url, AGENCY, in_one, jobs=2, progress=False)
    replay_in_parts(store_url, AGENCY, in_parts, jobs=2, progress=False)
    assert verify(url, in_parts, tables=TABLES).equal
