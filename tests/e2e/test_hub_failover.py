"""Several hubs on one PostgreSQL store, with real hub, node and consumer processes and a real cluster:
nodes fail over when a hub is killed, racing publishers of one agency are serialised in the database,
and a decision taken through one hub is enforced by the other."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
from prometheus_client.parser import text_string_to_metric_families
from test_consumer import CONSUMER, approve_licences, consumer_config, publish_catalog, wait_replica_equals
from test_exchange_e2e import AGENCY, assert_replay_equals, exchange, stored, wait_caught_up

from exchange.contracts.identifiers import uscc_check_char
from exchange.demos.sample import TABLES, SampleAgency
from exchange.store.postgres import position_lock_key
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

DEADLINE = 180  # seconds: a safety net for a busy machine, not a timing assertion
CALL_TIMEOUT = 60
NULL_COMMIT = b'{"commit_time":null}'


def two_hubs(launch, postgres, tmp_path: Path, name: str):
    """Hubs a and b serving one fresh PostgreSQL database, each with its own audit chain."""
    url = postgres.url(postgres.create_database(name))
    logs = {h: str(tmp_path / f"audit-{h}.log") for h in "ab"}
    return [launch.hub(name=f"hub_{h}", config={"store": {"url": url},
                                                "audit": {"path": logs[h], "peers": [logs[o] for o in "ab" if o != h]}})
            for h in "ab"]


def metric(process, name: str, **labels) -> float | None:
    url = f"http://127.0.0.1:{process.config['metrics']['port']}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
    except OSError:
        return None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def eventually(check, what: str, timeout: float = DEADLINE):
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.05)
    return found


def assert_once_without_gap(events: list[tuple]) -> None:
    """No (record, version) twice, and every record's versions run 1, 2, 3 ... in log order."""
    seen: dict = {}
    for originator, version, *_ in events:
        assert version == seen.get(originator, 0) + 1, f"record {originator}: version {version} after {seen.get(originator)}"
        seen[originator] = version


def test_nodes_fail_over_when_a_hub_is_killed_and_every_event_is_stored_once(launch, postgres, tmp_path):
    hub_a, hub_b = two_hubs(launch, postgres, tmp_path, "ha_failover")
    listed = [hub_a.grpc_address, hub_b.grpc_address]
    agencies, nodes = [], []
    for i in range(3):
        if i == 0:
            agency = AGENCY
        else:
            agency = f"9131000{i:02d}MA1FL000"[:17]
            agency += uscc_check_char(agency)
        sample = SampleAgency(str(tmp_path / f"agency{i}.db"))
        sample.create(persons=20, legal_persons=10, licences=10)
        agencies.append(sample)
        nodes.append(launch.node(hub_a.grpc_address, Path(sample.path), TABLES, name=f"node{i}", agency=agency,
                                 config={"hub": {"addresses": listed}}))
    for node in nodes:  # all on hub a, caught up with the snapshot
        wait_caught_up(node, DEADLINE)
        assert metric(node, "exchange_node_hub_info", client="publish", address=hub_a.grpc_address) == 1
    before = [metric(n, "exchange_node_events_acknowledged_total") for n in nodes]
    workloads = [threading.Thread(target=s.run, args=(1500,), kwargs={"per_transaction": 5}) for s in agencies]
    for w in workloads:
        w.start()
    eventually(lambda: all(metric(n, "exchange_node_events_acknowledged_total") > b for n, b in zip(nodes, before)),
               "every node ships part of the workload to hub a")
    hub_a.kill()  # kill -9 in the middle of the workload
    killed = time.monotonic()
    assert any(w.is_alive() for w in workloads), "the workload ended before the hub was killed"
    moved = []
    for node in nodes:
        eventually(lambda: metric(node, "exchange_node_hub_info", client="publish", address=hub_b.grpc_address) == 1,
                   f"{node.name} ships to hub b")
        moved.append(time.monotonic() - killed)
    for w in workloads:
        w.join()
    for node in nodes:
        wait_caught_up(node, DEADLINE)
    caught_up = time.monotonic() - killed
    for node in nodes:
        assert metric(node, "exchange_node_hub_failovers_total", client="publish") >= 1
        agency = node.config["agency"]
        at_hub, at_node = stored(hub_b.config["store"]["url"], agency), stored(node.config["store"]["url"], agency)
        assert at_hub == at_node, f"{agency}: the hub's log differs from the node's"
        assert_once_without_gap(at_hub)
    assert_replay_equals(hub_b.config["store"]["url"], Path(agencies[0].path), tmp_path, "replayed")
    print(f"\nfailover: nodes on hub b {', '.join(f'{s:.1f}' for s in moved)} s after kill -9; "
          f"all caught up {caught_up:.1f} s after")


