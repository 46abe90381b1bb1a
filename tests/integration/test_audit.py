"""The hub's audit log: hash chain, tamper detection, concurrent writers, hub wiring."""

from __future__ import annotations

import json
import multiprocessing
import time
import urllib.request
from pathlib import Path

import pytest
from test_bundles import keys, offline  # noqa: F401 - fixtures
from test_exchange_e2e import AGENCY, exchange, wait_caught_up

from exchange.demos.sample import SampleAgency
from hub.audit import AuditError, AuditLog, Head, entry_hash, verify


def write_log(path: Path, entries: int = 6) -> list[str]:
    log = AuditLog(path)
    for i in range(entries):
        log.record("share.delivered", f"consumer-{i}", resource="persons", purpose="社会保障审核", events=i)
    return path.read_text(encoding="utf-8").splitlines(keepends=True)


def rewrite(path: Path, lines: list[str]) -> None:
    path.write_text("".join(lines), encoding="utf-8")


def test_a_fresh_log_verifies_and_its_head_is_the_last_entry(tmp_path):
    lines = write_log(tmp_path / "audit.log")
    verdict = verify(tmp_path / "audit.log")
    last = json.loads(lines[-1])
    assert verdict.valid and verdict.entries == 6
    assert verdict.head == Head(6, last["hash"]) == AuditLog(tmp_path / "audit.log").head()
    assert last["hash"] == entry_hash(last)


def test_an_edited_field_is_found(tmp_path):
    path = tmp_path / "audit.log"
    lines = write_log(path)
    lines[2] = lines[2].replace("consumer-2", "consumer-9")
    rewrite(path, lines)
    verdict = verify(path)
    assert not verdict.valid
    assert (verdict.bad_seq, verdict.kind) == (3, "changed")
    assert "entry 3 was changed" in verdict.reason


def test_a_deleted_entry_is_found(tmp_path):
    path = tmp_path / "audit.log"
    lines = write_log(path)
    del lines[3]
    rewrite(path, lines)
    verdict = verify(path)
    assert (verdict.valid, verdict.bad_seq, verdict.kind) == (False, 5, "missing")
    assert "entry 4 removed" in verdict.reason


def test_two_swapped_entries_are_found(tmp_path):
    path = tmp_path / "audit.log"
    lines = write_log(path)
    lines[1], lines[2] = lines[2], lines[1]
    rewrite(path, lines)
    verdict = verify(path)
    assert (verdict.valid, verdict.bad_seq, verdict.bad_line) == (False, 3, 2)


def test_an_inserted_entry_is_found_even_with_a_correct_own_hash(tmp_path):
    path = tmp_path / "audit.log"
    lines = write_log(path)
    forged = json.loads(lines[2])
    forged["details"]["events"] = 999
    forged["prev"] = "f" * 64
    forged["hash"] = entry_hash(forged)  # self-consistent, but not chained
    lines[2] = json.dumps(forged, ensure_ascii=False) + "\n"
    rewrite(path, lines)
    verdict = verify(path)
    assert (verdict.valid, verdict.bad_seq, verdict.kind) == (False, 3, "inserted")

    lines = write_log(tmp_path / "other.log")
    lines.insert(2, lines[4])  # an extra entry copied in
    rewrite(tmp_path / "other.log", lines)
    assert verify(tmp_path / "other.log").kind == "missing"


def test_a_cut_tail_is_found_only_against_an_anchored_head(tmp_path):
    path = tmp_path / "audit.log"
    lines = write_log(path)
    anchored = AuditLog(path).head()
    rewrite(path, lines[:4])
    assert verify(path).valid  # a shorter chain is still a chain...
    verdict = verify(path, anchored)  # ...but not the one that was anchored
    assert (verdict.valid, verdict.kind, verdict.bad_seq) == (False, "truncated", 5)
    assert "entries 5-6 were cut off" in verdict.reason


