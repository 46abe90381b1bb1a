"""District hubs under a city hub, with real hub, node and consumer processes: each district hub forwards its
agencies' logs upstream exactly once through kill -9 of a district hub and of the city hub, and moves to another
city hub of the same store when the one in use dies; a consumer at the city receives a district agency's entitled
resource; the city hub takes an agency only from the hub listed for it."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from pathlib import Path

import grpc
from conftest import to_toml
from support.pki import PKI, client, events, tls_settings
from test_consumer import approve_licences, consumer_config, publish_catalog, wait_replica_equals
from test_exchange_e2e import AGENCY, assert_replay_equals, exchange, stored, wait_caught_up
from test_hub_failover import assert_once_without_gap, eventually, metric, two_hubs

from exchange.contracts.identifiers import uscc_check_char
from exchange.demos.sample import TABLES, SampleAgency
from exchange.transport.rpc.health import http_answers
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

DEADLINE = 180  # seconds: a safety net for a busy machine, not a timing assertion
CALL_TIMEOUT = 60
AGENCY_B = "913100001MA1FD000"
AGENCY_B += uscc_check_char(AGENCY_B)


def start_hub(launch, name: str, config: dict | None = None):
    """A hub with an audit log of its own (the hubs of a test share a directory)."""
    return launch.hub(name=name, config={"audit": {"path": str(launch.directory / f"audit-{name}.log")},
                                         **(config or {})})


def district(launch, name: str, city):
    """A district hub forwarding every agency of its store to ``city`` (plain gRPC on loopback)."""
    upstream = {"address": city.grpc_address, "insecure": True, "reconnect_max": 0.5, "batch_size": 50}
    return start_hub(launch, name, {"upstream": upstream})


def positions(hub, agency: str) -> pb.Position:
    with grpc.insecure_channel(hub.grpc_address) as channel:
        return pb_grpc.ExchangeStub(channel).GetPosition(pb.PositionRequest(agency=agency), timeout=CALL_TIMEOUT)


def wait_forwarded(district_hub, city, agency: str) -> None:
    """Until the city holds the district's whole log of ``agency`` (its position is the district's latest id)."""
    def forwarded() -> bool:
        try:
            return positions(city, agency).position == positions(district_hub, agency).hub_position > 0
        except grpc.RpcError:
            return False
    eventually(forwarded, f"the city hub holds the log of {agency} that {district_hub.name} holds", DEADLINE)


def keep_changing(sample: SampleAgency, stop: threading.Event) -> None:
    """Insert, update and delete rows of ``sample`` until ``stop`` is set."""
    while not stop.is_set():
        sample.run(50, per_transaction=5)


def grows(hub, agency: str, what: str) -> None:
    """Until ``hub`` stores more of ``agency``'s log than it holds now."""
    held = positions(hub, agency).position
    eventually(lambda: positions(hub, agency).position > held, what)


