"""DCAT export, entry drafting from source schemas, wire conversions and the identifier check's settings."""

from __future__ import annotations

import json
import tomllib
import uuid

import pytest
from prometheus_client import REGISTRY
from test_catalog import AGENCY, USCC, entry, publish

from exchange.common.config import from_values
from exchange.contracts.changes import Column, TableSchema
from exchange.contracts.events import RecordCreated, RecordUpdated
from exchange.tools.catalog_draft import draft, draft_content, item_type, to_toml
from hub.catalog import Catalog, dcat, metadata, wire
from hub.workdays import WorkingCalendar
from node import config as node_config
from node.quality import IdentifierCheck


@pytest.fixture
def catalog(tmp_path):
    c = Catalog(f"sqlite:///{tmp_path / 'hub-store.db'}", WorkingCalendar())
    yield c
    c.close()


def test_the_dcat_export_maps_the_core_metadata(catalog):
    publish(catalog, entry(related=["101002/0001"]), sensitivity=["personal"])
    publish(catalog, entry(code="301001/0001", resource="secrets", share_type=3, share_condition="",
                           not_shared_basis="Law on Guarding State Secrets", related=[]))
    catalog.edit(AGENCY, entry(code="101009/0001", resource="draft_only", related=[]))
    document = dcat.export(catalog, "https://data.example.gov.cn/catalog/")
    assert document["@type"] == "dcat:Catalog" and document["@context"]["dcat"] == "http://www.w3.org/ns/dcat#"
    persons, secrets = document["dcat:dataset"]
    assert persons["@id"] == "https://data.example.gov.cn/catalog/101001%2F0001"
    assert persons["dct:identifier"] == "101001/0001"
    assert persons["dct:publisher"] == {"@type": "foaf:Organization", "foaf:name": "Municipal registry",
                                        "dct:identifier": USCC}
    assert persons["dcat:theme"]["skos:notation"] == "101001" and persons["dcat:theme"]["skos:prefLabel"] == "base"
    assert persons["dct:accessRights"]["@id"].endswith("/access-right/RESTRICTED")
    assert persons["dct:accessRights"]["skos:note"] == "for administrative approvals only"
    assert persons["dct:accrualPeriodicity"]["@id"].endswith("/frequency/UPDATE_CONT")
    assert persons["dct:issued"]["@type"] == "xsd:date"
    assert persons["dct:relation"] == [{"@id": "https://data.example.gov.cn/catalog/101002%2F0001"}]
    assert persons["csvw:tableSchema"]["csvw:column"][0] == {
        "csvw:name": "id_number", "csvw:datatype": {"csvw:base": "string", "csvw:maxLength": 18}, "dct:type": "C"}
    assert secrets["dct:accessRights"]["@id"].endswith("/access-right/NON_PUBLIC")
    assert secrets["dcat:theme"]["skos:prefLabel"] == "department"
    json.dumps(document)  # serialisable as it stands


@pytest.mark.parametrize("declared, expected", [
    ("TEXT", ("C", 0)), ("VARCHAR(50)", ("C", 50)), ("character varying(20)", ("C", 20)), ("INTEGER", ("I", 0)),
    ("bigint", ("I", 0)), ("numeric(12,2)", ("N", 12)), ("REAL", ("F", 0)), ("double precision", ("F", 0)),
    ("date", ("D", 0)), ("timestamp with time zone", ("T", 0)), ("boolean", ("L", 0)), ("BLOB", ("B", 0)),
    ("bytea", ("B", 0)), ("jsonb", ("M", 0)), ("money", ("Y", 0)), ("uuid", ("C", 0)),
])
def test_column_types_map_to_data_type_codes(declared, expected):
    assert item_type(declared) == expected


def test_a_draft_file_reads_back_and_names_what_is_left_to_fill():
    schema = TableSchema("persons", (Column("id_number", "TEXT"), Column("born", "DATE")), ("id_number",))
    content = draft_content(USCC, schema)
    assert content["provider_uscc"] == USCC and content["resource"] == "persons"
    assert tomllib.loads(to_toml(content)) == content
    fields = {p.field for p in metadata.validate(content)}
    assert fields == {"code", "provider", "summary", "share_type"}
    assert draft_content(AGENCY, schema)["provider_uscc"] == AGENCY  # the agency id is a valid code
    assert draft_content("city_registry", schema)["provider_uscc"] == ""  # an agency id that is no code


