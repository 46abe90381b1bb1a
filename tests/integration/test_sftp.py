"""Offline exchange over SFTP, against a real OpenSSH sshd (tests/support/sshd.py).

The SFTP client is tested in-process; the node's fallback and the hub's SFTP
inbox run as real processes.  The tests look at what the server stored by
reading its directory on disk (it is this machine's filesystem).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import tomllib
import urllib.request
from pathlib import Path

import paramiko
import pytest
from conftest import to_toml
from prometheus_client.parser import text_string_to_metric_families
from support.sshd import write_key_pair
from test_bundles import (  # noqa: F401
    AGENCY,
    flip_last_content_byte,
    hub_position,
    keys,
    node_store,
    offline,
    stored,
    trusted,
    wait_for,
    write_config,
)
from test_exchange_e2e import assert_exactly_once, assert_replay_equals, exchange, status, store_url  # noqa: F401

from exchange.demos.sample import TABLES
from exchange.transport.offline.acks import make_ack
from exchange.transport.offline.bundles import generate_key, load_private_key, read_manifest
from exchange.transport.offline.sftp import (
    HostKeyError,
    RemoteFileRefused,
    SftpTarget,
    connect,
    download,
    part_name,
    read_remote,
    upload,
)
from node.offline import MAX_ACK_BYTES


@pytest.fixture
def remote(tmp_path) -> Path:
    """The SFTP directory of one test, as the server's disk holds it."""
    directory = tmp_path / "sftp"
    directory.mkdir()
    return directory


def metric(process, name: str, **labels) -> float:
    """A sample's value on ``process``'s /metrics (0 when it is not there)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{process.config['metrics']['port']}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def fingerprint(public_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line."""
    blob = base64.b64decode(public_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def bundles_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.bundle"))


def covered(directory: Path) -> int:
    """The node notification id up to which the bundles in ``directory`` hold every event."""
    reach = 0
    for manifest in sorted((read_manifest(p) for p in bundles_in(directory)), key=lambda m: m.after):
        if manifest.after <= reach:
            reach = max(reach, manifest.last)
    return reach


def captured(node) -> int:
    """Events stored at the node once it has read every source change."""
    wait_for(lambda: status(node)["source_pending"] == 0, "capture", node)
    return status(node)["events_stored"]


def hub_ack_key(tmp_path: Path) -> Path:
    """The hub's acknowledgement key of one test (``hub.pub`` beside it)."""
    path = tmp_path / "keys" / "hub.key"
    if not path.exists():
        path.parent.mkdir(exist_ok=True)
        generate_key(path, path.with_name("hub.pub"))
    return path


def fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote, offline=None, sftp=None):  # noqa: F811
    """A node whose hub does not answer, falling back to SFTP at once; it accepts only signed acknowledgements."""
    hub_address = f"127.0.0.1:{free_port()}"
    node = launch.node(hub_address, Path(agency.path), TABLES, config={
        "bundles": {"key": str(keys[AGENCY]), "hub_key": str(hub_ack_key(tmp_path).with_name("hub.pub"))},
        "offline": {"mode": "auto", "fallback_after": 0.5, "outbox": str(tmp_path / "outbox"), "interval": 0.3,
                    **(offline or {})},
        "sftp": sshd.settings(remote, **(sftp or {})),
    })
    return node, hub_address


def sftp_hub(launch, keys, sshd, remote, tmp_path, **config):  # noqa: F811
    """A hub polling ``remote`` over SFTP (and listening where ``config`` says), signing its acknowledgements."""
    return launch.hub(config={
        "bundles": {"trusted_keys": trusted(keys), "ack_key": str(hub_ack_key(tmp_path))},
        "sftp_inbox": {**sshd.settings(remote), "local_dir": str(tmp_path / "hub-sftp"), "poll_interval": 0.3},
        **config,
    })


# The SFTP client.

