"""Replay options: one resource, up to a source position, resuming an interrupted replay."""

from __future__ import annotations

import sqlite3

import pytest
from support.records import capture_all

from adapters.sqlite.source import SQLiteSource
from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import EventStore
from exchange.tools.replay import ReplayError, replay
from exchange.tools.verify import verify

AGENCY = "91310000MB2F31887X"


@pytest.fixture
def captured(tmp_path):
    """A sample agency with 600 changes captured into a node store, and a copy
    of the source taken when half of them were made."""
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=50, legal_persons=20, licences=30)
    source = SQLiteSource(f"sqlite:///{agency.path}", TABLES)
    source.prepare()
    store_url = f"sqlite:///{tmp_path / 'node.db'}"
    agency.run(300)
    halfway = capture_all(AGENCY, source, store_url)
    with sqlite3.connect(agency.path) as live, sqlite3.connect(tmp_path / "halfway.db") as copy:
        live.backup(copy)
    agency.run(300)
    capture_all(AGENCY, source, store_url)
    source.close()
    return agency, store_url, halfway, tmp_path


def test_replay_up_to_a_source_position_equals_the_source_then(captured):
    agency, store_url, halfway, tmp_path = captured
    target = f"sqlite:///{tmp_path / 'then.db'}"
    replay(store_url, AGENCY, target, until_position=halfway)
    assert verify(f"sqlite:///{tmp_path / 'halfway.db'}", target, tables=TABLES).equal
    assert not verify(f"sqlite:///{agency.path}", target, tables=TABLES).equal


def test_a_stopped_replay_resumes_where_it_stopped(captured):
    agency, store_url, halfway, tmp_path = captured
    target = f"sqlite:///{tmp_path / 'resumed.db'}"
    first = replay(store_url, AGENCY, target, until_position=halfway)
    second = replay(store_url, AGENCY, target)
    assert second["resumed_from"] == first["position"] > 0
    assert first["events"] + second["events"] == EventStore(store_url).recorder(AGENCY).count_after(0)
    assert verify(f"sqlite:///{agency.path}", target, tables=TABLES).equal


def test_replay_of_one_resource_builds_only_that_table(captured):
    agency, store_url, _, tmp_path = captured
    target = f"sqlite:///{tmp_path / 'licences.db'}"
    replay(store_url, AGENCY, target, resource="licences")
    assert verify(f"sqlite:///{agency.path}", target, tables=["licences"]).equal
    with sqlite3.connect(tmp_path / "licences.db") as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "licences" in tables and "persons" not in tables


def test_replay_refuses_a_target_holding_other_data(captured, tmp_path):
    _, store_url, _, _ = captured
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE ledger (id INTEGER PRIMARY KEY)")
    with pytest.raises(ReplayError, match="is not empty"):
        replay(store_url, AGENCY, f"sqlite:///{other}")
