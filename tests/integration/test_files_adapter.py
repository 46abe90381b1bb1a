"""File-drop capture source: naming, diffing, half-written and malformed files,
crash recovery (real SIGKILLs), and drops -> node -> hub -> replay end to end."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import types
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from test_exchange_e2e import AGENCY, assert_exactly_once, exchange, store_url, wait_caught_up

import adapters
from adapters.files import formats as files_formats
from adapters.files import source as files
from adapters.files.source import FileDropSource, match_table
from exchange.common.config import from_values
from exchange.contracts import changes as ch
from exchange.contracts.changes import SourceNotReady
from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated, SchemaChanged
from exchange.store import EventStore
from node import config as node_config
from node.capture import Capture

KEYS = {"persons": ["id"], "licences": ["no"]}


@pytest.fixture
def drops(tmp_path) -> Path:
    path = tmp_path / "drops"
    path.mkdir()
    return path


def source(drops: Path, tables=("persons", "licences"), keys=None, **options) -> FileDropSource:
    s = FileDropSource(f"files://{drops}", list(tables), KEYS if keys is None else keys,
                       **{"settle_seconds": 0, **options})
    s.prepare()
    return s


def drain(s: FileDropSource, after: int = 0) -> list[ch.Change]:
    """Take every ready file and read every change after ``after``."""
    found: list[ch.Change] = []
    while True:
        batch = s.read(after, 1000)
        if not batch and not s._ready():
            return found
        found += batch
        after = batch[-1].position if batch else after


def write(drops: Path, name: str, text: str) -> Path:
    path = drops / name
    path.write_text(text, encoding="utf-8")
    return path


def ops(changes: list[ch.Change]) -> list[tuple]:
    return [(c.op, c.table, (c.after or c.before or {}).get("id") if c.op != ch.SCHEMA else None) for c in changes]


def refused_count(table: str) -> float:
    return REGISTRY.get_sample_value("exchange_node_drop_files_refused_total", {"table": table}) or 0.0


# -- naming ---------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("persons.csv", ("persons", "csv")),
    ("persons-2026-11-27.csv", ("persons", "csv")),
    ("persons.JSON", ("persons", "json")),
    ("persons-a.jsonl", ("persons", "jsonl")),
    ("persons_history.csv", None),
    ("persons.csv.tmp", None),
    ("persons.csv.part", None),
    ("persons.csv~", None),
    (".persons.csv", None),
    ("persons.xlsx", None),
    ("legal-persons-1.csv", ("legal-persons", "csv")),
])
def test_file_names_map_to_tables(name, expected):
    assert match_table(name, ["persons", "legal-persons", "legal"]) == expected


def test_a_table_without_configured_key_is_refused(drops):
    with pytest.raises(SourceNotReady, match=r"table 'licences' has no key.*keys = \{ licences = "):
        source(drops, keys={"persons": ["id"]})


def test_a_missing_drop_directory_is_refused(tmp_path):
    with pytest.raises(SourceNotReady, match="does not exist"):
        source(tmp_path / "nowhere")


def test_open_source_chooses_the_file_drop_adapter(drops):
    cfg = from_values(node_config.SETTINGS, {
        "agency": "A", "source.url": f"files://{drops}", "source.tables": ["persons"], "source.settle_seconds": 2.5,
        "store.url": "sqlite:///unused.db", "hub.address": "127.0.0.1:1"})
    s = adapters.open_source(cfg.source.url, ["persons"], {"persons": ["id"]}, **adapters.source_options(cfg))
    assert isinstance(s, FileDropSource) and s.settle_seconds == 2.5
    assert s.state_path == drops / ".exchange" / "state.db"
    with pytest.raises(ValueError, match="unsupported database URL"):
        adapters.open_target(f"files://{drops}")


# -- diffing --------------------------------------------------------------------

def test_each_drop_is_diffed_against_the_previous_one(drops):
    s = source(drops)
    write(drops, "persons.csv", "id,name,city\n1,Ann,SH\n2,Bob,BJ\n3,Cy,GZ\n")
    first = drain(s)
    assert ops(first) == [("schema", "persons", None), ("insert", "persons", "1"), ("insert", "persons", "2"),
                          ("insert", "persons", "3")]
    assert first[0].schema.column_names == ("id", "name", "city") and first[0].schema.primary_key == ("id",)
    assert first[1].after == {"id": "1", "name": "Ann", "city": "SH"}

    write(drops, "persons-2.csv", "id,name,city\n1,Ann,SH\n3,Cy,SZ\n4,Dee,\n")
    second = drain(s, first[-1].position)
    assert ops(second) == [("delete", "persons", "2"), ("update", "persons", "3"), ("insert", "persons", "4")]
    update = second[1]
    assert update.before == {"id": "3", "name": "Cy", "city": "GZ"} and update.after["city"] == "SZ"
    assert second[2].after == {"id": "4", "name": "Dee", "city": ""}  # CSV values are text, as written
    assert [c.position for c in first + second] == sorted({c.position for c in first + second})
    assert second[0].txid.endswith(":persons-2.csv")
    assert sorted(os.listdir(drops / "processed")) == ["000001-persons.csv", "000002-persons-2.csv"]
    assert s.schemas()["persons"].column_names == ("id", "name", "city")


def test_the_capture_loop_stores_created_updated_with_changed_columns_and_deleted(drops, tmp_path):
    s = source(drops)
    store = EventStore(f"sqlite:///{tmp_path / 'node.db'}")
    try:
        recorder = store.node_recorder(AGENCY)
        capture = Capture(AGENCY, s, recorder)
        write(drops, "licences.json", '[{"no": "L1", "fee": 10, "active": true}, {"no": "L2", "fee": 2.5, "active": false}]')
        while capture.step():
            pass
        write(drops, "licences.jsonl", '{"no": "L1", "fee": 12, "active": true}\n')
        while capture.step():
            pass
        events = [capture.mapper.to_domain_event(n) for n in recorder.read(0, 100)]
    finally:
        store.close()
    assert [type(e) for e in events] == [SchemaChanged, RecordCreated, RecordCreated, RecordDeleted, RecordUpdated]
    assert events[1].row == {"no": "L1", "fee": 10, "active": True}  # JSON keeps its types
    assert events[3].key == {"no": "L2"}
    assert events[4].changed == {"fee": 12}


def test_a_column_set_change_becomes_a_schema_change_and_a_reordering_does_not(drops):
    s = source(drops)
    write(drops, "persons-1.csv", "id,name\n1,Ann\n")
    first = drain(s)
    write(drops, "persons-2.csv", "name,id\nAnn,1\n")
    assert drain(s, first[-1].position) == []  # same columns in another order, same rows
    write(drops, "persons-3.csv", "id,name,city\n1,Ann,SH\n")
    third = drain(s, first[-1].position)
    assert [c.op for c in third] == ["schema", "update"]
    assert third[0].schema.column_names == ("id", "name", "city")
    assert third[1].after == {"id": "1", "name": "Ann", "city": "SH"}


def test_an_empty_json_array_empties_the_table(drops):
    s = source(drops)
    write(drops, "licences.jsonl", '{"no": "L1", "fee": 1}\n\n{"no": "L2", "fee": 2}\n')
    first = drain(s)
    write(drops, "licences-empty.json", "[ ]\n")
    emptied = drain(s, first[-1].position)
    assert [(c.op, c.table, c.before, c.after) for c in emptied] == [("truncate", "licences", None, None)]
    write(drops, "licences-empty-again.json", "[]")
    assert drain(s, emptied[-1].position) == []  # nothing left to empty


def test_the_same_content_dropped_again_after_another_file_is_applied_again(drops):
    s = source(drops)
    a = "id,name\n1,Ann\n"
    write(drops, "persons.csv", a)
    first = drain(s)
    write(drops, "persons.csv", "id,name\n1,Bob\n")  # same name and size, other content
    second = drain(s, first[-1].position)
    write(drops, "persons.csv", a)
    third = drain(s, second[-1].position)
    assert [c.op for c in second] == ["update"] and [c.op for c in third] == ["update"]
    assert third[0].after == {"id": "1", "name": "Ann"}


def test_changes_stay_until_acknowledged(drops):
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n2,Bob\n")
    changes = drain(s)
    assert s.pending(0) == 3
    s.acknowledge(changes[1].position)
    assert [c.position for c in s.read(0, 100)] == [changes[2].position]
    write(drops, "persons-2.csv", "id,name\n")
    assert s.pending(changes[-1].position) == 1  # a file not taken yet counts as pending


def test_a_changed_key_configuration_is_refused(drops):
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n")
    drain(s)
    s.close()
    with pytest.raises(SourceNotReady, match="key of table 'persons' was id and is now configured as name"):
        source(drops, keys={**KEYS, "persons": ["name"]})


# -- half-written files ---------------------------------------------------------

def test_temporary_and_hidden_names_are_never_read(drops):
    s = source(drops)
    for name in (".persons.csv", "persons.csv.tmp", "persons.csv.part", "persons.csv~", "notes.csv"):
        write(drops, name, "id,name\n1,Ann\n")
    assert drain(s) == []
    os.rename(drops / "persons.csv.part", drops / "persons.csv")
    assert [c.op for c in drain(s)] == ["schema", "insert"]


def test_a_file_is_read_only_after_its_size_and_mtime_settled(drops, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(files, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    s = source(drops, settle_seconds=10)
    path = write(drops, "persons.csv", "id,name\n1,Ann\n")
    assert s.read(0, 100) == []
    now[0] += 8
    with open(path, "a") as f:
        f.write("2,Bob\n")  # still being written
    assert s.read(0, 100) == []
    now[0] += 7
    assert s.read(0, 100) == []  # 7 s since it last changed
    now[0] += 3
    assert [c.op for c in s.read(0, 100)] == ["schema", "insert", "insert"]


def test_a_file_renamed_into_place_wakes_the_capture_loop(drops):
    import threading

    s = source(drops)
    arrived = threading.Event()
    s.watch(arrived.set)
    try:
        write(drops, "persons.csv.part", "id,name\n1,Ann\n")
        os.replace(drops / "persons.csv.part", drops / "persons.csv")
        assert arrived.wait(30)
    finally:
        s.close()


# -- malformed files ------------------------------------------------------------

@pytest.mark.parametrize("name, text, line, fault", [
    ("persons.csv", 'id,name\n1,Ann\n2,"Bob\n3,Cy\n', 4, "bad CSV in the record that starts on line 3"),
    ("persons.csv", "id,name\n1,Ann\n2,Bob,extra\n", 3, "3 fields where the header has 2"),
    ("persons.csv", "id,id\n1,2\n", 1, "the header names id more than once"),
    ("persons.csv", "name,city\nAnn,SH\n", 1, "key column id of table 'persons' is missing"),
    ("persons.csv", "id,name\n1,Ann\n2,Bob\n1,Cy\n", 4, 'duplicate key ["1"] (first on line 2)'),
    ("persons.csv", "", 0, "empty file"),
    ("persons.jsonl", '{"id": 1, "name": "Ann"}\n{"id": 2, "name": "Bob"\n', 2, "bad JSON"),
    ("persons.jsonl", '{"id": 1, "name": "Ann"}\n{"id": 2}\n', 2, "columns differ from the first record's: missing name"),
    ("persons.jsonl", '{"id": 1, "name": {"first": "Ann"}}\n', 1, "column 'name' holds a JSON dict"),
    ("persons.jsonl", '{"id": null, "name": "Ann"}\n', 1, "the key (id) is null"),
    ("persons.json", '[\n  {"id": 1, "name": "Ann"},\n  {"id": 2, "name": "Bob",}\n]\n', 3, "bad JSON"),
    ("persons.json", '[\n  {"id": 1, "name": "Ann"}\n  {"id": 2, "name": "Bob"}\n]\n', 3, "expected ',' or ']'"),
    ("persons.json", '{"id": 1, "name": "Ann"}\n', 1, "must be an array of objects"),
    ("persons.json", '[{"id": 1, "name": NaN}]', 1, "bad JSON"),
])
def test_a_malformed_file_is_refused_with_its_line_and_left_in_place(drops, caplog, name, text, line, fault):
    s = source(drops)
    path = write(drops, name, text)
    before = refused_count("persons")
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        assert drain(s) == []
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert f"drop file {name} refused" in message and fault in message
    if line:
        assert f"line {line}:" in message
    assert path.exists() and refused_count("persons") == before + 1

    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        assert drain(s) == []  # not retried while it is unchanged
    assert not caplog.records and refused_count("persons") == before + 1


def test_a_refused_file_is_taken_once_it_is_replaced(drops):
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n1,Bob\n")
    other = write(drops, "persons-9.csv", "id,name\n7,Gus\n")
    os.utime(other, ns=(os.stat(other).st_atime_ns, os.stat(other).st_mtime_ns + 10**9))  # the newer file
    assert ops(drain(s)) == [("schema", "persons", None), ("insert", "persons", "7")]  # a bad file blocks nothing
    write(drops, "persons.csv", "id,name\n1,Ann\n2,Bob\n")
    assert [c.op for c in drain(s)][-3:] == ["delete", "insert", "insert"]
    assert set(os.listdir(drops)) == {"processed", ".exchange"}


def test_a_refusal_outlives_a_restart(drops, caplog):
    s = source(drops)
    write(drops, "persons.csv", "id,name\n1,Ann\n1,Bob\n")
    drain(s)
    s.close()
    before = refused_count("persons")
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        assert drain(source(drops)) == []
    assert not caplog.records and refused_count("persons") == before


def test_non_utf8_text_is_refused_with_its_line(drops, caplog):
    s = source(drops)
    (drops / "persons.csv").write_bytes("id,name\n1,Ann\n2,".encode() + "张三".encode("gb18030") + b"\n")
    with caplog.at_level(logging.ERROR, logger="adapters.files"):
        drain(s)
    assert "line 3: not UTF-8 text" in caplog.text


def test_a_large_json_array_is_read_in_pieces(drops, monkeypatch):
    monkeypatch.setattr(files_formats, "_CHUNK", 64)  # many chunk boundaries inside objects and strings
    s = source(drops)
    records = [{"id": i, "name": "名字" * (i % 5), "score": i / 4} for i in range(200)]
    write(drops, "persons.json", "[\n" + ",\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n]")
    assert [c.after for c in drain(s)[1:]] == records
    write(drops, "persons-2.json", "[\n" + ",\n".join(json.dumps(r) for r in records[:150]) + ",\n{oops}\n]")
    assert drain(s, 10**6) == []
    assert s._open().execute("SELECT line FROM refused").fetchone()[0] == 152


# -- crashes --------------------------------------------------------------------

CRASHING_TAKE = textwrap.dedent("""
    import os, signal, sys
    from adapters.files import source as files

    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)

    if sys.argv[2] == "before-move":
        files.os.replace = die
    else:  # inside the transaction, after every change is written
        diff = files.FileDropSource._diff
        def diff_then_die(self, *args):
            diff(self, *args)
            die()
        files.FileDropSource._diff = diff_then_die
    source = files.FileDropSource("files://" + sys.argv[1], ["persons"], {"persons": ["id"]}, settle_seconds=0)
    source.prepare()
    source.read(0, 100)