def test_an_idle_node_moves_to_the_other_hub_without_waiting_for_a_change(launch, postgres, tmp_path):
    hub_a, hub_b = two_hubs(launch, postgres, tmp_path, "ha_idle")
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=5, legal_persons=5, licences=5)
    node = launch.node(hub_a.grpc_address, Path(sample.path), TABLES, config={"hub": {"addresses": [hub_b.grpc_address]}})
    wait_caught_up(node, DEADLINE)
    hub_a.kill()
    eventually(lambda: metric(node, "exchange_node_hub_info", client="publish", address=hub_b.grpc_address) == 1,
               "the idle node moves to hub b")
    eventually(lambda: metric(node, "exchange_node_hub_connected") == 1, "the idle node's stream to hub b is open")
    wait_caught_up(node, DEADLINE)


def event(notification_id: int, record: uuid.UUID, version: int) -> pb.Event:
    topic = "exchange.record:Created" if version == 1 else "exchange.record:Updated"
    return pb.Event(notification_id=notification_id, originator_id=str(record), originator_version=version,
                    topic=topic, state=NULL_COMMIT)


def publish(address: str, agency: str, batch: pb.EventBatch) -> list[pb.PublishResponse] | grpc.RpcError:
    """Hello and one batch on a stream to the hub at ``address``: the answers, or the error that ended it."""
    requests = [pb.PublishRequest(hello=pb.Hello(agency=agency, node_version="test")), pb.PublishRequest(batch=batch)]
    with grpc.insecure_channel(address) as channel:
        try:
            return list(pb_grpc.ExchangeStub(channel).Publish(iter(requests), timeout=CALL_TIMEOUT))
        except grpc.RpcError as e:
            return e


def waiting_for_advisory_locks(postgres, db: str) -> int:
    return postgres.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                            dbname=db)[0][0]


