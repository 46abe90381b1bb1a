"""File-drop source against hostile files: parser failures of every kind refuse
only the file at fault, only regular files in the drop directory are read, logs
quote content only in short escaped excerpts, numbers that no target can store
are refused or kept exactly, and the adapter's state stays proportionate."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from pathlib import Path

import pytest
from test_exchange_e2e import AGENCY
from test_files_adapter import drain, drops, ops, refused_count, source, write  # noqa: F401 (drops: a fixture)

from adapters.files import formats as files_formats
from adapters.files import source as files
from exchange.store import EventStore
from exchange.tools.replay import replay
from node.capture import Capture

DEEP = 100_000


def assert_refused_alone(s, directory: Path, caplog, name: str, line: int, fault: str) -> None:
    """``name`` is refused (logged with its line, counted, left in place, not retried) while a
    licences file dropped after it is taken."""
    write(directory, "licences.jsonl", '{"no": "L1", "fee": 1}\n')
    os.utime(directory / "licences.jsonl", ns=(0, os.stat(directory / name).st_mtime_ns + 10**9))  # the newer file
    before = refused_count("persons")
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        taken = drain(s)
    assert ops(taken) == [("schema", "licences", None), ("insert", "licences", None)]
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert f"drop file {name} refused: {f'line {line}: ' if line else ''}" in message and fault in message, message
    assert (directory / name).exists() and refused_count("persons") == before + 1
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        assert drain(s, taken[-1].position) == []  # not retried while it is unchanged
    assert not caplog.records and refused_count("persons") == before + 1


# -- whatever a parser raises refuses that file only -------------------------------

@pytest.mark.parametrize("name, text, line, fault", [
    ("persons.json", '[{"id": 1, "v": ' + "[" * DEEP + "]" * DEEP + "}]", 1, "nested too deeply"),
    ("persons.jsonl", '{"id": 1, "v": 2}\n{"id": 2, "v": ' + "[" * DEEP + "]" * DEEP + "}\n", 2, "nested too deeply"),
    ("persons.json", '[\n{"id": 1, "fee": 2.5},\n{"id": 2, "fee": 1e400}\n]', 3, "the number 1e400 is out of range"),
    ("persons.jsonl", '{"id": 1, "fee": 2}\n{"id": 2, "fee": -1E999}\n', 2, "the number -1E999 is out of range"),
    ("persons.jsonl", '{"id": 1, "name": "\\ud800"}\n', 1, "column 'name' holds a lone surrogate"),
    ("persons.jsonl", '{"id": 1, "\\udfff": 2}\n', 1, "a column name that is empty or holds a lone surrogate"),
    ("persons.json", '[{"id": 1, "": 2}]', 1, "a column name that is empty"),
    ("persons.json", '[\n{"id": 1, "name": "a", "name": "b"}\n]', 2, "the key 'name' appears twice in one object"),
    ("persons.jsonl", '{"id": 1, "v": 1}\n{"id": 2, "v": 1, "v": 2}\n', 2, "the key 'v' appears twice"),
])
def test_a_file_no_parser_can_read_is_refused_and_other_tables_are_still_captured(
        drops, caplog, name, text, line, fault):
    s = source(drops)
    write(drops, name, text)
    assert_refused_alone(s, drops, caplog, name, line, fault)


def test_a_line_or_object_over_the_record_limit_refuses_the_file(drops, caplog, monkeypatch):
    monkeypatch.setattr(files_formats, "MAX_RECORD_BYTES", 100)
    monkeypatch.setattr(files_formats, "_CHUNK", 64)
    s = source(drops)
    write(drops, "persons.jsonl", '{"id": 1, "name": "' + "x" * 200 + '"}\n')
    assert_refused_alone(s, drops, caplog, "persons.jsonl", 1, "a line longer than 100 bytes")
    (drops / "persons.jsonl").unlink()
    write(drops, "persons.json", '[\n{"id": 1, "name": "a"},\n{"id": 2, "name": "' + "x" * 300 + '"}]')
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        assert drain(s, 10**6) == []
    assert "drop file persons.json refused: line 3: an object longer than 100 characters" in caplog.text


def test_a_line_as_long_as_the_record_limit_is_taken(drops, monkeypatch):
    monkeypatch.setattr(files_formats, "MAX_RECORD_BYTES", 100)
    s = source(drops)
    line = '{"id": 0, "name": "' + "y" * 79 + '"}'
    assert len(line) == 100
    write(drops, "persons.jsonl", line + "\n" + line.replace('"id": 0', '"id": 1'))  # the last without a line end
    assert ops(drain(s)) == [("schema", "persons", None), ("insert", "persons", 0), ("insert", "persons", 1)]


def test_an_unexpected_parser_failure_refuses_the_file(drops, caplog, monkeypatch):
    def exhausted(source):
        yield from ()
        raise MemoryError()

    monkeypatch.setitem(files_formats._PARSERS, "csv", exhausted)
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n")
    assert_refused_alone(s, drops, caplog, "persons.csv", 0, "cannot be parsed (MemoryError")


# -- only regular files in the drop directory ----------------------------------------

def test_links_and_other_non_regular_files_are_never_read(drops, tmp_path, caplog):
    outside = write(tmp_path, "secret.csv", "id,name\n1,Secret\n")
    (drops / "persons.csv").symlink_to(outside)
    (drops / "licences.jsonl").symlink_to("/etc/passwd")
    os.mkfifo(drops / "persons-2.csv")
    s = source(drops)
    with caplog.at_level(logging.WARNING, logger="adapters.files"):
        assert drain(s) == []
    for name in ("persons.csv", "licences.jsonl", "persons-2.csv"):
        assert f"drop file {name} is not a regular file" in caplog.text
    assert "root" not in caplog.text and refused_count("licences") == 0
    assert b"Secret" not in s.state_path.read_bytes() and os.listdir(drops / "processed") == []
    assert s.pending(0) == 0


@pytest.mark.parametrize("swap", ["symlink", "other file"])
def test_a_file_swapped_after_its_check_is_not_read(drops, tmp_path, monkeypatch, swap):
    outside = write(tmp_path, "secret.csv", "id,name\n1,Qxz\n")
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n")  # the same size
    ready = files.FileDropSource._ready

    def ready_then_swapped(self):
        found = ready(self)
        for drop in found:
            os.utime(outside, ns=(0, drop.mtime_ns))  # and the same modification time
            drop.path.unlink()
            if swap == "symlink":
                drop.path.symlink_to(outside)
            else:  # the same name, size and modification time, another file
                os.link(outside, drop.path)
        return found

    monkeypatch.setattr(files.FileDropSource, "_ready", ready_then_swapped)
    assert s.read(0, 100) == []
    assert b"Qxz" not in s.state_path.read_bytes() and os.listdir(drops / "processed") == []


def test_a_refusal_quotes_the_file_only_in_a_short_escaped_excerpt(drops, caplog):
    s = source(drops)
    write(drops, "persons.csv", "name," + "x" * 500 + "\x1b[2J\n")
    write(drops, "persons-2.jsonl", json.dumps({"id": "k" * 500}) + "\n" + json.dumps({"id": "k" * 500}) + "\n")
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        drain(s)
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 2 and "key column id of table 'persons' is missing" in refusals[0]
    assert "duplicate key" in refusals[1]
    for message in refusals:
        assert "\x1b" not in message and "x" * 100 not in message and "k" * 100 not in message


# -- numbers every target can store ----------------------------------------------------

def test_integers_beyond_64_bits_are_kept_exactly_as_text_and_replay_into_sqlite(drops, tmp_path):
    s = source(drops)
    store_path, replayed = tmp_path / "node.db", tmp_path / "replayed.db"
    store = EventStore(f"sqlite:///{store_path}")
    try:
        capture = Capture(AGENCY, s, store.node_recorder(AGENCY))
        write(drops, "licences.jsonl",
              '{"no": "L1", "fee": 123456789012345678901234567890, "cap": 9223372036854775807}\n'
              '{"no": "L2", "fee": -9223372036854775809, "cap": -9223372036854775808}\n'
              '{"no": 98765432109876543210, "fee": 1' + "0" * 5000 + ', "cap": 0}\n')
        while capture.step():
            pass
    finally:
        store.close()
    replay(f"sqlite:///{store_path}", AGENCY, f"sqlite:///{replayed}")
    with sqlite3.connect(replayed) as db:
        rows = db.execute('SELECT "no", fee, cap FROM licences ORDER BY rowid').fetchall()
    assert rows == [("L1", "123456789012345678901234567890", 2**63 - 1),
                    ("L2", "-9223372036854775809", -2**63), ("98765432109876543210", "1" + "0" * 5000, 0)]


# -- a proportionate state ---------------------------------------------------------------

def test_the_state_stays_proportionate_and_the_wal_is_emptied_after_each_file(drops):
    s = source(drops)
    text = "id,name,city,note\n" + "".join(f"{110105190000000000 + i},name {i},city {i % 50},note {i}\n"
                                          for i in range(20_000))
    path = write(drops, "persons.csv", text)
    size = path.stat().st_size
    batch = s.read(0, 5000)  # takes the file
    wal = s.state_path.with_name(s.state_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    while batch:
        s.acknowledge(batch[-1].position)
        batch = s.read(batch[-1].position, 5000)
    assert s.state_path.stat().st_size < 6 * size


def test_a_state_written_with_rows_as_json_objects_still_decodes_and_diffs(drops):
    """Earlier versions stored row images as JSON objects: pending changes and stored rows still serve."""
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n2,Bob\n")
    s.read(0, 1)  # takes the file
    db = s._open()
    as_object = "json_object('id', json_extract({0}, '$[0]'), 'name', json_extract({0}, '$[1]'))"
    db.execute(f"UPDATE rows SET row = {as_object.format('row')}")
    db.execute(f"UPDATE changes SET new = {as_object.format('new')} WHERE op = 'insert'")
    db.execute("DELETE FROM layouts")
    first = s.read(0, 100)
    assert [c.after for c in first[1:]] == [{"id": "1", "name": "Ann"}, {"id": "2", "name": "Bob"}]
    write(drops, "persons-2.csv", "id,name\n1,Anna\n")
    second = drain(s, first[-1].position)
    ann, anna = {"id": "1", "name": "Ann"}, {"id": "1", "name": "Anna"}
    assert [(c.op, c.before, c.after) for c in second] == [("delete", {"id": "2", "name": "Bob"}, None),
                                                           ("update", ann, anna)]
    write(drops, "persons-3.csv", "id,name\n1,Anna\n3,Cy\n")
    # the rows are arrays now, equal where unchanged
    assert ops(drain(s, second[-1].position)) == [("insert", "persons", "3")]