def test_an_upload_appears_only_when_complete_and_resumes_a_partial_one(sshd, remote, tmp_path):
    local = tmp_path / "x.bundle"
    local.write_bytes(os.urandom(200_000))
    (remote / part_name(local.name)).write_bytes(local.read_bytes()[:70_000])  # left by a dropped connection
    with connect(SftpTarget(**sshd.settings(remote))) as sftp:
        result = upload(sftp, local, str(remote))
        assert (result["resumed_from"], result["sent"]) == (70_000, 130_000)
        assert [p.name for p in remote.iterdir()] == [local.name]
        assert (remote / local.name).read_bytes() == local.read_bytes()
        again = upload(sftp, local, str(remote))
        assert (again["uploaded"], again["sent"]) == (False, 0)  # already there


def test_a_partial_upload_of_other_bytes_is_started_again(sshd, remote, tmp_path):
    local = tmp_path / "x.bundle"
    local.write_bytes(os.urandom(100_000))
    (remote / part_name(local.name)).write_bytes(os.urandom(40_000))  # e.g. an earlier export of the same range
    with connect(SftpTarget(**sshd.settings(remote))) as sftp:
        result = upload(sftp, local, str(remote))
    assert (result["resumed_from"], result["sent"]) == (0, 100_000)
    assert (remote / local.name).read_bytes() == local.read_bytes()


def test_an_unknown_host_key_is_refused_unless_configured_and_a_changed_one_always(sshd, remote, tmp_path):
    name = f"[127.0.0.1]:{sshd.port}"
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("")
    target = SftpTarget(**sshd.settings(remote, known_hosts=str(known_hosts)))
    with pytest.raises(HostKeyError) as refused:
        with connect(target):
            pass
    message = str(refused.value)
    assert "unknown" in message and name in message and fingerprint(sshd.host_public) in message
    assert str(known_hosts) in message

    accepting = SftpTarget(**{**target.__dict__, "accept_unknown_host": True})
    with connect(accepting) as sftp:
        sftp.listdir(str(remote))
    assert known_hosts.read_text().split() == [name, *sshd.host_public.split()[:2]]
    with connect(target) as sftp:  # recorded now
        sftp.listdir(str(remote))

    other = write_key_pair(tmp_path / "other_host_key")
    known_hosts.write_text(f"{name} {other}\n")
    for attempt in (target, accepting):
        with pytest.raises(HostKeyError) as refused:
            with connect(attempt):
                pass
        message = str(refused.value)
        assert "has changed" in message and name in message and str(known_hosts) in message
        assert fingerprint(sshd.host_public) in message and fingerprint(other) in message


def test_remote_reads_refuse_links_to_devices_and_files_over_the_limit(sshd, remote, tmp_path):
    (remote / "zero").symlink_to("/dev/zero")
    (remote / "big").write_bytes(b"x" * 1001)
    (remote / "fits").write_bytes(b"x" * 1000)
    with connect(SftpTarget(**sshd.settings(remote))) as sftp:
        assert read_remote(sftp, str(remote / "fits"), 1000) == b"x" * 1000
        assert read_remote(sftp, str(remote / "missing"), 1000) is None
        for read in (lambda path: read_remote(sftp, path, 1000),
                     lambda path: download(sftp, path, tmp_path / "copy", max_bytes=1000)):
            with pytest.raises(RemoteFileRefused, match=re.escape(f"remote file {remote}/zero is not a regular file")):
                read(str(remote / "zero"))
            with pytest.raises(RemoteFileRefused, match=re.escape(f"{remote}/big has 1001 bytes, more than the 1000")):
                read(str(remote / "big"))
        assert download(sftp, str(remote / "fits"), tmp_path / "copy", max_bytes=1000) == 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "sftp"]