def test_two_hubs_fed_one_agency_at_once_store_it_once_and_refuse_the_loser(launch, postgres, tmp_path):
    hub_a, hub_b = two_hubs(launch, postgres, tmp_path, "ha_race")
    db = "ha_race"
    agency = "913100099MA1FL000"
    agency += uscc_check_char(agency)
    records = [uuid.uuid4() for _ in range(3)]
    first = pb.EventBatch(after=0, events=[event(i + 1, r, 1) for i, r in enumerate(records)])
    # Hold the agency's position lock, so both hubs reach it with the batch before either may store it.
    holder = postgres.connect(db)
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (position_lock_key("node:" + agency),))
    answers: dict[str, object] = {}
    racers = [threading.Thread(target=lambda h=h: answers.__setitem__(h.name, publish(h.grpc_address, agency, first)))
              for h in (hub_a, hub_b)]
    for racer in racers:
        racer.start()
    eventually(lambda: waiting_for_advisory_locks(postgres, db) == 2, "both hubs wait for the agency's lock")
    holder.close()  # releases the lock
    for racer in racers:
        racer.join(CALL_TIMEOUT)
    won = [a for a in answers.values() if isinstance(a, list)]
    lost = [a for a in answers.values() if isinstance(a, grpc.RpcError)]
    assert len(won) == 1 and len(lost) == 1, answers
    assert won[0][-1].position == 3 and won[0][-1].stored == 3
    assert lost[0].code() == grpc.StatusCode.ABORTED
    assert "moved to node notification id 3 while this batch expected 0" in lost[0].details()
    assert "resend from 3" in lost[0].details()
    # Unhindered races of the next batches: whoever loses is refused or finds them stored; never twice.
    after = 3
    for round_ in range(5):
        batch = pb.EventBatch(after=after, events=[event(after + i + 1, r, round_ + 2) for i, r in enumerate(records)])
        results: list = [None, None]
        threads = [threading.Thread(target=lambda i=i, h=h: results.__setitem__(i, publish(h.grpc_address, agency, batch)))
                   for i, h in enumerate((hub_a, hub_b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(CALL_TIMEOUT)
        for result in results:
            assert isinstance(result, list) or result.code() == grpc.StatusCode.ABORTED, result
        assert sum(r[-1].stored for r in results if isinstance(r, list)) == len(records)
        after += len(records)
    events = stored(hub_a.config["store"]["url"], agency)
    assert len(events) == 3 * 6
    assert_once_without_gap(events)
    with grpc.insecure_channel(hub_b.grpc_address) as channel:
        position = pb_grpc.ExchangeStub(channel).GetPosition(pb.PositionRequest(agency=agency), timeout=CALL_TIMEOUT)
    assert position.position == after
    # A second node of the agency, sending other records under ids the hub already holds, is refused
    # through either hub, not taken for a re-send.
    other = pb.EventBatch(after=0, events=[event(1, uuid.uuid4(), 1)])
    for hub in (hub_a, hub_b):
        refused = publish(hub.grpc_address, agency, other)
        assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "another node of this agency publishes other events" in refused.details()
    assert len(stored(hub_a.config["store"]["url"], agency)) == 3 * 6


def test_a_revocation_through_one_hub_ends_the_stream_on_the_other_within_seconds(launch, postgres, tmp_path):
    hub_a, hub_b = two_hubs(launch, postgres, tmp_path, "ha_revoke")
    publish_catalog(hub_a.config["store"]["url"])
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=10, legal_persons=10, licences=20)
    node = launch.node(hub_a.grpc_address, Path(sample.path), TABLES,
                       config={"hub": {"addresses": [hub_b.grpc_address]}, "source": {"not_shared": ["persons"]}})
    wait_caught_up(node, DEADLINE)
    via_a = ["--hub", hub_a.grpc_address, "--insecure"]
    asked = json.loads(exchange("share", "request", *via_a, "--agency", CONSUMER, "--provider", AGENCY,
                                "--resource", "licences", "--scope", "all", "--purpose", "licensing",
                                "--items", "kind", "status").stdout)
    exchange("share", "approve", asked["id"], *via_a, "--agency", AGENCY, "--items", "kind", "status")
    request = pb.SubscribeRequest(agency=AGENCY, consumer=CONSUMER, resource="licences", purpose="licensing")
    received, ended = threading.Event(), {}

    def consume() -> None:
        with grpc.insecure_channel(hub_b.grpc_address) as channel:
            try:
                for batch in pb_grpc.ExchangeStub(channel).Subscribe(request, timeout=DEADLINE):
                    if batch.events:
                        received.set()
            except grpc.RpcError as e:
                ended.update(code=e.code(), details=e.details(), at=time.monotonic())

    stream = threading.Thread(target=consume)
    stream.start()
    assert received.wait(DEADLINE), "hub b delivered nothing of the approved resource"
    exchange("share", "revoke", asked["id"], *via_a, "--agency", AGENCY, "--reason", "no longer needed")
    revoked = time.monotonic()
    stream.join(DEADLINE)
    assert ended.get("code") == grpc.StatusCode.PERMISSION_DENIED, ended
    took = ended["at"] - revoked
    print(f"\nrevocation through hub a ended the stream on hub b after {took:.2f} s")
    assert took < 10  # the entitlement is checked at least every 0.25 s against the shared store


def test_a_consumer_moves_to_the_other_hub_and_its_replica_stays_exact(launch, postgres, tmp_path, free_port):
    hub_a, hub_b = two_hubs(launch, postgres, tmp_path, "ha_consumer")
    listed = [hub_a.grpc_address, hub_b.grpc_address]
    publish_catalog(hub_a.config["store"]["url"])
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=20, legal_persons=20, licences=20)
    node = launch.node(hub_a.grpc_address, Path(sample.path), TABLES,
                       config={"hub": {"addresses": listed}, "source": {"not_shared": ["persons"]}})
    approve_licences(hub_b)  # decided through hub b, delivered by hub a, then by hub b
    config = consumer_config(tmp_path, hub_a, free_port)
    config["hub"]["addresses"] = listed
    consumer = launch.start(["node", "subscribe"], config, name="consumer",
                            ready=lambda: metric_answers(config["metrics"]["port"]))
    wait_replica_equals(Path(sample.path), tmp_path / "replica.db", consumer, DEADLINE)
    workload = threading.Thread(target=sample.run, args=(600,), kwargs={"per_transaction": 5})
    workload.start()
    hub_a.kill()
    killed = time.monotonic()
    eventually(lambda: metric(consumer, "exchange_node_hub_info", client="subscribe", address=hub_b.grpc_address) == 1,
               "the consumer subscribes at hub b")
    moved = time.monotonic() - killed
    workload.join()
    wait_caught_up(node, DEADLINE)
    wait_replica_equals(Path(sample.path), tmp_path / "replica.db", consumer, DEADLINE)
    assert metric(consumer, "exchange_node_hub_failovers_total", client="subscribe") >= 1
    print(f"\nconsumer failover: subscribing at hub b {moved:.1f} s after kill -9")


def metric_answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5):
            return True
    except OSError:
        return False


def test_a_second_hub_on_one_sqlite_store_is_refused(launch, tmp_path, free_port):
    hub = launch.hub()
    config = tmp_path / "second.toml"
    config.write_text(f'[store]\nurl = "{hub.config["store"]["url"]}"\n[listen]\naddress = "127.0.0.1:{free_port()}"\n'
                      f'insecure = true\n[metrics]\nport = 0\n')
    result = exchange("hub", "run", "--config", str(config), check=False)
    assert result.returncode == 2
    assert "another hub already serves the SQLite store" in result.stderr
    assert hub.running