def test_a_rewritten_chain_is_found_against_an_anchored_head(tmp_path):
    path = tmp_path / "audit.log"
    write_log(path)
    anchored = AuditLog(path).head()
    path.unlink()
    write_log(path)  # the same actions, recomputed from scratch: a valid chain of its own
    assert verify(path).valid
    assert verify(path, anchored).kind == "anchor_mismatch"


def test_a_torn_last_line_is_reported_then_set_aside_and_recorded(tmp_path):
    path = tmp_path / "audit.log"
    write_log(path, 3)
    with open(path, "ab") as f:
        f.write(b'{"seq":4,"time":"2026-')  # a crash in the middle of a write
    verdict = verify(path)
    assert (verdict.valid, verdict.kind, verdict.bad_seq) == (False, "torn", 4)

    entry = AuditLog(path).record("hub.started", "hub")
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["action"] for e in entries[-2:]] == ["audit.torn_entry", "hub.started"]
    assert entries[-2]["details"]["length"] == len(b'{"seq":4,"time":"2026-')
    assert entry["seq"] == 5
    assert verify(path).valid
    assert json.loads((tmp_path / "audit.log.torn").read_text())["bytes"] == '{"seq":4,"time":"2026-'


def test_nothing_is_chained_after_a_last_entry_that_is_not_an_entry(tmp_path):
    path = tmp_path / "audit.log"
    write_log(path, 2)
    with open(path, "a") as f:
        f.write("not an entry\n")
    with pytest.raises(AuditError, match="the last entry is not readable"):
        AuditLog(path).record("hub.started", "hub")
    assert verify(path).kind == "malformed"
    assert path.read_text().endswith("not an entry\n")


def _append_many(path: str, writer: int, count: int) -> None:
    log = AuditLog(path)
    for i in range(count):
        log.record("test.append", f"writer-{writer}", i=i)


def test_several_processes_appending_keep_one_valid_chain(tmp_path):
    path = tmp_path / "audit.log"
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_append_many, args=(str(path), w, 40)) for w in range(4)]
    for p in writers:
        p.start()
    for p in writers:
        p.join(120)
        assert p.exitcode == 0
    verdict = verify(path)
    assert verdict.valid, verdict.reason
    assert verdict.entries == 160


def test_cli_verify_names_the_first_bad_entry_and_exits_1(tmp_path):
    path = tmp_path / "audit.log"
    lines = write_log(path)
    head = exchange("audit", "head", "--path", str(path)).stdout.strip()
    assert head == str(AuditLog(path).head())
    assert exchange("audit", "verify", "--path", str(path), "--head", head).returncode == 0

    lines[1] = lines[1].replace('"events":1', '"events":100')
    rewrite(path, lines)
    result = exchange("audit", "verify", "--path", str(path), check=False)
    assert result.returncode == 1
    assert "entry 2" in result.stdout and "changed" in result.stdout

    rewrite(path, write_log(tmp_path / "fresh.log")[:3])
    result = exchange("audit", "verify", "--path", str(path), "--head", head, "--json", check=False)
    assert result.returncode == 1
    assert json.loads(result.stdout)["kind"] == "truncated"


def test_cli_verifies_the_chains_of_several_hubs_together(tmp_path):
    first, second = tmp_path / "audit-hub1.log", tmp_path / "audit-hub2.log"
    write_log(first)
    lines = write_log(second)
    both = ["audit", "verify", "--path", str(first), "--path", str(second)]
    assert exchange(*both).returncode == 0
    config = tmp_path / "hub.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "hub.db"}"\n[audit]\npath = "{first}"\n'
                      f'peers = ["{second}"]\n')
    assert exchange("audit", "verify", "--config", str(config)).returncode == 0
    lines[1] = lines[1].replace('"events":1', '"events":7')
    rewrite(second, lines)
    result = exchange(*both, "--json", check=False)
    assert result.returncode == 1
    found = json.loads(result.stdout)
    assert not found["valid"] and [log["valid"] for log in found["logs"]] == [True, False]
    assert exchange("audit", "verify", "--config", str(config), check=False).returncode == 1
    refused = exchange(*both, "--head", "1:" + "0" * 64, check=False)
    assert refused.returncode != 0 and "--head anchors one log" in refused.stderr