def test_a_remote_file_growing_while_it_is_read_is_read_no_further_than_the_limit(sshd, remote, tmp_path, monkeypatch):
    path = remote / "ack.json"
    path.write_bytes(b"x" * 1000)
    checked = paramiko.SFTPFile.stat

    def checked_then_grown(self):  # the file grows on the server right after the open handle's check
        attrs = checked(self)
        with open(path, "ab") as f:
            f.write(b"x" * 100_000)
        return attrs

    monkeypatch.setattr(paramiko.SFTPFile, "stat", checked_then_grown)
    with connect(SftpTarget(**sshd.settings(remote))) as sftp:
        with pytest.raises(RemoteFileRefused, match=re.escape(f"remote file {path} grew past the 1000 bytes allowed")):
            read_remote(sftp, str(path), 1000)
        with pytest.raises(RemoteFileRefused, match="grew past the 200000 bytes allowed"):
            download(sftp, str(path), tmp_path / "copy", max_bytes=200_000)  # 101,000 bytes when checked
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sftp"]


# The node's fallback and the hub's SFTP inbox, as processes.

def test_fallback_while_the_hub_is_down_then_grpc_takes_over_without_gap_or_duplicate(
        launch, free_port, agency, tmp_path, keys, sshd, remote):  # noqa: F811
    node, hub_address = fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote, offline={"max_events": 100})
    agency.run(300)
    events = captured(node)
    wait_for(lambda: covered(remote) == events, "the bundles on the SFTP server", node)
    assert not list(remote.glob(".*"))  # nothing half-written left
    assert metric(node, "exchange_node_offline_fallback_active") == 1
    assert metric(node, "exchange_node_bundles_uploaded_total") == len(bundles_in(remote)) > 1
    assert metric(node, "exchange_node_bundle_bytes_uploaded_total") == sum(p.stat().st_size for p in bundles_in(remote))

    # The hub comes up, but the node still cannot reach it over gRPC: it imports from SFTP.
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path)
    wait_for(lambda: status(node)["hub_position"] == events, "the node reading the hub's acknowledgement", node)
    assert bundles_in(remote) == [] and (remote / "ack" / f"{AGENCY}.json").exists()
    assert stored(store_url(hub)) == stored(store_url(node))
    wait_for(lambda: not list((tmp_path / "outbox").rglob("*.bundle")), "acknowledged bundles forgotten", node)

    agency.run(200)
    events = captured(node)
    wait_for(lambda: status(node)["hub_position"] == events, "more changes over SFTP", node)

    # The network comes back: the same hub (same store) answers at the node's hub address.
    hub.terminate()
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path, listen={"address": hub_address})
    agency.run(100)
    wait_for(lambda: (r := status(node))["caught_up"] and r["hub_reachable"], "gRPC catching up", node)
    wait_for(lambda: metric(node, "exchange_node_offline_fallback_active") == 0, "the fallback to stop", node)
    assert "offline fallback stopped" in node.log()
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "after-fallback")


def test_a_node_refuses_an_acknowledgement_that_is_a_device_or_too_large_and_keeps_going(
        launch, free_port, agency, tmp_path, keys, sshd, remote):  # noqa: F811
    ack = remote / "ack" / f"{AGENCY}.json"
    ack.parent.mkdir()
    ack.symlink_to("/dev/zero")  # would grow the node's memory without bound
    node, _ = fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote, offline={"max_events": 100})
    agency.run(200)
    events = captured(node)
    wait_for(lambda: covered(remote) == events, "the bundles uploaded all the same", node)
    wait_for(lambda: f"remote file {ack} is not a regular file" in node.log(), "the refusal", node)
    assert metric(node, "exchange_node_errors_total", kind="offline") >= 1

    ack.unlink()
    ack.write_bytes(b" " * (MAX_ACK_BYTES + 1))
    wait_for(lambda: f"remote file {ack} has {MAX_ACK_BYTES + 1} bytes, more than the {MAX_ACK_BYTES} allowed"
             in node.log(), "the refusal of an oversized acknowledgement", node)
    assert status(node)["hub_position"] == 0

    ack.unlink()
    ack.write_bytes(make_ack(AGENCY, events, load_private_key(hub_ack_key(tmp_path))))
    wait_for(lambda: status(node)["hub_position"] == events, "a good acknowledgement read again", node)