""")


@pytest.mark.parametrize("point", ["before-move", "mid-transaction"])
def test_a_crash_while_taking_a_file_neither_loses_nor_repeats_it(drops, point):
    s = source(drops, tables=["persons"])
    write(drops, "persons.csv", "id,name\n1,Ann\n2,Bob\n")
    first = drain(s)
    s.close()
    write(drops, "persons-2.csv", "id,name\n1,Anna\n3,Cy\n")
    crashed = subprocess.run([sys.executable, "-c", CRASHING_TAKE, str(drops), point], capture_output=True, text=True)
    assert crashed.returncode == -9, crashed.stderr
    assert (drops / "persons-2.csv").exists()

    s = source(drops, tables=["persons"])
    again = drain(s, first[-1].position)
    assert ops(again) == [("delete", "persons", "2"), ("update", "persons", "1"), ("insert", "persons", "3")]
    assert len(again) == len(s.read(first[-1].position, 100))  # each change logged once
    assert sorted(os.listdir(drops / "processed")) == ["000001-persons.csv", "000002-persons-2.csv"]
    assert not (drops / "persons-2.csv").exists()


# -- end to end -----------------------------------------------------------------

PERSONS_1 = "id,name,city\n110105194912310027,张三,上海\n11010519491231002X,李四,北京\n110105194912310043,王五,\n"
PERSONS_2 = ("id,name,city,phone\n11010519491231002X,李四,杭州,\"138 0000\"\n110105194912310043,王五,,\n"
             "110105194912310051,\"Zhao, \"\"Liu\"\"\",广州,139\n")
LICENCES_1 = [{"no": "L-1", "holder": "91110108551385082Q", "fee": 120, "active": True, "note": None},
              {"no": "L-2", "holder": "91110108551385082Q", "fee": 80.5, "active": False, "note": "续期"}]
LICENCES_2 = [{"no": "L-2", "holder": "91110108551385082Q", "fee": 95.25, "active": True, "note": "续期"},
              {"no": "L-3", "holder": "91310000MB2F31887X", "fee": 0, "active": True, "note": None}]


def drop(drops: Path, name: str, text: str) -> None:
    """Write like a careful agency: under a temporary name, then rename into place."""
    write(drops, name + ".part", text)
    os.replace(drops / (name + ".part"), drops / name)


def expected_database(path: Path) -> None:
    """The tables as the last drops hold them, built without the adapter."""
    with sqlite3.connect(path) as db:
        db.execute('CREATE TABLE persons (id TEXT, name TEXT, city TEXT, phone TEXT, PRIMARY KEY (id))')
        import csv
        import io
        db.executemany("INSERT INTO persons VALUES (?, ?, ?, ?)", list(csv.reader(io.StringIO(PERSONS_2)))[1:])
        db.execute('CREATE TABLE licences ("no", holder, fee, active, note, PRIMARY KEY ("no"))')
        db.executemany("INSERT INTO licences VALUES (:no, :holder, :fee, :active, :note)", LICENCES_2)


def test_drops_reach_the_hub_once_and_replay_to_the_last_drop(launch, tmp_path, drops):
    hub = launch.hub()
    node = launch.node(hub.grpc_address, f"files://{drops}", ["persons", "licences"],
                       config={"source": {"keys": KEYS, "settle_seconds": 0.2}})
    drop(drops, "persons-20261126.csv", PERSONS_1)
    drop(drops, "licences.json", json.dumps(LICENCES_1, ensure_ascii=False, indent=1))
    drop(drops, "persons-broken.csv", "id,name\n1,Ann\n1,Bob\n")
    wait_caught_up(node)
    assert "drop file persons-broken.csv refused: line 3: duplicate key" in node.log()
    metrics_url = f"http://127.0.0.1:{node.config['metrics']['port']}/metrics"
    assert 'exchange_node_drop_files_refused_total{table="persons"} 1.0' in \
        urllib.request.urlopen(metrics_url, timeout=10).read().decode()
    drop(drops, "persons-20261127.csv", PERSONS_2)
    node.kill()
    node = launch.restart(node)
    drop(drops, "licences.jsonl", "\n".join(json.dumps(r, ensure_ascii=False) for r in LICENCES_2) + "\n")
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert sorted(p.name for p in drops.iterdir()) == [".exchange", "persons-broken.csv", "processed"]
    assert len(list((drops / "processed").iterdir())) == 4

    expected, target = tmp_path / "expected.db", tmp_path / "replayed.db"
    expected_database(expected)
    exchange("replay", "--store", store_url(hub), "--agency", AGENCY, "--target", f"sqlite:///{target}")
    result = exchange("verify", "--source", f"sqlite:///{expected}", "--target", f"sqlite:///{target}",
                      "--tables", "persons", "licences", check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_field_policy_applies_to_drop_tables_whose_columns_come_with_the_first_file(launch, tmp_path, drops):
    """Before its first file a drop table has no known columns: the node starts all the same
    and applies the policy to every file it takes."""
    mask_key = tmp_path / "mask.key"
    exchange("store", "keygen", str(mask_key))
    hub = launch.hub()
    node = launch.node(hub.grpc_address, f"files://{drops}", ["persons", "licences"], config={
        "source": {"keys": KEYS, "settle_seconds": 0.2},
        "policy": {"exclude": {"persons": ["city"]}, "mask": {"persons": {"id": "hmac"}},
                   "mask_key_file": str(mask_key)}})
    drop(drops, "persons.csv", PERSONS_1)
    wait_caught_up(node)
    data = b"".join(p.read_bytes() for p in tmp_path.glob("hub-store.db*"))
    assert "张三".encode() in data  # the rows arrived
    assert b"110105194912310027" not in data and "上海".encode() not in data
