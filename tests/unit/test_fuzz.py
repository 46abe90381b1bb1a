"""Property-based fuzzing of what the hub decodes from others: wire events
and batches (exchange.transport.wire, hub ingest) and offline bundles
(exchange.transport.offline.bundles.read_bundle).

Properties: never a crash, only the module's own error type; nothing
accepted that breaks the rules; nothing already stored lost.  Examples are
bounded so the suite stays fast.
"""

from __future__ import annotations

import hashlib
import json
import struct
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import zstandard
from eventsourcing.persistence import Notification
from google.protobuf.message import DecodeError
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from exchange.store import EventStore, VersionGapError
from exchange.transport.offline import bundles
from exchange.transport.offline.bundles import (
    MAGIC,
    SIGNED_PREFIX,
    BundleError,
    generate_key,
    key_id,
    read_bundle,
    write_bundle,
)
from exchange.transport.wire import MAX_ID, MalformedEvent, from_wire, from_wire_all
from hub.ingest import Ingest, NotHeld, PositionGap
from protos.exchange.v1 import exchange_pb2 as pb

AGENCY = "91310000MB2F31887X"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
        return True
    except ValueError:
        return False


wire_events = st.builds(
    pb.Event,
    notification_id=st.integers(0, 2**64 - 1),
    originator_id=st.one_of(st.uuids().map(str), st.text(max_size=40)),
    originator_version=st.one_of(st.integers(0, 5), st.integers(0, 2**64 - 1)),
    topic=st.one_of(st.just("exchange.record:Created"), st.text(max_size=20)),
    state=st.binary(max_size=64),
)


@FUZZ
@given(wire_events)
def test_from_wire_accepts_exactly_the_valid_events(event):
    valid = (_is_uuid(event.originator_id) and 1 <= event.originator_version <= MAX_ID
             and event.notification_id <= MAX_ID and event.topic != "")
    try:
        stored = from_wire(event)
    except MalformedEvent as e:
        assert not valid, f"a valid event was refused: {e}"
        assert str(event.notification_id) in str(e)
        return
    assert valid, "an invalid event was accepted"
    assert (stored.originator_id, stored.originator_version, stored.topic, stored.state) == (
        uuid.UUID(event.originator_id), event.originator_version, event.topic, event.state)


@FUZZ
@given(st.lists(wire_events, max_size=6))
def test_a_batch_converts_as_its_events_do_one_by_one(events):
    """from_wire_all gives what from_wire gives each event (the id as its hex text), or refuses as it refuses the
    first malformed one."""
    try:
        expected = [from_wire(e) for e in events]
    except MalformedEvent as e:
        with pytest.raises(MalformedEvent) as refused:
            from_wire_all(events)
        assert str(refused.value) == str(e)
        return
    assert from_wire_all(events) == [replace(s, originator_id=s.originator_id.hex) for s in expected]


@FUZZ
@given(st.binary(max_size=200))
@example(b"\x0a\xff\xff\xff\xff\x0f")  # a length prefix far beyond the data
@example(b"\x1a\x02\x08")  # an event cut short
def test_wire_bytes_decode_or_fail_with_a_decode_error(data):
    try:
        batch = pb.EventBatch.FromString(data)
    except DecodeError:
        return
    for decoded in batch.events:
        try:
            from_wire(decoded)
        except MalformedEvent:
            pass


@pytest.fixture(scope="module")
def ingest():
    """A hub ingest on a real SQLite store holding a first batch of three events."""
    with tempfile.TemporaryDirectory() as tmp:
        store = EventStore(f"sqlite:///{tmp}/hub.db")
        hub = Ingest(store)
        record = uuid.uuid4()
        first = pb.EventBatch(after=0, events=[
            pb.Event(notification_id=i, originator_id=str(record), originator_version=i, topic="t", state=b"{}")
            for i in (1, 2, 3)])
        assert hub.ingest(AGENCY, first) == (3, 3)
        hub.first = first
        yield hub
        store.close()


BATCH_FAULTS = ["none", "none", "none", "notification id", "version", "topic", "originator id"]