def test_the_hub_leaves_a_bundle_too_large_to_download_and_imports_the_others(
        launch, offline, keys, sshd, remote, tmp_path):  # noqa: F811
    offline.export()
    (bundle,) = bundles_in(offline.dir)
    with connect(SftpTarget(**sshd.settings(remote))) as sftp:
        upload(sftp, bundle, str(remote))
    huge = remote / f"{AGENCY}-9999999999-9999999999.bundle"
    with open(huge, "wb") as f:
        f.truncate(2 << 30)  # sparse: 2 GiB on paper
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path, store={"url": offline.hub_url})
    wait_for(lambda: metric(hub, "exchange_hub_bundles_imported_total", agency=AGENCY) == 1, "the good bundle", hub)
    wait_for(lambda: f"remote file {huge} has {2 << 30} bytes, more than the" in hub.log(), "the refusal", hub)
    assert huge.exists() and metric(hub, "exchange_hub_errors_total", kind="sftp_inbox") >= 1
    assert stored(offline.hub_url) == stored(offline.node_url)


def test_a_bundle_uploaded_twice_is_imported_once(launch, offline, keys, sshd, remote, tmp_path):  # noqa: F811
    offline.export()
    (bundle,) = bundles_in(offline.dir)
    target = SftpTarget(**sshd.settings(remote))
    with connect(target) as sftp:
        upload(sftp, bundle, str(remote))
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path, store={"url": offline.hub_url})
    wait_for(lambda: not bundles_in(remote), "the first import", hub)
    with connect(target) as sftp:
        upload(sftp, bundle, str(remote))
    wait_for(lambda: not bundles_in(remote), "the second import", hub)
    wait_for(lambda: metric(hub, "exchange_hub_bundles_imported_total", agency=AGENCY) == 2, "the metric", hub)
    assert metric(hub, "exchange_hub_events_duplicate_total", agency=AGENCY) == 30
    assert stored(offline.hub_url) == stored(offline.node_url)
    assert json.loads((remote / "ack" / f"{AGENCY}.json").read_text())["position"] == 30


def test_a_partial_upload_is_never_imported_and_is_resumed(launch, offline, keys, sshd, remote, tmp_path):  # noqa: F811
    offline.export("--max-events", "10")
    first, second, third = bundles_in(offline.dir)
    target = SftpTarget(**sshd.settings(remote))
    with connect(target) as sftp:
        upload(sftp, first, str(remote))
    partial = remote / part_name(second.name)
    partial.write_bytes(second.read_bytes()[: second.stat().st_size // 2])  # the connection dropped here
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path, store={"url": offline.hub_url})
    wait_for(lambda: not bundles_in(remote), "the first bundle's import", hub)
    wait_for(lambda: metric(hub, "exchange_hub_bundles_imported_total", agency=AGENCY) == 1, "the metric", hub)
    assert partial.exists() and hub_position(offline.hub_url) == 10
    assert not (tmp_path / "hub-sftp" / "quarantine").exists()

    with connect(target) as sftp:
        result = upload(sftp, second, str(remote))
        upload(sftp, third, str(remote))
    assert result["resumed_from"] == second.stat().st_size // 2
    wait_for(lambda: hub_position(offline.hub_url) == 30, "the resumed bundle's import", hub)
    assert stored(offline.hub_url) == stored(offline.node_url)


def test_a_bundle_damaged_on_the_server_is_quarantined_and_sent_again(
        launch, free_port, agency, tmp_path, keys, sshd, remote):  # noqa: F811
    node, _ = fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote, offline={"max_events": 50})
    agency.run(150)
    events = captured(node)
    wait_for(lambda: covered(remote) == events, "the bundles on the SFTP server", node)
    damaged = bundles_in(remote)[1]
    temp = remote / f".{damaged.name}.tmp"
    temp.write_bytes(flip_last_content_byte(damaged.read_bytes(), keys))
    temp.replace(damaged)

    hub = sftp_hub(launch, keys, sshd, remote, tmp_path)
    quarantined = tmp_path / "hub-sftp" / "quarantine"
    wait_for(lambda: (quarantined / f"{damaged.name}.reason.txt").exists(), "the quarantine", hub)
    assert (quarantined / f"{damaged.name}.reason.txt").read_text().startswith("hash: content SHA-256 differs")
    assert metric(hub, "exchange_hub_bundles_quarantined_total", reason="hash") == 1
    wait_for(lambda: status(node)["hub_position"] == events, "the node sending it again and the import", node)
    assert f"the hub took bundle {damaged.name} without importing it" in node.log()
    assert stored(store_url(hub)) == stored(store_url(node))


