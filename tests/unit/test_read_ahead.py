"""The node's read-ahead of its capture source (node/read_ahead.py), on a real SQLite source."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from adapters.sqlite.source import SQLiteSource
from node.read_ahead import ReadAhead

pytestmark = pytest.mark.unit


@pytest.fixture
def url(tmp_path):
    db = sqlite3.connect(tmp_path / "agency.db", isolation_level=None)
    db.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)")
    db.executemany("INSERT INTO people VALUES (?, ?)", [(i, f"p{i}") for i in range(1, 501)])
    db.close()
    return f"sqlite:///{tmp_path / 'agency.db'}"


def opened(url: str, threads: list[str]):
    def open_source() -> SQLiteSource:
        threads.append(threading.current_thread().name)
        source = SQLiteSource(url, ["people"], snapshot_chunk=100)
        source.prepare()
        return source
    return open_source


def read_all(source, limit: int = 100) -> list:
    found, after = [], 0
    while batch := source.read(after, limit):
        found += batch
        after = batch[-1].position
    return found


def test_the_read_ahead_hands_out_what_reading_directly_returns(url):
    direct = opened(url, [])()
    expected = read_all(direct)
    direct.close()
    threads: list[str] = []
    source = ReadAhead(opened(url, threads))
    try:
        assert read_all(source) == expected and len([c for c in expected if c.after]) == 500
        assert source.schemas()["people"].primary_key == ("id",)  # other calls reach the source
    finally:
        source.close()
    # The source was opened on the read-ahead's thread, which every call used: SQLite refuses others.
    assert threads[0].startswith("capture-read")


def test_a_read_from_another_position_drops_what_was_read_ahead(url):
    source = ReadAhead(opened(url, []))
    try:
        first = source.read(0, 100)
        again = source.read(0, 100)  # the loop failed to store the batch and asks for it again
        second = source.read(first[-1].position, 100)
        source.acknowledge(second[-1].position)
        third = source.read(second[-1].position, 100)
    finally:
        source.close()
    assert again == first
    assert [c.after["id"] for c in first + second + third if c.after] == list(range(1, 300))  # and the schema