def _batch_around(data, ingest) -> tuple[str, pb.EventBatch]:
    """A batch near the hub's position continuing its records' versions, with one kind of fault (or none)."""
    position = ingest.position(AGENCY)
    versions = {n.originator_id: n.originator_version for n in ingest.read(AGENCY, 0, 10_000)}
    # Draws are relative to the store's state, so Hypothesis can replay and shrink them.
    after = max(0, position + data.draw(st.integers(-3, 2), label="after - position"))
    records = list(versions) + [uuid.uuid4(), uuid.uuid4()]
    events = []
    for notification_id in range(after + 1, after + 1 + data.draw(st.integers(0, 4), label="count")):
        record = records[-1 - data.draw(st.integers(0, 5)) % len(records)]
        versions[record] = versions.get(record, 0) + 1
        events.append(pb.Event(notification_id=notification_id, originator_id=str(record),
                               originator_version=versions[record], topic="t", state=b"{}"))
    fault = data.draw(st.sampled_from(BATCH_FAULTS))
    if not events:
        fault = "none"
    if fault != "none":
        target = events[data.draw(st.integers(0, 3)) % len(events)]
        if fault == "notification id":
            target.notification_id = data.draw(st.integers(0, 2**64 - 1))
        elif fault == "version":
            target.originator_version = data.draw(st.integers(0, 2**64 - 1))
        elif fault == "topic":
            target.topic = ""
        else:
            target.originator_id = data.draw(st.text(max_size=10))
    return fault, pb.EventBatch(after=after, events=events)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_hostile_batches_are_refused_cleanly_and_lose_nothing(ingest, data):
    fault, batch = _batch_around(data, ingest)
    before = ingest.position(AGENCY)
    try:
        position, stored = ingest.ingest(AGENCY, batch)
    except (MalformedEvent, PositionGap, NotHeld, VersionGapError) as e:
        event(f"refused: {type(e).__name__}")
        assert not (fault == "none" and batch.after == before), f"a valid batch was refused: {e}"
        assert ingest.position(AGENCY) == before, "a refused batch moved the position"
    else:
        event("stored" if stored else "nothing new")
        assert position >= before and stored == len([e for e in batch.events if e.notification_id > before])
    log = ingest.read(AGENCY, 0, 10_000)
    assert [(n.originator_version, n.state) for n in log[:3]] == [(1, b"{}"), (2, b"{}"), (3, b"{}")]
    versions: dict = {}
    for n in log:  # whatever was accepted, every record's versions run 1, 2, 3 ... without a gap
        assert n.originator_version == versions.get(n.originator_id, 0) + 1
        versions[n.originator_id] = n.originator_version


# Bundles.

@pytest.fixture(scope="module")
def signer():
    with tempfile.TemporaryDirectory() as tmp:
        public = generate_key(Path(tmp) / "node.pem", Path(tmp) / "node.pub")
        yield bundles.load_private_key(Path(tmp) / "node.pem"), {AGENCY: public}


@pytest.fixture(scope="module")
def valid_bundle(signer):
    key, _ = signer
    record = uuid.uuid4()
    notifications = [Notification(id=i, originator_id=record, originator_version=i - 4, topic="t", state=b"{}")
                     for i in range(5, 9)]
    with tempfile.TemporaryDirectory() as tmp:
        yield write_bundle(tmp, AGENCY, notifications, 4, key).read_bytes()


def _read(data: bytes, trusted) -> tuple:
    with tempfile.NamedTemporaryFile(suffix=".bundle") as f:
        f.write(data)
        f.flush()
        return read_bundle(f.name, trusted)


mutations = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10_000), st.integers(1, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 10_000), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.integers(0, 255)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=st.lists(mutations, min_size=1, max_size=3))
def test_any_change_to_a_signed_bundle_is_refused_with_a_bundle_error(valid_bundle, signer, changes):
    data = bytearray(valid_bundle)
    for kind, at, value in changes:
        at %= len(data) + 1
        if kind == "flip" and at < len(data):
            data[at] ^= value
        elif kind == "truncate":
            del data[at:]
        elif kind == "insert":
            data[at:at] = bytes([value])
    if bytes(data) == valid_bundle:
        _read(bytes(data), signer[1])
        return
    with pytest.raises(BundleError):
        _read(bytes(data), signer[1])