def test_hub_killed_during_an_sftp_poll_restarts_and_stores_everything_once(
        launch, free_port, agency, tmp_path, keys, sshd, remote):  # noqa: F811
    node, _ = fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote, offline={"max_events": 20})
    agency.run(400)
    events = captured(node)
    wait_for(lambda: covered(remote) == events, "the bundles on the SFTP server", node)
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path)
    wait_for(lambda: list((tmp_path / "hub-sftp").glob("imported/*.bundle")), "the first import", hub)
    hub.kill()  # somewhere between downloading, importing, acknowledging and removing
    hub = launch.restart(hub)
    wait_for(lambda: status(node)["hub_position"] == events, "every bundle imported and acknowledged", node)
    assert bundles_in(remote) == [] and not (tmp_path / "hub-sftp" / "quarantine").exists()
    assert stored(store_url(hub)) == stored(store_url(node))


def test_a_node_refuses_a_changed_host_key_and_uploads_nothing(
        launch, free_port, agency, tmp_path, keys, sshd, remote):  # noqa: F811
    other = write_key_pair(tmp_path / "other_host_key")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{sshd.port} {other}\n")
    node, _ = fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote, offline={"mode": "always"},
                            sftp={"known_hosts": str(known_hosts)})
    agency.run(50)
    captured(node)
    wait_for(lambda: "has changed" in node.log(), "the refusal", node)
    line = next(line for line in node.log().splitlines() if "has changed" in line)
    assert f"[127.0.0.1]:{sshd.port}" in line and fingerprint(sshd.host_public) in line and str(known_hosts) in line
    assert metric(node, "exchange_node_errors_total", kind="offline") >= 1
    assert list(remote.iterdir()) == [] and metric(node, "exchange_node_bundles_uploaded_total") == 0


def test_node_killed_during_an_upload_resumes_it_without_loss_or_duplicate(
        launch, free_port, agency, tmp_path, keys, sshd, remote):  # noqa: F811
    agency.run(1000)
    node, hub_address = fallback_node(launch, free_port, agency, tmp_path, keys, sshd, remote,
                                      offline={"mode": "off", "max_events": 100_000},
                                      sftp={"max_rate": 20_000})  # bytes per second, so the kill lands mid-upload
    events = captured(node)
    node.terminate()
    node.config["offline"]["mode"] = "auto"  # now: one bundle of everything, ~100 kB
    node = launch.restart(node)

    def uploading() -> tuple[Path, Path] | None:
        """(partial upload, its local bundle) while well short of the end."""
        for partial in remote.glob(".*.part"):
            local = tmp_path / "outbox" / partial.name[1:-len(".part")]
            if local.exists() and 0 < partial.stat().st_size < local.stat().st_size - 10_000:
                return partial, local
        return None

    wait_for(uploading, "an upload under way", node)
    node.kill()
    partial, local = uploading()
    name = local.name
    assert not (remote / name).exists()

    node.config["sftp"]["max_rate"] = 0
    node = launch.restart(node)
    wait_for(lambda: covered(remote) == events, "the resumed upload", node)
    assert f"resumed the upload of {name} at byte" in node.log()
    assert (remote / name).read_bytes() == (tmp_path / "outbox" / "sent" / name).read_bytes()
    hub = sftp_hub(launch, keys, sshd, remote, tmp_path, listen={"address": hub_address})
    agency.run(100)
    wait_for(lambda: (r := status(node))["caught_up"] and r["hub_reachable"], "catching up", node)
    assert_exactly_once(node, hub)
    assert_replay_equals(store_url(hub), Path(agency.path), tmp_path, "after-kill")