def test_entry_content_survives_the_wire(catalog):
    content = metadata.normalise(entry())
    assert wire.content_from_pb(wire.content_to_pb(content)) == content
    publish(catalog, entry())
    message = wire.entry_to_pb(catalog.get("101001/0001"), catalog.calendar)
    back = wire.entry_from_pb(message)
    assert back["published"] == content and back["status"] == "published"
    assert back["decisions"] == {"id_number": "", "name": "", "born": ""}
    assert back["secrecy_review"]["cleared"] is True and back["schema_flag"] is None


def test_identifier_settings_are_checked():
    with pytest.raises(ValueError, match=r"names table 'people', which \[source\] tables does not select"):
        IdentifierCheck({"people": {"id": "uscc"}}, ["persons"])
    with pytest.raises(ValueError, match="unknown kind 'passport'; use uscc or resident_id"):
        IdentifierCheck({"persons": {"id": "passport"}}, ["persons"])


def test_only_invalid_identifiers_in_captured_events_are_counted():
    check = IdentifierCheck({"persons": {"id_number": "resident_id"}}, ["persons"])
    def counted() -> float:
        labels = {"resource": "persons", "kind": "resident_id"}
        return REGISTRY.get_sample_value("exchange_node_invalid_identifiers_total", labels) or 0.0

    before = counted()
    common = dict(originator_version=1, timestamp=None, agency=AGENCY, resource="persons", position=1,
                  commit_time=None, txid="", schema_version=1, event_schema_version=1)
    events = [
        RecordCreated(originator_id=uuid.uuid4(), key={}, row={"id_number": "11010519491231002X"}, **common),
        RecordCreated(originator_id=uuid.uuid4(), key={}, row={"id_number": "110105194912310021"}, **common),
        RecordCreated(originator_id=uuid.uuid4(), key={}, row={"id_number": None}, **common),
        RecordUpdated(originator_id=uuid.uuid4(), key={}, changed={"name": "x"}, **common),
        RecordUpdated(originator_id=uuid.uuid4(), key={}, changed={"id_number": "123"}, **common),
    ]
    check.count(events)
    assert counted() - before == 2


def node_settings(values: dict) -> object:
    """A node config of the agency USCC with ``values``; the store and hub are not used by drafting."""
    return from_values(node_config.SETTINGS, {"agency": USCC, "store.url": "sqlite:///unused.db",
                                              "hub.address": "127.0.0.1:1", **values})


def test_drafting_from_a_postgres_source_maps_its_types(postgres, tmp_path):
    db = postgres.create_database("catalog_draft_source")
    postgres.execute("CREATE TABLE licences (licence_no varchar(32) PRIMARY KEY, fee numeric(10,2), "
                     "issued date, updated timestamptz, active boolean, scan bytea, extra jsonb)", dbname=db)
    cfg = node_settings({"source.url": postgres.url(db), "source.tables": ["licences"]})
    report = draft(cfg, tmp_path / "drafts", "json")
    [path] = report["written"]
    content = json.loads(open(path, encoding="utf-8").read())
    assert [(i["name"], i["type"], i["length"]) for i in content["items"]] == [
        ("licence_no", "C", 32), ("fee", "N", 10), ("issued", "D", 0), ("updated", "T", 0), ("active", "L", 0),
        ("scan", "B", 0), ("extra", "M", 0)]
    (tmp_path / "drafts" / "licences.json").write_text("{}")  # the agency's edits
    assert draft(cfg, tmp_path / "drafts", "json") == {"written": [], "kept": [path]}
    assert (tmp_path / "drafts" / "licences.json").read_text() == "{}"


def test_a_draft_lists_the_data_items_as_the_field_policy_lets_them_leave(tmp_path):
    """Excluded columns never leave the node, masked ones leave as keyed hashes (text): the
    entry must not offer consumers items the hub never receives, nor types they do not have."""
    import base64
    import sqlite3

    source = tmp_path / "source.db"
    with sqlite3.connect(source) as db:
        db.execute("CREATE TABLE persons (id_number varchar(18) PRIMARY KEY, born date, notes text, age integer)")
    key = tmp_path / "mask.key"
    key.write_text(base64.b64encode(b"k" * 32).decode())
    cfg = node_settings({"source.url": f"sqlite:///{source}", "source.tables": ["persons"],
                         "policy.exclude": {"persons": ["notes"]}, "policy.mask": {"persons": {"born": "hmac"}},
                         "policy.mask_key_file": str(key)})
    [path] = draft(cfg, tmp_path / "drafts", "json")["written"]
    content = json.loads(open(path, encoding="utf-8").read())
    assert [(i["name"], i["type"], i["length"]) for i in content["items"]] == [
        ("id_number", "C", 18), ("born", "C", 0), ("age", "I", 0)]
