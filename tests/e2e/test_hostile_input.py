"""Hostile input to a live TLS hub: each attempt is refused with a clear
error, and everything the hub already stored stays exactly as it was.

A real node (agency A, over mutual TLS) has shipped its sample database to
the hub before the attacks begin; after each one the hub must still run and
hold exactly the node's events.
"""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest
from support.pki import PKI, client, events, get_position, publish, subscribe_first, tls_settings
from test_exchange_e2e import AGENCY, assert_exactly_once, store_url, wait_caught_up

from exchange.demos.sample import TABLES, SampleAgency
from exchange.store import EventStore
from exchange.tools.ca import CAError
from exchange.transport.wire import to_wire
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

MAX_MESSAGE_BYTES = 256 * 1024
INT64_MAX = 2**63 - 1


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def cert(pki) -> dict:
    return pki.issue("agency", AGENCY)


@pytest.fixture(scope="module")
def exchange_pair(module_launch, pki, cert, tmp_path_factory):
    """A TLS hub with a small message limit, and a node that has shipped its sample database to it."""
    hub = module_launch.hub("hostile-hub", config={"tls": pki.hub_tls(),
                                                   "listen": {"max_message_bytes": MAX_MESSAGE_BYTES}})
    sample = SampleAgency(str(tmp_path_factory.mktemp("agency") / "agency.db"))
    sample.create(persons=40, legal_persons=20, licences=30)
    node = module_launch.node(hub.grpc_address, Path(sample.path), TABLES, name="hostile-node",
                              config={"tls": tls_settings(cert)})
    wait_caught_up(node)
    return hub, node


@pytest.fixture
def channel(exchange_pair, cert):
    hub, node = exchange_pair
    with client(hub.grpc_address, cert) as channel:
        yield channel
    assert hub.running, hub.log()[-3000:]
    assert_exactly_once(node, hub)  # nothing already stored was lost, changed or duplicated


def _position(channel) -> int:
    return get_position(channel, AGENCY).position


def test_a_replayed_batch_changes_nothing(exchange_pair, channel):
    hub, node = exchange_pair
    store = EventStore(store_url(node), create=False)
    try:
        shipped = store.node_recorder(AGENCY).read(0, 50)
    finally:
        store.close()
    before = get_position(channel, AGENCY)
    answers = publish(channel, AGENCY, [to_wire(shipped, after=0), to_wire(shipped[10:], after=shipped[9].id)])
    assert [a.stored for a in answers[1:]] == [0, 0]
    assert get_position(channel, AGENCY) == before


@pytest.mark.parametrize("payload", [b"\xff\xff\xff\xff", b"\x0a\x05\x0a\x03abc\x12", b"\x12\xff\xff\xff\xff\x0f"],
                         ids=["garbage", "truncated hello", "huge length prefix"])
def test_malformed_protobuf_bytes_are_refused(channel, payload):
    raw_publish = channel.stream_stream("/exchange.v1.Exchange/Publish",
                                        response_deserializer=pb.PublishResponse.FromString)
    with pytest.raises(grpc.RpcError) as refused:
        list(raw_publish(iter([payload]), timeout=10))
    assert refused.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert "deserializ" in refused.value.details().lower() or "hello" in refused.value.details().lower()


def _bad_batches(position: int) -> dict[str, tuple[pb.EventBatch, grpc.StatusCode, str]]:
    """Batches that follow on from the hub's position (so they would be stored if accepted) but are wrong."""
    def batch(*edits, after=position, count=2):
        evs = events(count, start=after + 1)
        for index, field, value in edits:
            setattr(evs[index], field, value)
        return pb.EventBatch(after=after, events=evs)

    invalid, precondition = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    return {
        "originator id not a UUID": (batch((1, "originator_id", "not-a-uuid")), invalid, "is not a UUID"),
        "version 0": (batch((0, "originator_version", 0)), invalid, "originator_version must be >= 1"),
        "empty topic": (batch((1, "topic", "")), invalid, "topic is empty"),
        "ids not increasing": (batch((1, "notification_id", position + 1)), invalid, "ids must increase"),
        "id beyond 64-bit signed": (batch((1, "notification_id", 2**64 - 1)), invalid, "too large"),
        "version beyond 64-bit signed": (batch((1, "originator_version", INT64_MAX + 1)), invalid, "too large"),
        "version gap": (batch((1, "originator_version", 3)), precondition, "expected version 2, got 3"),
        "position gap": (batch(after=position + 5), precondition, f"stored only up to {position}"),
    }


