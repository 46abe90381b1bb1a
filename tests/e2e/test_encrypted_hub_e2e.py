"""An encrypted hub, on SQLite and on PostgreSQL: its catalog's schema watch works and its store holds
no plaintext of catalog entries or share requests (every log of the store is sealed, not only the agencies')."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_catalog_e2e import catalog, wait_for
from test_consumer import COLUMNS, CONSUMER
from test_encryption import file_bytes, keygen
from test_exchange_e2e import AGENCY, exchange, wait_caught_up

from exchange.demos.sample import TABLES, SampleAgency
from exchange.store.at_rest import MARK

CATALOG_MARKER = "独有目录摘要七七七号"  # in a catalog entry's summary
SHARE_MARKER = "独有共享用途八八八号"  # in a share request's purpose
OWN_LOGS = ("catalog_events", "sharing_requests")


def licences_entry(path: Path) -> Path:
    path.write_text(json.dumps({
        "code": "101001/0002", "name": "licences", "agency": AGENCY, "provider": "Sample agency",
        "provider_uscc": "91310000MA1FL0000N", "resource": "licences", "summary": CATALOG_MARKER,
        "format": "database", "share_type": 2, "share_condition": "administrative licensing",
        "not_shared_basis": "", "share_modes": ["platform:interface"], "open_to_public": False,
        "update_cycle": "realtime", "items": [{"name": c, "type": "C", "length": 64} for c in COLUMNS["licences"]],
    }, ensure_ascii=False))
    return path


def postgres_state(postgres, db: str) -> list[bytes]:
    return [bytes(state) for log in OWN_LOGS for (state,) in postgres.execute(f"SELECT state FROM {log}", dbname=db)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_encrypted_hub_flags_schema_changes_and_stores_no_plaintext(backend, launch, request, tmp_path):
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=5, legal_persons=5, licences=5)
    store: dict[str, str] = {"cipher_key_file": str(keygen(tmp_path / "hub.key"))}
    if backend == "postgresql":
        postgres = request.getfixturevalue("postgres")
        db = postgres.create_database("encrypted_hub")
        store["url"] = postgres.url(db)
    hub = launch.hub(config={"store": store, "audit": {"path": str(tmp_path / "audit.log")}})
    node = launch.node(hub.grpc_address, tmp_path / "agency.db", TABLES)
    wait_caught_up(node)

    catalog("submit", str(licences_entry(tmp_path / "licences.json")), hub=hub)
    catalog("secrecy", "101001/0002", "--cleared", hub=hub)
    catalog("review", "101001/0002", "--accept-all", hub=hub)
    assert json.loads(catalog("publish", "101001/0002", hub=hub).stdout)["status"] == "published"
    asked = json.loads(exchange("share", "request", "--hub", hub.grpc_address, "--insecure", "--agency", CONSUMER,
                                "--provider", AGENCY, "--resource", "licences", "--scope", "all",
                                "--purpose", SHARE_MARKER, "--items", "kind").stdout)
    assert asked["status"] == "pending"

    with sqlite3.connect(agency.path) as conn:
        conn.execute("ALTER TABLE licences ADD COLUMN remark TEXT")
    shown = wait_for(lambda: (e := json.loads(catalog("show", "101001/0002", hub=hub).stdout))["schema_flag"] and e,
                     "the schema flag")
    assert "remark" in shown["schema_flag"]["columns"] and shown["published"]["summary"] == CATALOG_MARKER

    if backend == "sqlite":
        raw = file_bytes(tmp_path / "hub-store.db")
        assert b"SchemaFlagged" in raw  # the topics are plaintext: the search does see the logs
        for marker in (CATALOG_MARKER, SHARE_MARKER):
            assert marker.encode() not in raw, f"plaintext {marker} in the hub store"
    else:
        states = postgres_state(postgres, db)
        assert len(states) >= 6 and all(s.startswith(MARK) for s in states)
        assert not [s for s in states if CATALOG_MARKER.encode() in s or SHARE_MARKER.encode() in s]