def test_district_hubs_forward_every_event_once_through_kill_9_of_a_district_and_of_the_city(launch, tmp_path):
    city = start_hub(launch, "city")
    districts = [district(launch, "district_a", city), district(launch, "district_b", city)]
    samples, nodes = [], []
    for agency, at in ((AGENCY, districts[0]), (AGENCY_B, districts[1])):
        sample = SampleAgency(str(tmp_path / f"{agency}.db"))
        sample.create(persons=20, legal_persons=10, licences=10)
        samples.append(sample)
        nodes.append(launch.node(at.grpc_address, Path(sample.path), TABLES, name=f"node_{agency}", agency=agency,
                                 config={"hub": {"batch_size": 50}}))
    stop = threading.Event()
    workloads = [threading.Thread(target=keep_changing, args=(s, stop)) for s in samples]
    for w in workloads:
        w.start()
    try:
        grows(city, AGENCY, "district a forwards part of the workload")
        districts[0] = launch.restart(districts[0])  # kill -9 mid-stream, then start again
        grows(city, AGENCY, "district a forwards again after its restart")
        grows(city, AGENCY_B, "district b forwards")
        city.kill()  # kill -9 mid-stream
        killed = time.monotonic()
        eventually(lambda: all(metric(d, "exchange_hub_upstream_connected", agency=a) == 0
                               for d, a in zip(districts, (AGENCY, AGENCY_B))), "the districts notice the city is down")
        for d, a in zip(districts, (AGENCY, AGENCY_B)):  # they keep serving their nodes meanwhile
            grows(d, a, f"{d.name} stores its node's events while the city hub is down")
    finally:
        stop.set()
        for w in workloads:
            w.join()
    for node in nodes:
        wait_caught_up(node, DEADLINE)
    city = launch.restart(city)
    restarted = time.monotonic()
    for district_hub, agency, node in zip(districts, (AGENCY, AGENCY_B), nodes):
        wait_forwarded(district_hub, city, agency)
        at_city = stored(city.config["store"]["url"], agency)
        assert at_city == stored(district_hub.config["store"]["url"], agency), f"{agency}: city and district differ"
        assert at_city == stored(node.config["store"]["url"], agency), f"{agency}: city and node differ"
        assert_once_without_gap(at_city)
        eventually(lambda: metric(district_hub, "exchange_hub_upstream_backlog_events", agency=agency) == 0
                   and metric(district_hub, "exchange_hub_upstream_connected", agency=agency) == 1,
                   f"{district_hub.name} shows {agency} caught up with the city hub")
    caught_up = time.monotonic() - restarted
    assert_replay_equals(city.config["store"]["url"], Path(samples[0].path), tmp_path, "from-city")
    print(f"\nfederation: city hub down {restarted - killed:.1f} s; both districts' logs complete at the city "
          f"{caught_up:.1f} s after its restart")


def test_a_consumer_at_the_city_receives_the_entitled_resource_of_an_agency_in_a_district(launch, tmp_path, free_port):
    city = start_hub(launch, "city", {"bundles": {"ack_key": str(tmp_path / "hub.key")}})
    publish_catalog(city.config["store"]["url"])  # the catalog entry and the share decision live at the city hub
    district_hub = district(launch, "district_a", city)
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=30, legal_persons=15, licences=20)
    node = launch.node(district_hub.grpc_address, sample.path, ["persons", "legal_persons", "licences"],
                       config={"source": {"not_shared": ["persons"]}})
    approve_licences(city)
    config = consumer_config(tmp_path, city, free_port)
    metrics_url = f"http://127.0.0.1:{config['metrics']['port']}/metrics"
    consumer = launch.start(["node", "subscribe"], config, name="consumer", ready=lambda: http_answers(metrics_url))
    sample.run(300, per_transaction=10)
    wait_caught_up(node, DEADLINE)
    wait_forwarded(district_hub, city, AGENCY)
    wait_replica_equals(Path(sample.path), tmp_path / "replica.db", consumer, DEADLINE)


def hello(address: str, tls: dict, agency: str) -> pb.PublishResponse | grpc.RpcError:
    """Open a publish stream for ``agency`` with the certificate in ``tls``: the first answer, or the refusal."""
    with client(address, tls) as channel:
        try:
            request = pb.PublishRequest(hello=pb.Hello(agency=agency, node_version="test"))
            return next(pb_grpc.ExchangeStub(channel).Publish(iter([request]), timeout=CALL_TIMEOUT))
        except grpc.RpcError as e:
            return e


