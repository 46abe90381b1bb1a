"""Offline exchange: signed bundles, export at the node, import at the hub.

Bundle checks run in-process; everything involving a node or a hub runs the
real ``exchange`` commands and processes.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import struct
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

import pytest
from conftest import to_toml
from cryptography.hazmat.primitives import serialization
from eventsourcing.persistence import StoredEvent, Tracking
from test_exchange_e2e import (
    AGENCY,
    assert_exactly_once,
    assert_replay_equals,
    exchange,
    status,
    store_url,
    stored,
    wait_caught_up,
)

from exchange.demos.sample import TABLES
from exchange.store import EventStore
from exchange.transport.offline.bundles import (
    MAGIC,
    SIGNED_PREFIX,
    BundleError,
    generate_key,
    key_id,
    load_private_key,
    load_trusted_keys,
    read_bundle,
    write_bundle,
)
from hub.ingest import Ingest
from node.positions import HUB_TRACKING

OTHER_AGENCY = "91310000OTHER00001"


@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    """Signing keys of AGENCY and OTHER_AGENCY, and a stranger's key no hub trusts."""
    paths = {}
    for name in (AGENCY, OTHER_AGENCY, "stranger"):
        paths[name] = tmp_path / "keys" / f"{name}.key"
        paths[name].parent.mkdir(exist_ok=True)
        generate_key(paths[name], paths[name].with_suffix(".pub"))
    return paths


def trusted(keys) -> dict[str, str]:
    return {a: str(keys[a].with_suffix(".pub")) for a in (AGENCY, OTHER_AGENCY)}


def node_store(url: str, events: int) -> None:
    """A node store holding ``events`` events of AGENCY (each a new record)."""
    store = EventStore(url)
    try:
        store.node_recorder(AGENCY).insert_events([
            StoredEvent(originator_id=uuid4(), originator_version=1, topic="exchange.record:Created",
                        state=json.dumps({"n": i}).encode())
            for i in range(events)
        ])
    finally:
        store.close()


def write_config(path: Path, config: dict) -> Path:
    path.write_text(to_toml(config))
    return path


@dataclass
class Offline:
    """A node store and config, a hub config (hub not running) and a bundle directory."""

    node_url: str
    hub_url: str
    node_config: Path
    hub_config: Path
    dir: Path

    def export(self, *args: str) -> dict:
        return json.loads(exchange("node", "export", "--config", str(self.node_config), "--to", str(self.dir),
                                   *args).stdout)

    def import_(self, check: bool = True) -> dict:
        """``exchange hub import``: exit 0, or with ``check`` false also 1 (pending or quarantined)."""
        result = exchange("hub", "import", str(self.dir), "--config", str(self.hub_config), check=False)
        assert result.returncode in ((0,) if check else (0, 1)), result.stderr
        return json.loads(result.stdout)


@pytest.fixture
def offline(tmp_path, keys) -> Offline:
    """30 events in a node store; the hub's store starts empty."""
    node_url = f"sqlite:///{tmp_path / 'node-store.db'}"
    node_store(node_url, 30)
    node = write_config(tmp_path / "node.toml", {
        "agency": AGENCY,
        "source": {"url": f"sqlite:///{tmp_path / 'unused.db'}", "tables": ["persons"]},
        "store": {"url": node_url},
        "hub": {"address": "127.0.0.1:1"},
        "bundles": {"key": str(keys[AGENCY])},
    })
    hub_url = f"sqlite:///{tmp_path / 'hub-store.db'}"
    hub = write_config(tmp_path / "hub.toml", {"store": {"url": hub_url}, "bundles": {"trusted_keys": trusted(keys)}})
    return Offline(node_url, hub_url, node, hub, tmp_path / "bundles")


def read_all(url: str, after: int = 0, limit: int = 1000):
    store = EventStore(url, create=False)
    try:
        return store.node_recorder(AGENCY).read(after, limit)
    finally:
        store.close()


def hub_position(url: str) -> int:
    store = EventStore(url, create=False)
    try:
        return Ingest(store).position(AGENCY)
    finally:
        store.close()


# The bundle file.