# Settings.

@pytest.mark.parametrize("offline, sftp, words", [
    ({"mode": "sometimes"}, {}, '[offline] mode = "sometimes": must be one of auto, always, off'),
    ({"mode": "auto"}, {"host": "127.0.0.1"}, "[offline] outbox must be set"),
    ({"mode": "always", "outbox": "outbox"}, {"host": "127.0.0.1", "user": "u"}, "[sftp] key, known_hosts, remote_dir must be set"),
])
def test_a_node_with_incomplete_offline_settings_refuses_to_start(tmp_path, agency, keys, offline, sftp, words):  # noqa: F811
    config = write_config(tmp_path / "node.toml", {
        "agency": AGENCY, "source": {"url": f"sqlite:///{agency.path}", "tables": list(TABLES)},
        "store": {"url": f"sqlite:///{tmp_path / 'node-store.db'}"}, "hub": {"address": "127.0.0.1:1", "insecure": True},
        "metrics": {"port": 0}, "bundles": {"key": str(keys[AGENCY])}, "offline": offline, "sftp": sftp,
    })
    result = exchange("node", "run", "--config", str(config), check=False)
    assert result.returncode == 2 and words in result.stderr, result.stderr


def test_a_hub_with_incomplete_sftp_inbox_settings_refuses_to_start(tmp_path, free_port, sshd, remote):
    config = write_config(tmp_path / "hub.toml", {
        "store": {"url": f"sqlite:///{tmp_path / 'hub-store.db'}"},
        "listen": {"address": f"127.0.0.1:{free_port()}", "insecure": True}, "metrics": {"port": 0},
        "sftp_inbox": sshd.settings(remote),
    })
    result = exchange("hub", "run", "--config", str(config), check=False)
    assert result.returncode == 2
    assert "cannot start the SFTP inbox" in result.stderr and "[sftp_inbox] local_dir must be set" in result.stderr


# Signed acknowledgements.

def test_a_node_holding_the_hubs_key_accepts_only_acknowledgements_the_hub_signed(offline, tmp_path):  # noqa: F811
    hub_settings = tomllib.loads(offline.hub_config.read_text())
    hub_settings["bundles"]["ack_key"] = str(tmp_path / "hub.key")
    offline.hub_config.write_text(to_toml(hub_settings))
    created = json.loads(exchange("hub", "keygen", "--config", str(offline.hub_config)).stdout)["ack_key"]
    assert created["public_key"] == str(tmp_path / "hub.pub")
    node_settings = tomllib.loads(offline.node_config.read_text())
    node_settings["bundles"]["hub_key"] = created["public_key"]
    offline.node_config.write_text(to_toml(node_settings))

    offline.export()
    offline.import_()
    ack = offline.dir / "ack" / f"{AGENCY}.json"
    assert json.loads(ack.read_text())["key_id"] == created["key_id"]
    assert offline.export()["hub_position"] == 30  # signed by the hub: accepted

    node_store(offline.node_url, 5)  # so that a forged acknowledgement has somewhere to move to
    hub_key = load_private_key(tmp_path / "hub.key")
    altered = json.loads(make_ack(AGENCY, 30, hub_key)) | {"position": 35}
    forgeries = {
        "unsigned": make_ack(AGENCY, 35),
        "signed by another key": make_ack(AGENCY, 35, load_private_key(tmp_path / "keys" / f"{AGENCY}.key")),
        "altered": json.dumps(altered).encode(),
    }
    words = {"unsigned": "it is not signed", "signed by another key": f", not with [bundles] hub_key ({created['key_id']})",
             "altered": "its signature does not verify"}
    for kind, forged in forgeries.items():
        ack.write_bytes(forged)
        result = exchange("node", "export", "--config", str(offline.node_config), "--to", str(offline.dir))
        assert json.loads(result.stdout)["hub_position"] == 30, kind
        assert f"ignoring acknowledgement {ack}: " in result.stderr and words[kind] in result.stderr, kind