def test_the_city_hub_takes_an_agency_only_from_the_district_hub_listed_for_it(launch, tmp_path):
    pki = PKI(tmp_path)
    city = start_hub(launch, "city", {"tls": pki.hub_tls("city"), "federation": {"downstream": {"district-a": [AGENCY]}}})
    listed, unlisted = pki.issue("hub", "district-a"), pki.issue("hub", "district-b")
    assert isinstance(hello(city.grpc_address, listed, AGENCY), pb.PublishResponse)
    for tls, agency, hub_name in ((listed, AGENCY_B, "district-a"), (unlisted, AGENCY, "district-b")):
        refused = hello(city.grpc_address, tls, agency)
        assert isinstance(refused, grpc.RpcError) and refused.code() == grpc.StatusCode.PERMISSION_DENIED, refused
        assert f"hub {hub_name} may not publish agency {agency}" in refused.details()
    # A district hub forwards over mutual TLS with its own certificate; its node's log arrives whole.
    district_hub = start_hub(launch, "district_a", {"upstream": {"address": city.grpc_address, "reconnect_max": 0.5,
                                                           **tls_settings(listed)}})
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=10, legal_persons=5, licences=5)
    node = launch.node(district_hub.grpc_address, Path(sample.path), TABLES)
    wait_caught_up(node, DEADLINE)
    expected = stored(district_hub.config["store"]["url"], AGENCY)
    eventually(lambda: metric(district_hub, "exchange_hub_upstream_backlog_events", agency=AGENCY) == 0
               and metric(district_hub, "exchange_hub_upstream_position", agency=AGENCY) == len(expected),
               "the city hub acknowledges the district's whole log")
    assert stored(city.config["store"]["url"], AGENCY) == expected
    assert metric(district_hub, "exchange_hub_upstream_connected", agency=AGENCY) == 1
    status_url = f"http://127.0.0.1:{district_hub.config['metrics']['port']}/status.json"
    with urllib.request.urlopen(status_url, timeout=CALL_TIMEOUT) as response:
        row = json.load(response)["agencies"][0]
    assert (row["agency"], row["upstream_connected"], row["upstream_backlog_events"]) == (AGENCY, True, 0)
    audited = [json.loads(line) for line in (tmp_path / "audit-city.log").read_text().splitlines()]
    assert any(e["action"] == "publisher.connected" and e["details"].get("hub") == "district-a" for e in audited)
    # The agency's node publishing to the city hub directly as well is refused by the position checks.
    with client(city.grpc_address, pki.issue("agency", AGENCY)) as channel:
        requests = [pb.PublishRequest(hello=pb.Hello(agency=AGENCY, node_version="test")),
                    pb.PublishRequest(batch=pb.EventBatch(after=0, events=events(3)))]
        try:
            answers = list(pb_grpc.ExchangeStub(channel).Publish(iter(requests), timeout=CALL_TIMEOUT))
        except grpc.RpcError as e:
            answers = [e]
    assert isinstance(answers[-1], grpc.RpcError), answers
    assert answers[-1].code() == grpc.StatusCode.FAILED_PRECONDITION and "but not record" in answers[-1].details()
    assert stored(city.config["store"]["url"], AGENCY) == expected


def test_a_district_hub_presenting_an_agency_certificate_upstream_does_not_start(tmp_path, free_port):
    pki = PKI(tmp_path)
    path = tmp_path / "district.toml"
    path.write_text(to_toml({
        "store": {"url": f"sqlite:///{tmp_path / 'district.db'}"},
        "listen": {"address": f"127.0.0.1:{free_port()}", "insecure": True}, "metrics": {"port": 0},
        "upstream": {"address": f"127.0.0.1:{free_port()}", **tls_settings(pki.issue("agency", AGENCY))}}))
    result = exchange("hub", "run", "--config", str(path), check=False)
    assert result.returncode == 2, result.stderr
    assert f"the certificate is agency {AGENCY}'s, not a hub's" in result.stderr


def test_a_district_hub_moves_to_the_other_city_hub_when_the_one_in_use_is_killed(launch, postgres, tmp_path):
    city_a, city_b = two_hubs(launch, postgres, tmp_path, "federation_failover")
    upstream = {"addresses": [city_a.grpc_address, city_b.grpc_address], "insecure": True, "reconnect_max": 0.5,
                "batch_size": 50}
    district_hub = start_hub(launch, "district_a", {"upstream": upstream})
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=20, legal_persons=10, licences=10)
    node = launch.node(district_hub.grpc_address, Path(sample.path), TABLES, config={"hub": {"batch_size": 50}})
    stop = threading.Event()
    workload = threading.Thread(target=keep_changing, args=(sample, stop))
    workload.start()
    try:
        grows(city_a, AGENCY, "the district forwards to city hub a")
        city_a.kill()  # kill -9 mid-stream
        grows(city_b, AGENCY, "the district forwards to city hub b")
    finally:
        stop.set()
        workload.join()
    wait_caught_up(node, DEADLINE)
    wait_forwarded(district_hub, city_b, AGENCY)
    assert metric(district_hub, "exchange_hub_upstream_failovers_total") >= 1
    at_city = stored(city_b.config["store"]["url"], AGENCY)
    assert at_city == stored(district_hub.config["store"]["url"], AGENCY)
    assert_once_without_gap(at_city)