def test_a_bundle_round_trips_and_is_written_atomically(tmp_path, keys):
    node_url = f"sqlite:///{tmp_path / 'node-store.db'}"
    node_store(node_url, 5)
    notifications = read_all(node_url, after=1)
    path = write_bundle(tmp_path, AGENCY, notifications, 1, load_private_key(keys[AGENCY]))
    assert path.name == f"{AGENCY}-000000000002-000000000005.bundle"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    manifest, batch = read_bundle(path, load_trusted_keys(trusted(keys)))
    assert (manifest.agency, manifest.after, manifest.first, manifest.last, manifest.events) == (AGENCY, 1, 2, 5, 4)
    assert batch.after == 1
    assert [(e.notification_id, e.originator_id, e.originator_version, e.topic, e.state) for e in batch.events] == [
        (n.id, str(n.originator_id), n.originator_version, n.topic, n.state) for n in notifications]


def parts(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(manifest, content, signature) of a bundle's bytes."""
    offset = len(MAGIC)
    (length,) = struct.unpack_from(">I", data, offset)
    manifest = data[offset + 4: offset + 4 + length]
    offset += 4 + length
    (length,) = struct.unpack_from(">Q", data, offset)
    content = data[offset + 8: offset + 8 + length]
    offset += 8 + length
    return manifest, content, data[offset + 2:]


def assemble(manifest: bytes, content: bytes, signature: bytes) -> bytes:
    return (MAGIC + struct.pack(">I", len(manifest)) + manifest + struct.pack(">Q", len(content)) + content
            + struct.pack(">H", len(signature)) + signature)


def edit_manifest(data: bytes, key_path: Path | None = None, **changes) -> bytes:
    """The bundle with manifest fields changed, re-signed with ``key_path`` (or with the old signature kept)."""
    manifest, content, signature = parts(data)
    fields = json.loads(manifest) | changes
    manifest = json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()
    if key_path:
        signature = load_private_key(key_path).sign(SIGNED_PREFIX + manifest)
    return assemble(manifest, content, signature)


def key_id_of(key_path: Path) -> str:
    return key_id(load_private_key(key_path).public_key())


def flip_last_content_byte(data: bytes, keys) -> bytes:
    manifest, content, signature = parts(data)
    return assemble(manifest, content[:-1] + bytes([content[-1] ^ 1]), signature)


def bad_signature(data: bytes, keys) -> bytes:
    manifest, content, signature = parts(data)
    return assemble(manifest, content, bytes([signature[0] ^ 1]) + signature[1:])


BAD_BUNDLES = {
    # name: (make the bad bytes from good ones, expected reason, words of the message)
    "tampered content": (flip_last_content_byte, "hash", "content SHA-256 differs"),
    "tampered manifest": (lambda d, k: edit_manifest(d, events=4), "signature", "signature does not verify"),
    "bad signature": (bad_signature, "signature", "signature does not verify"),
    "unknown signer": (lambda d, k: edit_manifest(d, k["stranger"], key_id=key_id_of(k["stranger"])),
                       "unknown_signer", "not trusted for agency"),
    "other agency's key": (lambda d, k: edit_manifest(d, k[OTHER_AGENCY], key_id=key_id_of(k[OTHER_AGENCY])),
                           "wrong_agency", f"signed with the key of agency {OTHER_AGENCY}"),
    "truncated": (lambda d, k: d[: len(d) // 2], "truncated", "truncated"),
    "wrong version": (lambda d, k: edit_manifest(d, k[AGENCY], format=3), "version", "format version 3"),
    "not a bundle": (lambda d, k: b"PK\x03\x04 a zip file", "malformed", "not a bundle file"),
}


@pytest.mark.parametrize("kind", BAD_BUNDLES)
def test_a_bad_bundle_is_refused_with_a_clear_reason_and_quarantined(offline, keys, kind):
    make_bad, reason, words = BAD_BUNDLES[kind]
    offline.export("--max-events", "10")
    first, second, third = sorted(offline.dir.glob("*.bundle"))
    third.unlink()
    second.write_bytes(make_bad(second.read_bytes(), keys))

    with pytest.raises(BundleError) as refused:
        read_bundle(second, load_trusted_keys(trusted(keys)))
    assert (refused.value.reason, str(second)) == (reason, refused.value.path)
    assert words in str(refused.value) and second.name in str(refused.value)

    report = offline.import_(check=False)
    assert [b["file"] for b in report["imported"]] == [first.name]
    assert [(q["file"], q["reason"]) for q in report["quarantined"]] == [(second.name, reason)]
    quarantined = offline.dir / "quarantine"
    assert (quarantined / second.name).exists() and not second.exists()
    assert (quarantined / f"{second.name}.reason.txt").read_text().startswith(f"{reason}: ")
    assert words in (quarantined / f"{second.name}.reason.txt").read_text()
    assert hub_position(offline.hub_url) == 10
    assert len(stored(offline.hub_url)) == 10


def test_importing_a_bundle_twice_changes_nothing(offline):
    offline.export()
    (bundle,) = offline.dir.glob("*.bundle")
    copy = offline.dir.parent / bundle.name
    shutil.copy(bundle, copy)
    assert offline.import_()["imported"][0]["stored"] == 30
    before = stored(offline.hub_url)
    shutil.copy(copy, bundle)
    report = offline.import_()
    assert [(b["file"], b["stored"]) for b in report["imported"]] == [(bundle.name, 0)]
    assert stored(offline.hub_url) == before == stored(offline.node_url)


def test_a_gap_is_held_until_the_missing_bundle_arrives(offline):
    offline.export("--max-events", "10")
    first, second, third = sorted(offline.dir.glob("*.bundle"))
    held = offline.dir.parent / first.name
    first.rename(held)
    report = offline.import_(check=False)
    assert report["imported"] == [] and report["quarantined"] == []
    assert [p["file"] for p in report["pending"]] == [second.name, third.name]
    assert "resend from 0" in report["pending"][0]["reason"]
    assert second.exists() and third.exists()
    assert json.loads((offline.dir / "ack" / f"{AGENCY}.json").read_text())["position"] == 0

    held.rename(first)
    report = offline.import_()
    assert [b["file"] for b in report["imported"]] == [first.name, second.name, third.name]
    assert stored(offline.hub_url) == stored(offline.node_url)
    ack = json.loads((offline.dir / "ack" / f"{AGENCY}.json").read_text())
    assert (ack["agency"], ack["position"]) == (AGENCY, 30)


def test_export_reads_the_ack_and_writes_only_what_the_hub_lacks(offline):
    assert offline.export("--max-events", "20")["bundles"] == [
        f"{AGENCY}-000000000001-000000000020.bundle", f"{AGENCY}-000000000021-000000000030.bundle"]
    offline.import_()
    node_store(offline.node_url, 5)  # captured meanwhile
    report = offline.export()
    assert (report["hub_position"], report["after"], report["events"]) == (30, 30, 5)
    assert report["bundles"] == [f"{AGENCY}-000000000031-000000000035.bundle"]
    assert offline.export("--after", "0")["events"] == 35  # an explicit start overrides the ack


def test_keygen_creates_a_private_key_only_its_owner_can_read(tmp_path):
    node = write_config(tmp_path / "node.toml", {
        "agency": AGENCY, "source": {"url": "sqlite:///unused.db", "tables": ["persons"]},
        "store": {"url": "sqlite:///unused-store.db"}, "hub": {"address": "127.0.0.1:1"},
        "bundles": {"key": str(tmp_path / "signing.key")},
    })
    report = json.loads(exchange("node", "keygen", "--config", str(node)).stdout)
    assert os.stat(report["key"]).st_mode & 0o777 == 0o600
    assert report["public_key"] == str(tmp_path / f"{AGENCY}.pub")
    serialization.load_pem_public_key(Path(report["public_key"]).read_bytes())
    again = exchange("node", "keygen", "--config", str(node), check=False)
    assert again.returncode == 2 and "a key already exists" in again.stderr


# With a real node and hub.

def air_gapped_node(launch, free_port, agency, tmp_path, keys):
    """A node whose hub address answers nothing, signing with AGENCY's key."""
    hub_address = f"127.0.0.1:{free_port()}"
    node = launch.node(hub_address, Path(agency.path), TABLES, config={"bundles": {"key": str(keys[AGENCY])}})
    return node, hub_address


def captured(node) -> dict:
    while (report := status(node))["source_pending"]:
        time.sleep(0.1)
    return report


def hub_toml(tmp_path: Path, keys) -> Path:
    """Config of the hub that ``launch.hub()`` starts later (same store), for importing before it runs."""
    return write_config(tmp_path / "import-hub.toml", {
        "store": {"url": f"sqlite:///{tmp_path / 'hub-store.db'}"}, "bundles": {"trusted_keys": trusted(keys)}})


def test_air_gap_export_import_then_grpc_resumes_without_gap_or_duplicate(launch, free_port, agency, tmp_path, keys):
    node, hub_address = air_gapped_node(launch, free_port, agency, tmp_path, keys)
    agency.run(300)
    report = captured(node)
    assert not report["hub_reachable"] and report["events_stored"] > 0
    carried = tmp_path / "usb"
    exported = json.loads(exchange("node", "export", "--config", str(node.config_path), "--to", str(carried),
                                   "--max-events", "100").stdout)
    assert exported["events"] == report["events_stored"] and len(exported["bundles"]) > 1

    imported = json.loads(exchange("hub", "import", str(carried), "--config", str(hub_toml(tmp_path, keys))).stdout)
    assert sum(b["stored"] for b in imported["imported"]) == report["events_stored"]
    # The bundles alone rebuild the database (recovery on the air-gapped side).
    rebuilt = tmp_path / "from-bundles.db"
    exchange("replay", "--bundles", str(carried), "--key", str(keys[AGENCY].with_suffix(".pub")), "--agency", AGENCY,
             "--target", f"sqlite:///{rebuilt}")
    assert exchange("verify", "--source", f"sqlite:///{agency.path}", "--target", f"sqlite:///{rebuilt}",
                    "--tables", *TABLES, check=False).returncode == 0
    # Back at the node: the acknowledgement moves its hub position.
    exchange("node", "export", "--config", str(node.config_path), "--to", str(carried))
    assert status(node)["hub_position"] == report["events_stored"]

    agency.run(200)  # the network comes back, with more changes
    hub = launch.hub(config={"listen": {"address": hub_address}, "bundles": {"trusted_keys": trusted(keys)}})
    wait_caught_up(node)
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "after-air-gap")


def test_a_bundle_overlapping_what_grpc_delivered_changes_nothing(launch, agency, tmp_path, keys):
    hub = launch.hub(config={"bundles": {"trusted_keys": trusted(keys)}})
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES, config={"bundles": {"key": str(keys[AGENCY])}})
    agency.run(100)
    wait_caught_up(node)
    before = stored(store_url(hub))
    carried = tmp_path / "usb"
    exchange("node", "export", "--config", str(node.config_path), "--to", str(carried), "--after", "0")
    # Imported beside the running hub, into its store.
    report = json.loads(exchange("hub", "import", str(carried), "--config", str(hub.config_path)).stdout)
    assert report["imported"] and all(b["stored"] == 0 for b in report["imported"])
    assert stored(store_url(hub)) == before
    agency.run(50)
    wait_caught_up(node)
    assert_exactly_once(node, hub)


def inbox_hub(launch, keys, inbox: Path, rescan_interval: float):
    return launch.hub(config={"bundles": {"trusted_keys": trusted(keys)},
                              "inbox": {"path": str(inbox), "rescan_interval": rescan_interval}})


def wait_for(check, what: str, process, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while not check():
        assert process.running, process.log()[-3000:]
        assert time.monotonic() < deadline, f"timed out waiting for {what}:\n{process.log()[-3000:]}"
        time.sleep(0.1)


def test_the_hub_imports_a_bundle_dropped_into_its_inbox_and_the_ack_advances_the_node(
        launch, free_port, agency, tmp_path, keys):
    node, _ = air_gapped_node(launch, free_port, agency, tmp_path, keys)
    agency.run(100)
    events = captured(node)["events_stored"]
    staging = tmp_path / "staging"
    exchange("node", "export", "--config", str(node.config_path), "--to", str(staging))
    (bundle,) = staging.glob("*.bundle")

    inbox = tmp_path / "inbox"
    hub = inbox_hub(launch, keys, inbox, rescan_interval=3600)  # so only the watcher can notice the bundle
    temp = inbox / f"{bundle.name}.tmp"
    shutil.copy(bundle, temp)  # a copy under a temp name is never read...
    temp.rename(inbox / bundle.name)  # ...only once renamed into place
    wait_for(lambda: (inbox / "imported" / bundle.name).exists(), "the import", hub)
    ack = json.loads((inbox / "ack" / f"{AGENCY}.json").read_text())
    assert (ack["agency"], ack["position"]) == (AGENCY, events)
    assert stored(store_url(hub)) == stored(store_url(node))

    assert status(node)["hub_position"] == 0  # the hub is not reachable over gRPC
    report = json.loads(exchange("node", "export", "--config", str(node.config_path), "--to", str(inbox)).stdout)
    assert (report["hub_position"], report["events"]) == (events, 0)
    assert status(node)["hub_position"] == events


def test_hub_killed_during_an_inbox_import_restarts_and_stores_everything_once(
        launch, free_port, agency, tmp_path, keys):
    node, _ = air_gapped_node(launch, free_port, agency, tmp_path, keys)
    agency.run(600)
    captured(node)
    staging = tmp_path / "staging"
    exchange("node", "export", "--config", str(node.config_path), "--to", str(staging), "--max-events", "25")
    inbox = tmp_path / "inbox"
    hub = inbox_hub(launch, keys, inbox, rescan_interval=0.5)
    for bundle in sorted(staging.glob("*.bundle"), reverse=True):  # newest first: gaps until the last arrives
        bundle.rename(inbox / bundle.name)
    wait_for(lambda: list(inbox.glob("imported/*.bundle")), "the first import", hub)
    hub.kill()  # most often mid-pass, sometimes mid-transaction
    hub = launch.restart(hub)
    wait_for(lambda: not list(inbox.glob("*.bundle")), "every bundle imported", hub)
    assert not (inbox / "quarantine").exists()
    assert_exactly_once(node, hub)


def test_a_hub_with_an_unreadable_trusted_key_refuses_to_start(tmp_path, free_port):
    config = write_config(tmp_path / "hub.toml", {
        "store": {"url": f"sqlite:///{tmp_path / 'hub-store.db'}"},
        "listen": {"address": f"127.0.0.1:{free_port()}", "insecure": True}, "metrics": {"port": 0},
        "bundles": {"trusted_keys": {AGENCY: str(tmp_path / "missing.pub")}},
        "inbox": {"path": str(tmp_path / "inbox")},
    })
    result = exchange("hub", "run", "--config", str(config), check=False)
    assert result.returncode == 2
    assert "missing.pub" in result.stderr and "cannot start the bundle inbox" in result.stderr


def test_replay_from_bundles_names_a_missing_bundle(offline, keys, tmp_path):
    bundles = offline.export("--max-events", "10")["bundles"]
    assert len(bundles) == 3
    (offline.dir / Path(bundles[1]).name).unlink()
    result = exchange("replay", "--bundles", str(offline.dir), "--key", str(keys[AGENCY].with_suffix(".pub")),
                      "--agency", AGENCY, "--target", f"sqlite:///{tmp_path / 'rebuilt.db'}", check=False)
    assert result.returncode == 2
    assert "a bundle is missing" in result.stderr and Path(bundles[2]).name in result.stderr


def add_events(url: str, resource: str, count: int) -> None:
    """``count`` new records of ``resource`` in AGENCY's node store."""
    store = EventStore(url)
    try:
        store.node_recorder(AGENCY).insert_events([
            StoredEvent(originator_id=uuid4(), originator_version=1, topic="exchange.record:Created",
                        state=json.dumps({"resource": resource}).encode())
            for _ in range(count)])
    finally:
        store.close()


def keep_at_node(offline: Offline, *tables: str) -> None:
    config = tomllib.loads(offline.node_config.read_text())
    config["source"]["not_shared"] = list(tables)
    write_config(offline.node_config, config)


def node_hub_position(url: str) -> int:
    store = EventStore(url, create=False)
    try:
        return store.node_recorder(AGENCY).position(HUB_TRACKING)
    finally:
        store.close()


def test_export_after_settled_kept_events_starts_where_the_hub_is(offline):
    """The node settles not-shared events itself, beyond the hub's position; a bundle
    written after that must still follow the hub's position, or the hub holds it as a gap."""
    add = functools.partial(add_events, offline.node_url)
    keep_at_node(offline, "secrets")
    offline.export()
    offline.import_()
    add("secrets", 5)  # events 31-35 stay at the node; its shipper settles them
    store = EventStore(offline.node_url)
    try:
        store.node_recorder(AGENCY).insert_tracking(Tracking(HUB_TRACKING, 35))
    finally:
        store.close()
    add("persons", 3)
    report = offline.export()
    assert report["events"] == 3
    assert offline.import_()["pending"] == []
    assert hub_position(offline.hub_url) == 38
    assert len(stored(offline.hub_url)) == 33


def test_an_air_gapped_node_settles_the_events_it_keeps_once_the_hub_acknowledges_the_rest(offline):
    """Without gRPC, the acknowledgement file is all the node hears: events after the hub's
    position that stay at the node are settled then, as the shipper settles them (caught up)."""
    keep_at_node(offline, "secrets")
    add_events(offline.node_url, "secrets", 4)  # 31-34 stay at the node
    assert offline.export()["events"] == 30
    offline.import_()
    report = offline.export()  # reads the hub's acknowledgement of 30
    assert report["events"] == 0 and report["hub_position"] == 34
    assert node_hub_position(offline.node_url) == 34
    add_events(offline.node_url, "persons", 2)
    add_events(offline.node_url, "secrets", 1)
    assert offline.export()["events"] == 2
    offline.import_()
    offline.export()
    assert node_hub_position(offline.node_url) == 37 and hub_position(offline.hub_url) == 36
