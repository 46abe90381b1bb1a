"""Encryption at rest: node and hub stores hold only ciphertext, and everything still works."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import pytest
from eventsourcing.persistence import StoredEvent
from test_exchange_e2e import AGENCY, exchange, wait_caught_up

from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import EventStore
from exchange.store.at_rest import CipherError, load_key

MARKER = "欧阳测试独有地址九九九弄"  # a value that must never be readable in a store file


def keygen(path: Path) -> Path:
    exchange("store", "keygen", str(path))
    return path


def file_bytes(db: Path) -> bytes:
    """The database file and its WAL, as they lie on disk."""
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def event(state: dict) -> StoredEvent:
    return StoredEvent(originator_id=uuid.uuid4(), originator_version=1, topic="exchange.record:Created",
                       state=json.dumps(state, ensure_ascii=False).encode())


def test_keygen_writes_a_private_key_once(tmp_path):
    key = keygen(tmp_path / "store.key")
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    result = exchange("store", "keygen", str(key), check=False)
    assert result.returncode == 2 and "already exists" in result.stderr


def test_wrong_missing_and_unexpected_keys_are_named(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    right, wrong = load_key(keygen(tmp_path / "a.key")), load_key(keygen(tmp_path / "b.key"))
    store = EventStore(url, cipher=right)
    store.recorder(AGENCY).insert_events([event({"address": MARKER})])
    assert json.loads(store.recorder(AGENCY).read(0, 1)[0].state) == {"address": MARKER}
    store.close()
    assert MARKER.encode() not in file_bytes(tmp_path / "store.db")

    with pytest.raises(CipherError, match="wrong key"):
        EventStore(url, create=False, cipher=wrong).recorder(AGENCY)
    with pytest.raises(CipherError, match="the store is encrypted"):
        EventStore(url, create=False).recorder(AGENCY)

    plain = f"sqlite:///{tmp_path / 'plain.db'}"
    store = EventStore(plain)
    store.recorder(AGENCY).insert_events([event({"n": 1})])
    store.close()
    with pytest.raises(CipherError, match="written without encryption"):
        EventStore(plain, create=False, cipher=right).recorder(AGENCY)

    (tmp_path / "bad.key").write_text("not base64!\n")
    with pytest.raises(CipherError, match="not base64"):
        load_key(tmp_path / "bad.key")


def test_an_altered_ciphertext_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path / 'store.db'}"
    cipher = load_key(keygen(tmp_path / "a.key"))
    store = EventStore(url, cipher=cipher)
    store.recorder(AGENCY).insert_events([event({"n": 1}), event({"n": 2})])
    store.close()
    with sqlite3.connect(tmp_path / "store.db") as db:
        (state,) = db.execute(f"SELECT state FROM events_{AGENCY} WHERE rowid = 2").fetchone()
        db.execute(f"UPDATE events_{AGENCY} SET state = ? WHERE rowid = 2", (state[:-1] + bytes([state[-1] ^ 1]),))
    store = EventStore(url, create=False, cipher=cipher)
    with pytest.raises(CipherError, match="event 2 does not decrypt with the right key"):
        store.recorder(AGENCY).read(1, 1)
    store.close()


def test_a_postgresql_store_holds_only_ciphertext(postgres, tmp_path):
    url = postgres.url(postgres.create_database("encrypted_store"))
    cipher = load_key(keygen(tmp_path / "a.key"))
    store = EventStore(url, cipher=cipher)
    try:
        store.node_recorder(AGENCY).insert_events([event({"address": MARKER})])
        assert json.loads(store.node_recorder(AGENCY).read(0, 1)[0].state)["address"] == MARKER
        with store.datastore.transaction(commit=False) as curs:
            curs.execute(f'SELECT state FROM "events_{AGENCY}"')
            raw = bytes(curs.fetchone()["state"])
        assert MARKER.encode() not in raw
    finally:
        store.close()
    with pytest.raises(CipherError, match="the store is encrypted"):
        EventStore(url, create=False).recorder(AGENCY)


def test_encrypted_node_and_hub_stores_work_end_to_end(launch, tmp_path):
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=30, legal_persons=10, licences=10)
    with sqlite3.connect(tmp_path / "agency.db") as db:
        db.execute("UPDATE persons SET address = ? WHERE rowid = 1", (MARKER,))
    node_key, hub_key = keygen(tmp_path / "node.key"), keygen(tmp_path / "hub.key")
    hub = launch.hub(config={"store": {"cipher_key_file": str(hub_key)}})
    node = launch.node(hub.grpc_address, tmp_path / "agency.db", TABLES,
                       config={"store": {"cipher_key_file": str(node_key)}})
    wait_caught_up(node)

    for store in ("node-store.db", "hub-store.db"):
        assert MARKER.encode() not in file_bytes(tmp_path / store), f"plaintext in {store}"

    hub_url = f"sqlite:///{tmp_path / 'hub-store.db'}"
    refused = exchange("replay", "--store", hub_url, "--agency", AGENCY, "--target",
                       f"sqlite:///{tmp_path / 'nokey.db'}", check=False)
    assert refused.returncode == 2 and "the store is encrypted" in refused.stderr
    wrong = exchange("replay", "--store", hub_url, "--agency", AGENCY, "--cipher-key-file", str(node_key),
                     "--target", f"sqlite:///{tmp_path / 'wrongkey.db'}", check=False)
    assert wrong.returncode == 2 and "wrong key" in wrong.stderr

    for name, url, key in (("from-hub", hub_url, hub_key),
                           ("from-node", f"sqlite:///{tmp_path / 'node-store.db'}", node_key)):
        target = tmp_path / f"{name}.db"
        exchange("replay", "--store", url, "--agency", AGENCY, "--cipher-key-file", str(key),
                 "--target", f"sqlite:///{target}")
        exchange("verify", "--source", f"sqlite:///{tmp_path / 'agency.db'}", "--target", f"sqlite:///{target}",
                 "--tables", *TABLES)

    # A node that lost its store restores it, encrypted, from the hub's copy.
    node.kill()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{tmp_path / 'node-store.db'}{suffix}").unlink(missing_ok=True)
    exchange("node", "restore", "--config", str(node.config_path))
    assert MARKER.encode() not in file_bytes(tmp_path / "node-store.db")
    node = launch.restart(node)
    wait_caught_up(node)
    hub.terminate()

    # A hub given the wrong key (here from the environment) refuses to start, says why, and never logs a key.
    settings = {**hub.config, "store": {"url": hub.config["store"]["url"]}}
    wrong_key = node_key.read_text().strip()
    bad = launch.start(["hub", "run"], settings, name="hub-wrong-key", ready=lambda: True,
                       env={"EXCHANGE_HUB_STORE_CIPHER_KEY": wrong_key})
    assert bad.popen.wait(30) == 2
    assert "wrong key" in bad.log()
    assert wrong_key not in bad.log() and hub_key.read_text().strip() not in hub.log()


# Bundles encrypted to the hub.

def hub_bundle_key(tmp_path: Path, name: str = "hub-bundles") -> Path:
    from exchange.transport.offline.bundles import generate_hub_key

    path = tmp_path / f"{name}.key"
    generate_hub_key(path, path.with_suffix(".pub"))
    return path


def test_a_bundle_encrypted_to_the_hub_reads_only_with_the_hubs_key(tmp_path):
    from eventsourcing.persistence import Notification

    from exchange.transport.offline.bundles import (
        BundleError,
        generate_key,
        load_hub_private_key,
        load_hub_public_key,
        load_private_key,
        load_trusted_keys,
        read_bundle,
        read_manifest,
        write_bundle,
    )

    signing = tmp_path / "node.key"
    generate_key(signing, signing.with_suffix(".pub"))
    trusted = load_trusted_keys({AGENCY: str(signing.with_suffix(".pub"))})
    hub_key, other_key = hub_bundle_key(tmp_path), hub_bundle_key(tmp_path, "other-hub")
    notifications = [Notification(id=i, **vars(event({"address": MARKER, "n": i}))) for i in (3, 4, 5)]
    path = write_bundle(tmp_path, AGENCY, notifications, 2, load_private_key(signing),
                        load_hub_public_key(hub_key.with_suffix(".pub")))

    assert MARKER.encode() not in path.read_bytes()
    manifest = read_manifest(path)
    assert manifest.format == 2 and manifest.encryption["scheme"] == "x25519-hkdf-sha256-aes256gcm"
    _, batch = read_bundle(path, trusted, load_hub_private_key(hub_key))
    assert [json.loads(e.state)["n"] for e in batch.events] == [3, 4, 5]
    assert json.loads(batch.events[0].state)["address"] == MARKER

    with pytest.raises(BundleError) as missing:
        read_bundle(path, trusted)
    assert missing.value.reason == "encrypted" and "set [bundles] decrypt_key" in str(missing.value)
    with pytest.raises(BundleError) as wrong:
        read_bundle(path, trusted, load_hub_private_key(other_key))
    assert wrong.value.reason == "encrypted" and "not to this hub's key" in str(wrong.value)

    (tmp_path / "plain").mkdir()
    plain = write_bundle(tmp_path / "plain", AGENCY, notifications, 2, load_private_key(signing))
    assert read_manifest(plain).format == 1 and "encryption" not in plain.read_bytes().decode("latin-1")
    assert len(read_bundle(plain, trusted, load_hub_private_key(hub_key))[1].events) == 3


def test_export_encrypts_to_the_hub_and_import_decrypts(tmp_path):
    from conftest import to_toml
    from test_bundles import node_store

    node_url = f"sqlite:///{tmp_path / 'node-store.db'}"
    node_store(node_url, 12)
    exchange_dir = tmp_path / "bundles"
    signing = tmp_path / "node.key"
    hub_config = tmp_path / "hub.toml"
    hub_config.write_text(to_toml({"store": {"url": f"sqlite:///{tmp_path / 'hub-store.db'}"},
                                   "bundles": {"trusted_keys": {AGENCY: str(tmp_path / f"{AGENCY}.pub")},
                                               "decrypt_key": str(tmp_path / "hub-bundles.key")}}))
    keys = json.loads(exchange("hub", "keygen", "--config", str(hub_config)).stdout)["decrypt_key"]
    assert oct(Path(keys["key"]).stat().st_mode & 0o777) == "0o600"
    node_config = tmp_path / "node.toml"
    node_config.write_text(to_toml({
        "agency": AGENCY, "source": {"url": f"sqlite:///{tmp_path / 'unused.db'}", "tables": ["persons"]},
        "store": {"url": node_url}, "hub": {"address": "127.0.0.1:1"},
        "bundles": {"key": str(signing), "encrypt_to": keys["public_key"]}}))
    exchange("node", "keygen", "--config", str(node_config))
    exported = json.loads(exchange("node", "export", "--config", str(node_config), "--to", str(exchange_dir)).stdout)
    assert exported["events"] == 12

    from exchange.transport.offline.bundle_log import BundleLog
    from exchange.transport.offline.bundles import BundleError, load_hub_private_key, load_trusted_keys

    trusted = load_trusted_keys({AGENCY: str(tmp_path / f"{AGENCY}.pub")})
    offline_log = BundleLog(exchange_dir, AGENCY, trusted, load_hub_private_key(keys["key"]))
    assert [json.loads(n.state)["n"] for n in offline_log.read(0, 100)] == list(range(12))
    with pytest.raises(BundleError, match="set \\[bundles\\] decrypt_key"):
        BundleLog(exchange_dir, AGENCY, trusted).read(0, 100)

    no_key = tmp_path / "hub-nokey.toml"
    no_key.write_text(hub_config.read_text().replace("decrypt_key", "# decrypt_key"))
    copy = tmp_path / "copy"
    copy.mkdir()
    for bundle in exchange_dir.glob("*.bundle"):
        (copy / bundle.name).write_bytes(bundle.read_bytes())
    refused = json.loads(exchange("hub", "import", str(copy), "--config", str(no_key), check=False).stdout)
    assert refused["quarantined"][0]["reason"] == "encrypted"

    report = json.loads(exchange("hub", "import", str(exchange_dir), "--config", str(hub_config)).stdout)
    assert report["imported"][0]["stored"] == 12