def _metric(hub, name: str) -> float | None:
    port = hub.config["metrics"]["port"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def test_the_hub_records_its_actions_and_reports_a_broken_chain(launch, tmp_path):
    hub = launch.hub(config={"audit": {"verify_interval": 0.5}})
    audit_path = tmp_path / "audit.log"  # beside the hub's SQLite store
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=10, legal_persons=5, licences=5)
    node = launch.node(hub.grpc_address, tmp_path / "agency.db", ["persons", "legal_persons", "licences"])
    wait_caught_up(node)
    replica = tmp_path / "replica.db"
    exchange("replay", "--store", hub.config["store"]["url"], "--agency", AGENCY, "--target", f"sqlite:///{replica}")
    _subscribe_once(hub.grpc_address)
    node.terminate()
    assert hub.terminate() == 0

    actions = [json.loads(line) for line in audit_path.read_text(encoding="utf-8").splitlines()]
    kinds = [a["action"] for a in actions]
    assert kinds[0] == "hub.started" and kinds[-1] == "hub.stopped"
    connected = next(a for a in actions if a["action"] == "publisher.connected")
    assert connected["actor"] == AGENCY
    delivered = next(a for a in actions if a["action"] == "subscription.delivered")
    assert delivered["details"]["agency"] == AGENCY and delivered["details"]["events"] > 0
    assert exchange("audit", "verify", "--config", str(hub.config_path)).returncode == 0

    hub = launch.restart(hub)
    assert _metric(hub, "exchange_hub_audit_chain_valid") == 1.0
    lines = audit_path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace(AGENCY, "91310000000000000X", 1)
    rewrite(audit_path, lines)
    deadline = time.monotonic() + 30
    while _metric(hub, "exchange_hub_audit_chain_valid") != 0.0:
        assert time.monotonic() < deadline, hub.log()[-2000:]
        time.sleep(0.2)
    assert "audit log chain broken" in hub.log()


def _subscribe_once(address: str) -> None:
    """Read the agency's first batch over Subscribe, then hang up."""
    import grpc

    from protos.exchange.v1 import exchange_pb2 as pb
    from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address) as channel:
        stream = pb_grpc.ExchangeStub(channel).Subscribe(pb.SubscribeRequest(agency=AGENCY, after=0))
        assert next(stream).events
        stream.cancel()
    time.sleep(0.5)  # the hub records the delivery when the call ends


def test_bundle_imports_and_quarantines_are_recorded(offline):
    offline.export("--max-events", "10")
    first, second, _ = sorted(offline.dir.glob("*.bundle"))
    data = second.read_bytes()
    second.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))  # a broken signature
    offline.import_(check=False)
    entries = [json.loads(line) for line in (offline.hub_config.parent / "audit.log").read_text().splitlines()]
    imported = [e for e in entries if e["action"] == "bundle.imported"]
    quarantined = [e for e in entries if e["action"] == "bundle.quarantined"]
    assert [e["details"]["file"] for e in imported] == [first.name]
    assert imported[0]["actor"] == AGENCY and imported[0]["details"]["stored"] == 10
    assert quarantined[0]["details"]["file"] == second.name
    assert quarantined[0]["details"]["reason"] == "signature"
    assert verify(offline.hub_config.parent / "audit.log").valid


def test_a_hub_on_a_postgresql_store_needs_an_audit_path(launch, postgres, tmp_path):
    url = postgres.url(postgres.create_database("hub_audit_required"))
    hub = launch.start(["hub", "run"], {"store": {"url": url}, "metrics": {"port": 0}}, name="hub-no-audit",
                       ready=lambda: True)
    assert hub.popen.wait(30) == 2
    assert "[audit] path is required" in hub.log()