manifest_values = st.one_of(st.none(), st.booleans(), st.integers(-2, 2**70), st.text(max_size=20),
                            st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


BUNDLE_FAULTS = ["none", "none", "manifest fields", "manifest fields", "manifest bytes", "content bytes",
                 "batch bytes", "event ids"]


@st.composite
def signed_bundles(draw, key, trusted):
    """Bundles signed by the trusted key (so parsing goes past the signature): a manifest that
    matches its content, then one kind of fault (or none): manifest fields changed or dropped,
    manifest, compressed content or batch replaced by arbitrary bytes, or event ids out of order."""
    fault = draw(st.sampled_from(BUNDLE_FAULTS))
    after = draw(st.integers(0, 12))
    ids = sorted(set(draw(st.lists(st.integers(after + 1, after + 20), min_size=1, max_size=5))))
    if fault == "event ids":
        ids = draw(st.lists(st.integers(0, 14), max_size=5))
    raw_content = pb.EventBatch(after=after, events=[
        pb.Event(notification_id=i, originator_id=str(uuid.uuid4()), originator_version=1, topic="t")
        for i in ids]).SerializeToString()
    if fault == "batch bytes":
        raw_content = draw(st.binary(max_size=100))
    content = zstandard.ZstdCompressor().compress(raw_content)
    if fault == "content bytes":
        content = draw(st.binary(max_size=60))
    fields = {"format": 1, "agency": AGENCY, "first": ids[0] if ids else 0, "last": ids[-1] if ids else 0,
              "after": after, "events": len(ids), "content_sha256": hashlib.sha256(content).hexdigest(),
              "created": "now", "key_id": key_id(trusted[AGENCY])}
    if fault == "manifest fields":
        for name in draw(st.lists(st.sampled_from(sorted(fields) + ["extra"]), min_size=1, max_size=2, unique=True)):
            if draw(st.booleans()):
                fields[name] = draw(manifest_values)
            else:
                fields.pop(name, None)
    manifest = json.dumps(fields).encode()
    if fault == "manifest bytes":
        manifest = draw(st.binary(max_size=40))
    signature = key.sign(SIGNED_PREFIX + manifest)
    return fault, b"".join([MAGIC, struct.pack(">I", len(manifest)), manifest, struct.pack(">Q", len(content)),
                            content, struct.pack(">H", len(signature)), signature])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_a_signed_but_malformed_bundle_is_refused_and_an_accepted_one_is_consistent(signer, data):
    key, trusted = signer
    fault, bundle = data.draw(signed_bundles(key, trusted))
    try:
        manifest, batch = _read(bundle, trusted)
    except BundleError as e:
        event(f"refused: {e.reason}")
        assert fault != "none", f"a valid bundle was refused: {e}"
        assert e.reason in ("truncated", "malformed", "version", "unknown_signer", "wrong_agency", "signature",
                            "hash", "content")
        return
    event("accepted")
    ids = [e.notification_id for e in batch.events]
    assert manifest.agency == AGENCY and batch.after == manifest.after and len(ids) == manifest.events > 0
    assert (ids[0], ids[-1]) == (manifest.first, manifest.last)
    assert all(b > a for a, b in zip([manifest.after, *ids], ids))


@pytest.mark.parametrize("manifest, content", [
    (b"[" * 100_000, b""),  # nesting deeper than the JSON parser's recursion limit
    (None, bytes.fromhex("28b52ffd") + bytes([0b11100000]) + struct.pack("<Q", 2**40) + b"\x01\x00\x00"),
], ids=["deeply nested manifest", "content declaring a terabyte"])
def test_resource_bombs_in_a_signed_bundle_are_refused(signer, manifest, content):
    key, trusted = signer
    if manifest is None:
        manifest = json.dumps({"format": 1, "agency": AGENCY, "first": 1, "last": 1, "after": 0, "events": 1,
                               "content_sha256": hashlib.sha256(content).hexdigest(),
                               "created": "now", "key_id": key_id(trusted[AGENCY])}).encode()
    signature = key.sign(SIGNED_PREFIX + manifest)
    bundle = b"".join([MAGIC, struct.pack(">I", len(manifest)), manifest, struct.pack(">Q", len(content)), content,
                       struct.pack(">H", len(signature)), signature])
    with pytest.raises(BundleError):
        _read(bundle, trusted)


@pytest.mark.parametrize("field, value", [("format", True), ("first", True), ("events", False), ("created", 5),
                                          ("created", None), ("key_id", ["k"])])
def test_a_signed_manifest_with_a_value_of_the_wrong_json_type_is_refused(signer, field, value):
    key, trusted = signer
    content = zstandard.ZstdCompressor().compress(pb.EventBatch(after=0, events=[pb.Event(
        notification_id=1, originator_id=str(uuid.uuid4()), originator_version=1, topic="t")]).SerializeToString())
    fields = {"format": 1, "agency": AGENCY, "first": 1, "last": 1, "after": 0, "events": 1,
              "content_sha256": hashlib.sha256(content).hexdigest(), "created": "now", "key_id": key_id(trusted[AGENCY])}
    fields[field] = value
    manifest = json.dumps(fields).encode()
    signature = key.sign(SIGNED_PREFIX + manifest)
    bundle = b"".join([MAGIC, struct.pack(">I", len(manifest)), manifest, struct.pack(">Q", len(content)), content,
                       struct.pack(">H", len(signature)), signature])
    with pytest.raises(BundleError) as refused:
        _read(bundle, trusted)
    assert refused.value.reason in ("malformed", "version")


@pytest.mark.parametrize("state", [b'{"resource": [1]}', b"[" * 5000, b'{"resource": {"a": 1}}', b"7"])
def test_the_not_shared_guard_passes_over_states_that_name_no_resource(state):
    from hub.sharing.guard import NotSharedGuard

    class NoTerms:
        def terms(self, agency, resource):
            return None

    events = [pb.Event(notification_id=1, originator_id=str(uuid.uuid4()), originator_version=1, topic="t", state=state),
              pb.Event(notification_id=2, originator_id=str(uuid.uuid4()), originator_version=1, topic="t",
                       state=b'{"resource": "t"}')]
    NotSharedGuard(NoTerms())(AGENCY, events)  # no TypeError, RecursionError or comparison of unlike types
