"""Field policy at the node: excluded and masked columns never leave it."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from test_exchange_e2e import AGENCY, exchange, wait_caught_up

from exchange.contracts.changes import INSERT, SCHEMA, Change, Column, TableSchema
from exchange.demos.sample import TABLES, SampleAgency
from node.field_policy import FieldPolicy

EXCLUDE = {"persons": ["phone"]}
MASK = {"persons": {"id_number": "hmac"}, "legal_persons": {"legal_representative": "hmac"},
        "licences": {"responsible_person": "hmac"}}
PERSONS = TableSchema("persons", (Column("id_number", "TEXT", True), Column("name", "TEXT", True),
                                  Column("phone", "TEXT"), Column("age", "INTEGER")), ("id_number",))


def policy(key: bytes = b"k" * 32) -> FieldPolicy:
    return FieldPolicy(EXCLUDE, MASK, key)


def test_excluded_columns_disappear_and_masked_ones_become_a_stable_keyed_hash():
    row = {"id_number": "310101199001011234", "name": "王伟", "phone": "13800000000", "age": None}
    change = policy().apply(Change(1, "persons", INSERT, after=row))
    assert set(change.after) == {"id_number", "name", "age"}
    assert change.after["name"] == "王伟" and change.after["age"] is None
    masked = change.after["id_number"]
    assert len(masked) == 64 and masked != row["id_number"]
    assert policy().masked(row["id_number"]) == masked  # stable: a masked key still joins
    assert policy(b"x" * 32).masked(row["id_number"]) != masked  # keyed: unknown without the key

    schema = policy().apply(Change(2, "persons", SCHEMA, schema=PERSONS)).schema
    assert schema.column_names == ("id_number", "name", "age")
    assert schema.primary_key == ("id_number",)
    untouched = Change(3, "other", INSERT, after={"phone": "1"})
    assert policy().apply(untouched) is untouched


def test_a_renamed_column_stays_excluded_or_masked_under_its_new_name():
    fields = policy()
    renamed = TableSchema("persons", (Column("id_number", "TEXT", True), Column("full_name", "TEXT", True),
                                      Column("mobile", "TEXT"), Column("age", "INTEGER")), ("id_number",))
    change = fields.apply(Change(1, "persons", SCHEMA, schema=renamed, renames={"phone": "mobile", "name": "full_name"}))
    assert change.renames == {"name": "full_name"}  # the excluded column's rename never leaves the node
    assert change.schema.column_names == ("id_number", "full_name", "age")
    row = fields.apply(Change(2, "persons", INSERT, after={"id_number": "1", "full_name": "王伟", "mobile": "138",
                                                           "age": 3})).after
    assert "mobile" not in row and row["full_name"] == "王伟"


def test_a_policy_that_does_not_fit_the_source_is_refused():
    schemas = {"persons": PERSONS}
    with pytest.raises(ValueError, match="no column phon"):
        FieldPolicy({"persons": ["phon"]}).check(schemas)
    with pytest.raises(ValueError, match="not a captured table"):
        FieldPolicy({"people": ["phone"]}).check(schemas)
    with pytest.raises(ValueError, match="part of the table's key"):
        FieldPolicy({"persons": ["id_number"]}).check(schemas)
    with pytest.raises(ValueError, match="mask_key_file"):
        FieldPolicy(mask={"persons": {"id_number": "hmac"}})
    with pytest.raises(ValueError, match="expected one of hmac"):
        FieldPolicy(mask={"persons": {"id_number": "md5"}}, mask_key=b"k" * 32)


def rows(db: Path, table: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(f"SELECT * FROM {table}")]


def by_key(items: list[dict], key: str) -> dict:
    return {r[key]: r for r in items}


def test_the_hub_and_a_replay_never_see_excluded_or_unmasked_values(launch, tmp_path):
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=40, legal_persons=15, licences=20)
    mask_key = tmp_path / "mask.key"
    exchange("store", "keygen", str(mask_key))
    hub = launch.hub()
    node = launch.node(hub.grpc_address, tmp_path / "agency.db", TABLES, config={
        "policy": {"exclude": EXCLUDE, "mask": MASK, "mask_key_file": str(mask_key)}})
    wait_caught_up(node)
    agency.run(60, per_transaction=10)  # inserts, updates and deletes, masked keys included
    wait_caught_up(node)

    source = tmp_path / "agency.db"
    secrets = {r["id_number"] for r in rows(source, "persons")} | {r["phone"] for r in rows(source, "persons")}
    secrets.discard(None)
    for store in ("node-store.db", "hub-store.db"):
        data = b"".join(p.read_bytes() for p in tmp_path.glob(f"{store}*"))
        leaked = [s for s in secrets if s.encode() in data]
        assert not leaked, f"{store} holds unmasked values: {leaked[:3]}"

    replica = tmp_path / "replica.db"
    exchange("replay", "--store", hub.config["store"]["url"], "--agency", AGENCY, "--target", f"sqlite:///{replica}")
    expected_policy = FieldPolicy(EXCLUDE, MASK, _key(mask_key))
    for table, key_column in (("persons", "id_number"), ("legal_persons", "uscc"), ("licences", "licence_no")):
        expected = [expected_policy.row(table, r) for r in rows(source, table)]
        got = rows(replica, table)
        assert by_key(got, key_column) == by_key(expected, key_column), table
    assert "phone" not in rows(replica, "persons")[0]
    masked_people = {r["id_number"] for r in rows(replica, "persons")}
    assert {r["responsible_person"] for r in rows(replica, "licences")} <= masked_people | {None}  # still joins


def _key(path: Path) -> bytes:
    import base64

    return base64.b64decode(path.read_text().strip())


def test_a_misspelt_policy_column_stops_the_node_before_capture(launch, tmp_path):
    SampleAgency(str(tmp_path / "agency.db")).create(persons=3, legal_persons=1, licences=1)
    node = launch.node("127.0.0.1:1", tmp_path / "agency.db", TABLES, wait_ready=False,
                       config={"policy": {"exclude": {"persons": ["phon"]}}})
    assert node.popen.wait(60) == 2
    assert "table persons has no column phon" in node.log()