@pytest.mark.parametrize("case", list(_bad_batches(0)))
def test_a_malformed_batch_is_refused_and_nothing_of_it_is_stored(channel, case):
    position = _position(channel)
    batch, code, message = _bad_batches(position)[case]
    with pytest.raises(grpc.RpcError) as refused:
        publish(channel, AGENCY, [batch])
    assert refused.value.code() == code
    assert message in refused.value.details()
    assert _position(channel) == position


def test_an_oversized_message_is_refused(channel):
    position = _position(channel)
    big = events(1, start=position + 1)
    big[0].state = b"x" * (MAX_MESSAGE_BYTES + 1)
    with pytest.raises(grpc.RpcError) as refused:
        publish(channel, AGENCY, [pb.EventBatch(after=position, events=big)])
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in refused.value.details()
    assert _position(channel) == position


def test_a_stream_not_starting_with_hello_is_refused(channel):
    position = _position(channel)
    requests = iter([pb.PublishRequest(batch=pb.EventBatch(after=position, events=events(1, start=position + 1)))])
    with pytest.raises(grpc.RpcError) as refused:
        list(pb_grpc.ExchangeStub(channel).Publish(requests, timeout=10))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must be a Hello" in refused.value.details()


@pytest.mark.parametrize("claimed", ["../../etc/passwd", "91310000OTHER00001", "x" * 100])
def test_an_unknown_or_invalid_agency_claim_is_refused(channel, claimed):
    for attempt in (lambda: publish(channel, claimed, []), lambda: subscribe_first(channel, AGENCY, consumer=claimed),
                    lambda: get_position(channel, claimed)):
        with pytest.raises(grpc.RpcError) as refused:
            attempt()
        assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert f"belongs to {AGENCY}" in refused.value.details()


def test_an_invalid_agency_id_on_an_insecure_hub_is_refused(hub):
    with client(hub.grpc_address, None) as channel, pytest.raises(grpc.RpcError) as refused:
        publish(channel, "../../etc/passwd", [])
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid agency id" in refused.value.details()


def test_the_ca_refuses_to_issue_a_certificate_for_an_invalid_agency_id(pki):
    with pytest.raises(CAError, match="invalid agency id"):
        pki.issue("agency", "A/../B")


def test_an_attacker_sized_field_is_repeated_as_an_excerpt_only(exchange_pair, channel):
    hub, _ = exchange_pair
    audit = Path(store_url(hub).removeprefix("sqlite:///")).with_name("audit.log")
    huge = "v" * 200_000
    before = audit.stat().st_size, len(hub.log())
    requests = [pb.PublishRequest(hello=pb.Hello(agency=AGENCY, node_version=huge)),
                pb.PublishRequest(batch=pb.EventBatch(after=_position(channel), events=[
                    pb.Event(notification_id=_position(channel) + 1, originator_id=huge, originator_version=1,
                             topic="t", state=b"{}")]))]
    with pytest.raises(grpc.RpcError) as refused:
        list(pb_grpc.ExchangeStub(channel).Publish(iter(requests), timeout=20))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "200000 characters" in refused.value.details() and len(refused.value.details()) < 2000
    assert audit.stat().st_size - before[0] < 8000, "the audit log repeats the whole field"
    assert len(hub.log()) - before[1] < 20000, "the hub's log repeats the whole field"


def test_a_subscription_after_the_largest_notification_id_is_refused(exchange_pair, channel):
    stream = pb_grpc.ExchangeStub(channel).Subscribe(pb.SubscribeRequest(agency=AGENCY, after=2**63), timeout=30)
    with pytest.raises(grpc.RpcError) as refused:
        next(stream)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "largest notification id" in refused.value.details()


def test_an_agency_id_differing_from_a_held_one_only_in_case_is_refused(exchange_pair, channel):
    with pytest.raises(grpc.RpcError) as refused:
        get_position(channel, AGENCY.lower())
    assert refused.value.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED)
