"""The hub as a real process over real gRPC: exactly-once ingest, refusals,
restart after kill -9, subscriptions, health, reflection and metrics."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

CALL_TIMEOUT = 30  # a safety net against hangs, not a timing assertion
NULL_COMMIT = b'{"commit_time":null}'


def event(notification_id, record, version, state=NULL_COMMIT):
    topic = "exchange.record:Created" if version == 1 else "exchange.record:Updated"
    return pb.Event(notification_id=notification_id, originator_id=str(record), originator_version=version,
                    topic=topic, state=state)


def batch(after, *events):
    return pb.EventBatch(after=after, events=events)


def publish(stub, agency, *batches):
    """Hello then ``batches`` on one stream; all answers (raises RpcError on refusal)."""
    requests = [pb.PublishRequest(hello=pb.Hello(agency=agency, node_version="test"))]
    requests += [pb.PublishRequest(batch=b) for b in batches]
    return list(stub.Publish(iter(requests), timeout=CALL_TIMEOUT))


def positions(stub, agency):
    answer = stub.GetPosition(pb.PositionRequest(agency=agency), timeout=CALL_TIMEOUT)
    return answer.position, answer.hub_position


def subscribe(stub, agency, after=0, max_batch=0):
    return stub.Subscribe(pb.SubscribeRequest(agency=agency, after=after, max_batch=max_batch),
                          timeout=CALL_TIMEOUT)


def take(call, count):
    """Batches from a subscription until ``count`` events have arrived."""
    batches, seen = [], 0
    for received in call:
        batches.append(received)
        seen += len(received.events)
        if seen >= count:
            return batches
    raise AssertionError(f"subscription ended after {seen} of {count} events")


def refusal(stub, agency, *batches):
    with pytest.raises(grpc.RpcError) as caught:
        publish(stub, agency, *batches)
    return caught.value


def metric_value(hub, name, **labels):
    url = f"http://127.0.0.1:{hub.config['metrics']['port']}/metrics"
    with urllib.request.urlopen(url, timeout=CALL_TIMEOUT) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def eventually(check):
    deadline = time.monotonic() + CALL_TIMEOUT  # a safety net, not a timing assertion
    while not check():
        assert time.monotonic() < deadline, "condition never became true"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def shared_hub(module_launch):
    return module_launch.hub()


@pytest.fixture(scope="module")
def channel(shared_hub):
    with grpc.insecure_channel(shared_hub.grpc_address) as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel):
    return pb_grpc.ExchangeStub(channel)


def test_hello_answers_position_zero(stub):
    assert publish(stub, "hello_agency") == [pb.PublishResponse(position=0)]
    assert positions(stub, "hello_agency") == (0, 0)


def test_batch_is_stored_and_acknowledged_with_its_last_notification_id(stub):
    a, b = uuid.uuid4(), uuid.uuid4()
    answers = publish(stub, "store_agency", batch(0, event(1, a, 1), event(2, b, 1), event(5, a, 2)))
    assert answers == [pb.PublishResponse(position=0), pb.PublishResponse(position=5, stored=3)]
    assert positions(stub, "store_agency") == (5, 3)


def test_resent_batch_changes_nothing(stub):
    a = uuid.uuid4()
    sent = batch(0, event(1, a, 1), event(2, a, 2), event(3, a, 3))
    publish(stub, "resend_agency", sent)
    answers = publish(stub, "resend_agency", sent, sent)
    assert answers == [pb.PublishResponse(position=3), pb.PublishResponse(position=3, stored=0),
                       pb.PublishResponse(position=3, stored=0)]
    assert positions(stub, "resend_agency") == (3, 3)
    (received,) = take(subscribe(stub, "resend_agency"), 3)
    assert [(e.notification_id, e.originator_version) for e in received.events] == [(1, 1), (2, 2), (3, 3)]


def test_overlapping_batch_stores_only_the_new_part(stub):
    a, b = uuid.uuid4(), uuid.uuid4()
    publish(stub, "overlap_agency", batch(0, event(1, a, 1), event(2, a, 2)))
    answers = publish(stub, "overlap_agency", batch(1, event(2, a, 2), event(3, a, 3), event(4, b, 1)))
    assert answers[-1] == pb.PublishResponse(position=4, stored=2)
    assert positions(stub, "overlap_agency") == (4, 4)


def test_batch_starting_beyond_the_position_is_refused(stub):
    a = uuid.uuid4()
    publish(stub, "gap_agency", batch(0, event(10, a, 1), event(30, a, 2)))
    error = refusal(stub, "gap_agency", batch(45, event(46, a, 3)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "45" in error.details() and "30" in error.details()
    assert positions(stub, "gap_agency") == (30, 2)


def test_version_gaps_are_refused_and_nothing_of_the_batch_is_stored(stub):
    a, b, c = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    publish(stub, "version_agency", batch(0, event(1, a, 1)))

    error = refusal(stub, "version_agency", batch(1, event(2, a, 3)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(a) in error.details() and "expected version 2, got 3" in error.details()

    error = refusal(stub, "version_agency", batch(1, event(2, c, 1), event(3, b, 2)))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert str(b) in error.details() and "expected version 1, got 2" in error.details()
    assert positions(stub, "version_agency") == (1, 1)

    answers = publish(stub, "version_agency", batch(1, event(2, a, 2), event(3, c, 1)))
    assert answers[-1] == pb.PublishResponse(position=3, stored=2)


def test_publish_without_hello_is_refused(stub):
    requests = [pb.PublishRequest(batch=batch(0, event(1, uuid.uuid4(), 1)))]
    with pytest.raises(grpc.RpcError) as caught:
        list(stub.Publish(iter(requests), timeout=CALL_TIMEOUT))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Hello" in caught.value.details()


def test_bad_agency_ids_are_refused(stub):
    error = refusal(stub, "no such agency!")
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no such agency!" in error.details()
    for call in (lambda: positions(stub, "bad-agency"), lambda: take(subscribe(stub, "bad-agency"), 1)):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_malformed_events_are_refused(stub):
    bad_id = pb.Event(notification_id=1, originator_id="not-a-uuid", originator_version=1,
                      topic="exchange.record:Created", state=NULL_COMMIT)
    error = refusal(stub, "malformed_agency", batch(0, bad_id))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not-a-uuid" in error.details()

    a = uuid.uuid4()
    error = refusal(stub, "malformed_agency", batch(0, event(2, a, 1), event(2, a, 2)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert positions(stub, "malformed_agency") == (0, 0)


def test_subscribe_from_zero_returns_everything_in_order(stub):
    records = [uuid.uuid4() for _ in range(5)]
    publish(stub, "order_agency", batch(0, *(event(i + 1, r, 1) for i, r in enumerate(records))))
    batches = take(subscribe(stub, "order_agency", max_batch=2), 5)
    assert [len(b.events) for b in batches] == [2, 2, 1]
    assert [b.after for b in batches] == [0, 2, 4]
    assert [uuid.UUID(e.originator_id) for b in batches for e in b.events] == records
    assert [e.notification_id for b in batches for e in b.events] == [1, 2, 3, 4, 5]


def test_caught_up_subscriber_receives_later_batches(stub):
    a = uuid.uuid4()
    publish(stub, "live_agency", batch(0, event(1, a, 1)))
    received = iter(subscribe(stub, "live_agency"))
    assert next(received).events[0].originator_version == 1
    publish(stub, "live_agency", batch(1, event(7, a, 2)))
    later = next(received)
    assert later.after == 1
    assert [(e.notification_id, e.originator_version) for e in later.events] == [(2, 2)]


def test_subscriber_to_an_agency_without_events_yet_receives_them(stub, shared_hub):
    received = iter(subscribe(stub, "new_agency"))
    # Once the hub holds the subscription, the events below are new to it.
    eventually(lambda: metric_value(shared_hub, "exchange_hub_subscribers_connected", agency="new_agency") == 1)
    publish(stub, "new_agency", batch(0, event(1, uuid.uuid4(), 1)))
    assert [e.notification_id for e in next(received).events] == [1]


def test_position_survives_kill_9(launch):
    hub = launch.hub()
    a = uuid.uuid4()
    sent = batch(0, event(1, a, 1), event(2, a, 2))
    with grpc.insecure_channel(hub.grpc_address) as channel:
        assert publish(pb_grpc.ExchangeStub(channel), "crash_agency", sent)[-1].position == 2
    hub.kill()

    hub = launch.restart(hub)
    assert metric_value(hub, "exchange_hub_position", agency="crash_agency") == 2
    with grpc.insecure_channel(hub.grpc_address) as channel:
        stub = pb_grpc.ExchangeStub(channel)
        assert positions(stub, "crash_agency") == (2, 2)
        answers = publish(stub, "crash_agency", sent, batch(2, event(3, a, 3)))
        assert answers == [pb.PublishResponse(position=2), pb.PublishResponse(position=2, stored=0),
                           pb.PublishResponse(position=3, stored=1)]
    assert hub.terminate() == 0


def test_health_says_serving(channel):
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", "exchange.v1.Exchange"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=CALL_TIMEOUT)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_exchange_service(channel):
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=CALL_TIMEOUT)
    names = {s.name for s in answer.list_services_response.service}
    assert {"exchange.v1.Exchange", "grpc.health.v1.Health"} <= names


def test_metrics_show_stored_events_and_commit_time(stub, shared_hub):
    a = uuid.uuid4()
    committed = b'{"commit_time":{"_type_":"datetime_iso","_data_":"2024-05-01T08:00:00+00:00"}}'
    publish(stub, "metrics_agency", batch(0, event(1, a, 1), event(2, a, 2, state=committed)))
    publish(stub, "metrics_agency", batch(0, event(1, a, 1)))
    assert metric_value(shared_hub, "exchange_hub_events_stored_total", agency="metrics_agency") == 2
    assert metric_value(shared_hub, "exchange_hub_events_duplicate_total", agency="metrics_agency") == 1
    assert metric_value(shared_hub, "exchange_hub_position", agency="metrics_agency") == 2
    assert metric_value(shared_hub, "exchange_hub_last_commit_timestamp_seconds", agency="metrics_agency") == 1714550400
    assert metric_value(shared_hub, "exchange_hub_batches_total", agency="metrics_agency", result="duplicate") == 1


def run_hub(tmp_path: Path, toml: str) -> subprocess.CompletedProcess:
    config = tmp_path / "hub.toml"
    config.write_text(toml)
    command = Path(sys.executable).with_name("exchange")
    return subprocess.run([str(command), "hub", "run", "--config", str(config)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=CALL_TIMEOUT)


def test_bad_store_url_exits_2_with_a_clear_message(tmp_path):
    result = run_hub(tmp_path, '[store]\nurl = "postgres://nowhere/hub"\n[metrics]\nport = 0\n')
    assert result.returncode == 2
    assert "postgres://nowhere/hub" in result.stderr


def test_address_in_use_exits_2_with_a_clear_message(tmp_path, shared_hub):
    address = shared_hub.grpc_address
    result = run_hub(tmp_path, f'[store]\nurl = "sqlite:///other.db"\n[listen]\naddress = "{address}"\ninsecure = true\n'
                               '[metrics]\nport = 0\n')
    assert result.returncode == 2
    assert address in result.stderr


def test_calls_beyond_listen_max_streams_are_refused_until_a_stream_ends(launch):
    hub = launch.hub(config={"listen": {"max_streams": 4}})
    with grpc.insecure_channel(hub.grpc_address) as channel:
        stub = pb_grpc.ExchangeStub(channel)
        # Six subscriptions that wait for events, each holding its call while it waits (timeout long enough
        # for a busy machine; cancelled below): four are served, two refused, whichever arrive last.
        streams = [stub.Subscribe(pb.SubscribeRequest(agency="quiet_agency"), timeout=600) for _ in range(6)]
        deadline = time.monotonic() + 180
        while sum(s.done() for s in streams) < 2:
            assert time.monotonic() < deadline, "no call beyond the fourth was refused"
            time.sleep(0.05)
        ended = [s for s in streams if s.done()]
        assert len(ended) == 2 and {s.code() for s in ended} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        with pytest.raises(grpc.RpcError) as refused:  # the four served ones still hold every call
            stub.GetPosition(pb.PositionRequest(agency="quiet_agency"), timeout=CALL_TIMEOUT)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        for stream in streams:
            stream.cancel()
        while True:  # the cancelled streams give their calls back
            try:
                assert positions(stub, "quiet_agency") == (0, 0)
                break
            except grpc.RpcError as e:
                assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and time.monotonic() < deadline, e
                time.sleep(0.05)
