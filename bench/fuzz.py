"""Hostile input at scale: generated inputs against a live hub's wire, offline
bundles and file drops, each outcome classified against the rules.

Starts a real hub (`exchange hub run`, plain gRPC on 127.0.0.1, a SQLite
store in a temp dir, a 256 KiB message limit), seeds it with a real node
shipping a small sample agency (agency 91310000MB2F31887X) and a published
conditional catalog entry of that agency, records what it holds, then sends
generated input, a fixed share of the total to each surface:

- wire.publish: Publish streams (hello + batches) mixing valid and invalid
  ids, versions, topics, states, gaps, overlaps, huge strings, agency claims;
  a model of each fuzz agency's position and record versions says what
  must be stored and what refused;
- wire.raw: raw and mutated protobuf bytes to every method of the Exchange,
  Catalog and Sharing services through generic calls;
- wire.subscribe, wire.position: Subscribe and GetPosition with random fields;
- catalog: SaveEntry/Submit/reviews/GetEntry/List/History/Report/Dcat;
- sharing: Request/Answer/Dispute/Decide/Revoke/RecordAgreement/List/Report
  (a model of each share request's status says which steps are allowed);
- bundle.read: read_bundle on mutated valid bundles (bit flips, truncation,
  appended/inserted bytes, manifest edits re-signed or not, content swaps);
- bundle.import: `exchange hub import DIR` beside the running hub on
  directories of mutated bundles (each process takes ~25 bundles);
- drop.csv/json/jsonl: drop files with random and adversarial content (deep
  nesting, huge numbers, NaN/Infinity, invalid UTF-8, duplicate object
  keys, missing keys, lone surrogates) through the file-drop source.

Outcomes: refused (a clear error: an expected gRPC status with a message,
BundleError, a refused drop file), accepted (checked: accepting an invalid
input is a *wrong acceptance*; refusing a valid one is counted as *wrongly
refused*), or crash (an exception that is not the module's own error,
INTERNAL/UNKNOWN status, a hang past a timeout, a hub process exit).  After
fuzzing, the hub must still run and answer health checks, the seeded
agency's stored events and its catalog entry must be unchanged.

    .venv/bin/python bench/fuzz.py [--inputs N] [--seed S] [--keep DIR] [--verbose]

(default 100000 inputs, seed 2016).  Prints one table (surface, inputs,
refused, accepted, wrongly accepted, wrongly refused, crashes, seconds),
then the first examples of each finding with a reproduction; exits 1 on any
crash or wrong acceptance.  Loopback only; every loop is bounded.
"""

from __future__ import annotations

import argparse
import base64
import copy
import csv
import hashlib
import io
import json
import logging
import math
import random
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402
from eventsourcing.persistence import Notification  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: E402

import adapters  # noqa: E402
from exchange.store import EventStore  # noqa: E402
from exchange.transport.offline import bundles  # noqa: E402
from exchange.transport.offline.bundles import (  # noqa: E402
    MAGIC,
    SIGNED_PREFIX,
    BundleError,
    generate_key,
    read_bundle,
    write_bundle,
)
from protos.exchange.v1 import catalog_pb2 as cpb  # noqa: E402
from protos.exchange.v1 import catalog_pb2_grpc as cpb_grpc  # noqa: E402
from protos.exchange.v1 import exchange_pb2 as pb  # noqa: E402
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc  # noqa: E402
from protos.exchange.v1 import sharing_pb2 as spb  # noqa: E402
from protos.exchange.v1 import sharing_pb2_grpc as spb_grpc  # noqa: E402

EXCHANGE = [sys.executable, "-m", "exchange"]
SEEDED = "91310000MB2F31887X"
SEEDED_USCC = "91310000MB2F31887X"  # a USCC with a valid check character (tests/e2e/test_catalog_e2e.py)
SEED_CODE = "101001/0001"
SEED_RESOURCE = "licences"
SEED_ITEMS = ["licence_no", "kind", "holder_uscc", "issued", "status"]
BUNDLE_AGENCY = "FUZZ_BUNDLES"
POOL = [f"FUZZ_P{i}" for i in range(5)]  # agencies the publish fuzzer models
MAX_MESSAGE_BYTES = 256 * 1024
MAX_ID = 2**63 - 1
AGENCY_RE = re.compile(r"^[A-Za-z0-9_]{1,64}\Z")


def wire_agency(claim: str) -> bool:
    """An agency id the hub's Exchange service takes: the id pattern, and not the seeded agency's id in other
    letter case (its log is held; SQLite table names ignore case, so the hub refuses such ids)."""
    return AGENCY_RE.match(claim) is not None and not (claim != SEEDED and claim.lower() == SEEDED.lower())
CALL_TIMEOUT = 30.0  # a call not answered by then is a hang
REFUSALS = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.NOT_FOUND, grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.OUT_OF_RANGE,
            grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.ABORTED,
            grpc.StatusCode.UNIMPLEMENTED}
SHARES = {  # surface: share of the total inputs (the slower surfaces get less)
    "wire.publish": 0.22, "wire.raw": 0.12, "wire.subscribe": 0.01, "wire.position": 0.05, "catalog": 0.07,
    "sharing": 0.05, "bundle.read": 0.39, "bundle.import": 0.015, "drop.csv": 0.025, "drop.json": 0.025,
    "drop.jsonl": 0.025,
}
EXAMPLES = 3  # examples kept per surface and kind of finding


# -- outcomes -----------------------------------------------------------------------------------

@dataclass
class Tally:
    surface: str
    inputs: int = 0
    refused: int = 0
    accepted: int = 0
    wrong: int = 0
    wrongly_refused: int = 0
    crashes: int = 0
    seconds: float = 0.0
    findings: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def note(self, kind: str, signature: str, example: str) -> None:
        key = f"{kind}: {signature}"
        self.counts[key] += 1
        if len(self.findings[key]) < EXAMPLES:
            self.findings[key].append(example)

    def refuse(self) -> None:
        self.refused += 1

    def accept(self) -> None:
        self.accepted += 1

    def wrongly_accepted(self, signature: str, example: str) -> None:
        self.accepted += 1
        self.wrong += 1
        self.note("WRONG ACCEPTANCE", signature, example)

    def wrongly_refused_(self, signature: str, example: str) -> None:
        self.refused += 1
        self.wrongly_refused += 1
        self.note("wrongly refused", signature, example)

    def crash(self, signature: str, example: str) -> None:
        self.crashes += 1
        self.note("CRASH", signature, example)


def short(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def msg_repr(message: Any, limit: int = 600) -> str:
    """A protobuf message as Python text, long fields cut."""
    def cut(v: Any) -> Any:
        if isinstance(v, (str, bytes)) and len(v) > 60:
            return v[:40] + (f"...<{len(v)} chars>" if isinstance(v, str) else f"...<{len(v)} bytes>".encode())
        return v
    fields = []
    for descriptor, value in message.ListFields():
        repeated = not isinstance(value, (str, bytes, int, float, bool)) and not hasattr(value, "ListFields")
        if descriptor.message_type is not None:
            if repeated:
                value = "[" + ", ".join(msg_repr(v, 200) for v in value[:4]) + (", ..." if len(value) > 4 else "") + "]"
            else:
                value = msg_repr(value, 300)
            fields.append(f"{descriptor.name}={value}")
        elif repeated:
            fields.append(f"{descriptor.name}={[cut(v) for v in list(value)[:5]]!r}")
        else:
            fields.append(f"{descriptor.name}={cut(value)!r}")
    text = f"{type(message).__name__}({', '.join(fields)})"
    return text if len(text) <= limit else text[:limit] + "...)"


def rpc_outcome(error: grpc.RpcError) -> tuple[str, str]:
    """('refused' | 'crash' | 'hang' | 'unavailable', signature) for a failed call."""
    code, details = error.code(), error.details() or ""
    if code in REFUSALS:
        return ("refused" if details.strip() else "crash"), f"{code.name} {'(no message)' if not details.strip() else ''}"
    if code == grpc.StatusCode.INTERNAL and "deserializ" in details.lower():
        # gRPC's own answer to bytes that are not the request message (tests/e2e/test_hostile_input.py expects it)
        return "refused", "INTERNAL deserialize"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "hang", f"no answer within {CALL_TIMEOUT:.0f}s"
    if code == grpc.StatusCode.UNAVAILABLE:
        return "unavailable", "UNAVAILABLE"
    return "crash", f"{code.name}: {signature_of(details)}"


def signature_of(details: str) -> str:
    """A short, input-independent form of an error message (digits and quoted parts blurred)."""
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", details)
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27,}", "<uuid>", text)
    text = re.sub(r"\d+", "N", text)
    return text[:140]


# -- random values ------------------------------------------------------------------------------

WEIRD_TEXT = ["", " ", "\x00", "../../etc/passwd", "'; DROP TABLE events; --", "\u202e\u0645\u0631\u062d\u0628\u0627",
              "😀" * 3, "\ufeff", "a\nb", "%s%n", "\t", "null", "None", "\U0010ffff", "中文名称"]


def rand_text(rng: random.Random, max_len: int = 30) -> str:
    roll = rng.random()
    if roll < 0.25:
        return rng.choice(WEIRD_TEXT)
    if roll < 0.5:
        return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz_0123456789") for _ in range(rng.randint(1, max_len)))
    if roll < 0.8:
        return "".join(chr(rng.choice([rng.randint(32, 126), rng.randint(0x80, 0x7FF), rng.randint(0x800, 0xD7FF),
                                       rng.randint(0xE000, 0xFFFD), rng.randint(0x10000, 0x10FFFF)]))
                       for _ in range(rng.randint(0, max_len)))
    return "".join(chr(rng.randint(0, 0x7F)) for _ in range(rng.randint(0, max_len)))


def huge_text(rng: random.Random) -> str:
    return rng.choice("xy中😀") * rng.choice([4001, 5000, 70_000, 200_000, 300_000])


def rand_agency_claim(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(["", " ", "A" * 65, "FUZZ P0", "FUZZ-P0", "../../etc/passwd", "événement", "91310000MB2F31887X\n",
                           "x;DROP TABLE t", "A" * 10_000, "\x00", "FUZZ_P0 ", "ＦＵＺＺ"])
    if roll < 0.6:
        return rand_text(rng, 70)
    return rng.choice(POOL)


def rand_uint(rng: random.Random) -> int:
    return rng.choice([0, 1, 2, 3, rng.randint(0, 100), rng.randint(0, 2**32), MAX_ID, MAX_ID + 1, 2**64 - 1,
                       rng.randint(0, 2**64 - 1)])


def mutate_bytes(rng: random.Random, data: bytes, rounds: int | None = None) -> bytes:
    out = bytearray(data)
    for _ in range(rounds or rng.randint(1, 3)):
        kind = rng.random()
        at = rng.randint(0, len(out))
        if kind < 0.4 and out:
            at = min(at, len(out) - 1)
            out[at] ^= 1 << rng.randint(0, 7)
        elif kind < 0.55 and out:
            at = min(at, len(out) - 1)
            out[at] = rng.randint(0, 255)
        elif kind < 0.7:
            del out[at:]
        elif kind < 0.85:
            out[at:at] = bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 8)))
        else:
            out += bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 64)))
    return bytes(out)


# -- the hub --------------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Hub:
    def __init__(self, directory: Path):
        self.dir = directory
        self.address = f"127.0.0.1:{free_port()}"
        self.store_url = f"sqlite:///{directory}/hub-store.db"
        self.bundle_key = directory / "bundles.pem"
        self.bundle_pub = directory / "bundles.pub"
        self.public_key = generate_key(self.bundle_key, self.bundle_pub)
        self.private_key = bundles.load_private_key(self.bundle_key)
        self.config = directory / "hub.toml"
        self.config.write_text(
            f'[store]\nurl = "{self.store_url}"\n'
            f'[listen]\naddress = "{self.address}"\ninsecure = true\nmax_message_bytes = {MAX_MESSAGE_BYTES}\n'
            f'[bundles]\ntrusted_keys = {{ {BUNDLE_AGENCY} = "{self.bundle_pub}" }}\n'
            "[metrics]\nport = 0\n[log]\nlevel = \"warning\"\nformat = \"text\"\n")
        self.log_path = directory / "hub.log"
        self.process: subprocess.Popen | None = None
        self.channel: grpc.Channel | None = None

    def start(self) -> None:
        self.process = subprocess.Popen([*EXCHANGE, "hub", "run", "--config", str(self.config)],
                                        stdout=open(self.log_path, "ab"), stderr=subprocess.STDOUT)
        self.channel = grpc.insecure_channel(self.address, options=[
            ("grpc.max_send_message_length", 64 << 20), ("grpc.max_receive_message_length", 64 << 20)])
        deadline = time.monotonic() + 90
        while not self.healthy(timeout=2):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the hub did not start:\n{self.log()[-3000:]}")
            time.sleep(0.2)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def healthy(self, timeout: float = 5) -> bool:
        try:
            answer = health_pb2_grpc.HealthStub(self.channel).Check(health_pb2.HealthCheckRequest(service=""),
                                                                     timeout=timeout)
            return answer.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
        if self.running():
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def stored(self, agency: str) -> list[tuple]:
        """The agency's log as the hub store holds it: (hub id, record, version, topic, state)."""
        store = EventStore(self.store_url, create=False)
        try:
            if agency not in store.agencies():
                return []
            out, after = [], 0
            for _ in range(10_000):  # bounded: 10 million events
                page = store.recorder(agency).read(after, 1000)
                if not page:
                    break
                out += [(n.id, str(n.originator_id), n.originator_version, n.topic, bytes(n.state)) for n in page]
                after = page[-1].id
            return out
        finally:
            store.close()

    def served(self, agency: str) -> list[tuple]:
        """The agency's log as the hub serves it (Subscribe), in the form of ``stored``: read over the wire
        while fuzzing, so that no second process opens the hub's store meanwhile."""
        target = self.position(agency).hub_position
        out: list[tuple] = []
        stub = pb_grpc.ExchangeStub(self.channel)
        for _ in range(100_000):  # bounded: 100 million events
            after = out[-1][0] if out else 0
            if after >= target:
                break
            stream = stub.Subscribe(pb.SubscribeRequest(agency=agency, after=after, max_batch=1000), timeout=CALL_TIMEOUT)
            try:
                batch = next(stream)
            finally:
                stream.cancel()
            out += [(e.notification_id, e.originator_id, e.originator_version, e.topic, e.state) for e in batch.events]
        return out

    def position(self, agency: str) -> pb.Position:
        return pb_grpc.ExchangeStub(self.channel).GetPosition(pb.PositionRequest(agency=agency), timeout=CALL_TIMEOUT)


def seed(hub: Hub, directory: Path) -> None:
    """A real node ships a small sample agency to the hub; the agency's catalog entry is published (conditional)."""
    from exchange.demos.sample import TABLES, SampleAgency

    sample = SampleAgency(str(directory / "agency.db"))
    sample.create(persons=30, legal_persons=15, licences=25)
    node_toml = directory / "node.toml"
    node_toml.write_text(
        f'agency = "{SEEDED}"\n'
        f'[source]\nurl = "sqlite:///{directory}/agency.db"\ntables = {json.dumps(TABLES)}\npoll_interval = 0.05\n'
        f'[store]\nurl = "sqlite:///{directory}/node-store.db"\n'
        f'[hub]\naddress = "{hub.address}"\ninsecure = true\n[metrics]\nport = 0\n')
    node = subprocess.Popen([*EXCHANGE, "node", "run", "--config", str(node_toml)],
                            stdout=open(directory / "node.log", "ab"), stderr=subprocess.STDOUT)
    try:
        deadline, last, stable_since = time.monotonic() + 180, -1, time.monotonic()
        while True:
            try:
                position = hub.position(SEEDED).position
            except grpc.RpcError:
                position = 0
            if position != last:
                last, stable_since = position, time.monotonic()
            elif position > 0 and time.monotonic() - stable_since > 3:
                break
            if node.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the seeding node did not ship its events:\n{(directory / 'node.log').read_text()[-3000:]}")
            time.sleep(0.2)
    finally:
        node.terminate()
        try:
            node.wait(20)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
    stub = cpb_grpc.CatalogStub(hub.channel)
    content = cpb.EntryContent(
        code=SEED_CODE, name="Licences", agency=SEEDED, provider="Market Regulation", provider_uscc=SEEDED_USCC,
        resource=SEED_RESOURCE, summary="Licences issued", format="database", share_type=2,
        share_condition="for licensing checks", share_modes=["platform:table"], update_cycle="realtime",
        items=[cpb.DataItem(name=n, type="C", length=64) for n in SEED_ITEMS])
    stub.SaveEntry(cpb.SaveEntryRequest(content=content, submit=True), timeout=CALL_TIMEOUT)
    stub.RecordSecrecyReview(cpb.SecrecyReviewRequest(code=SEED_CODE, cleared=True), timeout=CALL_TIMEOUT)
    stub.ReviewItems(cpb.ReviewItemsRequest(code=SEED_CODE, decisions=[
        cpb.ItemDecision(item=n, accepted=True) for n in SEED_ITEMS]), timeout=CALL_TIMEOUT)
    stub.Publish(cpb.EntryRef(code=SEED_CODE), timeout=CALL_TIMEOUT)


# -- the fuzzing context ------------------------------------------------------------------------

@dataclass
class AgencyModel:
    position: int = 0  # node notification id the hub holds
    versions: dict[uuid.UUID, int] = field(default_factory=dict)


SEEDED_RECORDS: list[uuid.UUID] = []


class Context:
    def __init__(self, hub: Hub, rng: random.Random, directory: Path, verbose: bool):
        self.hub = hub
        self.rng = rng
        self.dir = directory
        self.verbose = verbose
        self.exchange = pb_grpc.ExchangeStub(hub.channel)
        self.catalog = cpb_grpc.CatalogStub(hub.channel)
        self.sharing = spb_grpc.SharingStub(hub.channel)
        # pool agencies (ids that differ from the seeded agency's only in letter case are refused: wire_agency)
        self.models = {a: AgencyModel() for a in POOL}
        self.seeded_position = hub.position(SEEDED)
        self.seeded_log = hub.stored(SEEDED)
        self.seeded_records = sorted({uuid.UUID(e[1]) for e in self.seeded_log})
        SEEDED_RECORDS[:] = self.seeded_records
        self.seeded_versions = _versions(self.seeded_log)
        self.hub_down = False
        # catalog: code -> owning agency (codes the hub accepted), and entries' statuses as last seen
        self.codes: dict[str, str] = {SEED_CODE: SEEDED}
        # sharing: request id -> model
        self.requests: dict[str, dict] = {}

    def alive(self, tally: Tally, example: str) -> bool:
        """After an UNAVAILABLE answer: is the hub still there? A dead hub is a crash (fuzzing on the wire stops)."""
        if self.hub.running() and self.hub.healthy(timeout=10):
            return True
        if not self.hub_down:
            self.hub_down = True
            tally.crash("the hub process exited or stopped answering", example + "\nhub log tail:\n"
                        + self.hub.log()[-1500:])
        return False

    def resync(self, agency: str) -> None:
        """Re-read the model of a pool agency from the store (after the hub and the model disagreed)."""
        model = self.models[agency]
        model.position = self.hub.position(agency).position
        model.versions = {}
        for _, record, version, _, _ in self.hub.served(agency):
            model.versions[uuid.UUID(record)] = version


# -- wire: Publish --------------------------------------------------------------------------------

def valid_state(rng: random.Random, agency: str, record: uuid.UUID, version: int) -> bytes:
    return json.dumps({
        "agency": agency, "resource": rng.choice(["persons", "licences", "t"]), "key": {"id": rng.randint(1, 99)},
        "position": rng.randint(1, 10**6), "commit_time": {"_type_": "datetime_iso",
                                                           "_data_": "2026-01-02T03:04:05+00:00"},
        "txid": str(rng.randint(1, 10**6)), "schema_version": 1, "event_schema_version": 1,
        "originator_id": {"_type_": "uuid_hex", "_data_": record.hex}, "originator_version": version,
        "timestamp": {"_type_": "datetime_iso", "_data_": "2026-01-02T03:04:05+00:00"}, "row": {"a": 1}},
        separators=(",", ":")).encode()


def hostile_state(rng: random.Random) -> bytes:
    return rng.choice([
        lambda: b"",
        lambda: bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 64))),
        lambda: b"[" * rng.choice([50, 1000, 100_000]),
        lambda: b'{"resource": ' * rng.choice([10, 2000]) + b"1" + b"}" * 10,
        lambda: json.dumps({"resource": rng.choice([[1, 2], {"a": 1}, 5, None, True, "x" * 300, "../licences"])}).encode(),
        lambda: json.dumps({"commit_time": rng.choice([{"_data_": "9999-12-31T23:59:59-14:00"},
                                                        {"_data_": "0001-01-01T00:00:00+14:00"},
                                                        {"_data_": 5}, "x", [1], {"_data_": "nonsense"}])}).encode(),
        lambda: b'{"commit_time": {"_data_": "' + b"9" * 5000 + b'"}}',
        lambda: b'{"a": 1e999, "b": NaN, "resource": "licences"}',
        lambda: b'"just a string"',
        lambda: b"\xff\xfe" + "x".encode("utf-16-le"),
        lambda: b"x" * rng.choice([70_000, MAX_MESSAGE_BYTES + 10]),
    ])()


def hostile_uuid(rng: random.Random, existing: list[uuid.UUID]) -> str:
    u = rng.choice(existing) if existing and rng.random() < 0.5 else uuid.uuid4()
    return rng.choice([
        lambda: "", lambda: "not-a-uuid", lambda: str(u)[:-1], lambda: str(u) + "0", lambda: str(u).upper(),
        lambda: u.hex, lambda: "{" + str(u) + "}", lambda: "urn:uuid:" + str(u), lambda: " " + str(u),
        lambda: "00000000-0000-0000-0000-000000000000", lambda: rand_text(rng, 40), lambda: huge_text(rng),
        lambda: str(u).replace("-", "\u2010"), lambda: str(u) + "\x00",
    ])()


def _canonical_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except (ValueError, TypeError, AttributeError):
        return None


def expect_batch(batch: pb.EventBatch, model: AgencyModel) -> tuple[bool, str, int, int, dict]:
    """The rules for one batch (docs/design.md §2.4, §5.2): (valid, why not, new position, stored, new versions)."""
    size = len(pb.PublishRequest(batch=batch).SerializeToString())
    if size > MAX_MESSAGE_BYTES:
        return False, f"message of {size} bytes over the limit", model.position, 0, model.versions
    previous = batch.after
    for e in batch.events:
        if e.notification_id <= previous:
            return False, "notification ids do not increase", model.position, 0, model.versions
        previous = e.notification_id
    if batch.after > model.position:
        return False, "gap after the hub position", model.position, 0, model.versions
    new = [e for e in batch.events if e.notification_id > model.position]
    if not new:
        return True, "", model.position, 0, model.versions
    versions = dict(model.versions)
    for e in new:
        record = _canonical_uuid(e.originator_id)
        if record is None:
            return False, "originator id not a UUID", model.position, 0, model.versions
        if not 1 <= e.originator_version <= MAX_ID or e.notification_id > MAX_ID:
            return False, "version or id out of range", model.position, 0, model.versions
        if not e.topic:
            return False, "empty topic", model.position, 0, model.versions
        if e.originator_version != versions.get(record, 0) + 1:
            return False, "version gap", model.position, 0, model.versions
        versions[record] = e.originator_version
    return True, "", new[-1].notification_id, len(new), versions


def gen_batch(rng: random.Random, agency: str, model: AgencyModel, protected: bool) -> tuple[pb.EventBatch, str]:
    """A batch near the model's position with zero or more faults; ``protected``: nothing new may be valid."""
    pos = model.position
    roll = rng.random()
    if protected:
        after = rng.choice([0, max(0, pos - rng.randint(1, 10)), max(0, pos - 1), pos, pos + rng.randint(1, 3)])
    elif roll < 0.7:
        after = pos
    elif roll < 0.85:
        after = max(0, pos - rng.randint(1, 5))
    else:
        after = rng.choice([pos + 1, pos + rng.randint(2, 100), rand_uint(rng)])
    count = rng.choice([0, 1, 1, 2, 3, 4, 5, 8, 30]) if not protected else rng.randint(1, 6)
    records = list(model.versions)
    versions = dict(model.versions)
    events = []
    next_id = after
    for _ in range(count):
        next_id += 1 if rng.random() < 0.9 else rng.randint(2, 5)
        if next_id > 2**64 - 1:
            break
        if records and rng.random() < 0.6:
            record = rng.choice(records)
        else:
            record = uuid.uuid4()
            records.append(record)
        versions[record] = versions.get(record, 0) + 1
        events.append(pb.Event(notification_id=next_id, originator_id=str(record),
                               originator_version=versions[record], topic=rng.choice(
                                   ["exchange.record:Created", "exchange.record:Updated", "exchange.record:Deleted"]),
                               state=valid_state(rng, agency, record, versions[record])))
    faults = []
    for _ in range(rng.choice([0, 0, 1, 1, 1, 2, 3]) if events else 0):
        e = rng.choice(events)
        kind = rng.choice(["id", "id", "version", "version", "topic", "topic", "uuid", "uuid", "state", "state",
                           "state", "dup", "swap", "seeded record"])
        faults.append(kind)
        if kind == "id":
            e.notification_id = rng.choice([v for v in (0, e.notification_id - 1, e.notification_id, MAX_ID, MAX_ID + 1,
                                                        2**64 - 1, rand_uint(rng)) if 0 <= v < 2**64])
        elif kind == "version":
            e.originator_version = rng.choice([v for v in (0, e.originator_version + 1, e.originator_version - 1,
                                                           e.originator_version + 2, MAX_ID, MAX_ID + 1, 2**64 - 1, 1)
                                               if 0 <= v < 2**64])
        elif kind == "topic":
            e.topic = rng.choice(["", " ", huge_text(rng), rand_text(rng), "exchange.record:Nonsense",
                                  "builtins:eval", "os:system", "exchange.schema:Changed"])
        elif kind == "uuid":
            e.originator_id = hostile_uuid(rng, records)
        elif kind == "state":
            e.state = hostile_state(rng)
        elif kind == "dup" and len(events) < 40:
            events.append(copy.deepcopy(e))
        elif kind == "swap" and len(events) >= 2:
            i, j = rng.sample(range(len(events)), 2)
            events[i].notification_id, events[j].notification_id = events[j].notification_id, events[i].notification_id
        elif kind == "seeded record" and SEEDED_RECORDS:
            # a record id of the seeded agency (version 1 here): only this agency's log may change
            e.originator_id, e.originator_version = str(rng.choice(SEEDED_RECORDS)), 1
    batch = pb.EventBatch(after=after, events=events, head=rand_uint(rng) if rng.random() < 0.2 else 0)
    return batch, ",".join(faults) or "none"


def fuzz_publish(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    while tally.inputs < count:  # bounded: each pass counts one input
        if ctx.hub_down:
            return
        tally.inputs += 1
        wrong_before = tally.wrong
        roll = rng.random()
        if roll < 0.08:
            claim, protected = rand_agency_claim(rng), False
        elif roll < 0.12:
            claim, protected = SEEDED, True
        elif roll < 0.13:
            claim, protected = rng.choice([SEEDED.lower(), SEEDED[:-1] + "f", SEEDED + "\n"]), False
        else:
            claim, protected = rng.choice(POOL), False
        if claim != SEEDED and claim not in ctx.models and wire_agency(claim):
            ctx.models[claim] = AgencyModel()  # a valid id met first here: an agency of its own from now on
        modelled = claim in ctx.models
        model = ctx.models[claim] if modelled else AgencyModel()
        if claim == SEEDED:
            model = AgencyModel(ctx.seeded_position.position, dict(ctx.seeded_versions))
        requests: list[pb.PublishRequest] = []
        stream_kind = rng.random()
        hello = pb.Hello(agency=claim, node_version=rng.choice(["fuzz", "", rand_text(rng), huge_text(rng)]))
        if stream_kind < 0.03:
            requests = []
        elif stream_kind < 0.06:
            requests = [pb.PublishRequest()]  # neither hello nor batch
        elif stream_kind < 0.09:
            requests = [pb.PublishRequest(batch=gen_batch(rng, claim, model, protected)[0])]  # no hello
        else:
            requests = [pb.PublishRequest(hello=hello)]
        expected: list[tuple[bool, str, int, int]] = []
        trial = AgencyModel(model.position, dict(model.versions))
        hello_ok = (len(requests) == 1 and requests[0].WhichOneof("kind") == "hello"
                    and wire_agency(claim)
                    and len(requests[0].SerializeToString()) <= MAX_MESSAGE_BYTES)
        faults = []
        if requests and requests[0].WhichOneof("kind") == "hello":
            for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                if rng.random() < 0.03:
                    requests.append(pb.PublishRequest(hello=hello))  # a second hello
                    expected.append((False, "second hello", trial.position, 0))
                    break
                batch, fault = gen_batch(rng, claim, trial, protected)
                if protected:
                    ok, _, _, stored, _ = expect_batch(batch, trial)
                    if ok and stored:  # would add to the seeded agency: replace by a pure replay
                        # seeded node ids 1..position: the hub holds them all, so this must change nothing
                        start = rng.randint(0, max(0, trial.position - 5))
                        batch = pb.EventBatch(after=start, events=[
                            pb.Event(notification_id=start + k + 1, originator_id=r, originator_version=v + rng.randint(0, 2),
                                     topic=rng.choice([t, "", "x"]), state=hostile_state(rng))
                            for k, (_, r, v, t, _) in enumerate(ctx.seeded_log[start:start + 5])
                            if start + k + 1 <= trial.position])
                        fault = "replay with altered content"
                faults.append(fault)
                ok, why, position, stored, versions = expect_batch(batch, trial)
                requests.append(pb.PublishRequest(batch=batch))
                expected.append((ok, why, position, stored))
                if not ok:
                    break
                trial = AgencyModel(position, versions)
        example = f"Publish as {claim!r}: " + " | ".join(msg_repr(r, 400) for r in requests)[:1500] + f" faults={faults}"
        answers, error = [], None
        try:
            for answer in ctx.exchange.Publish(iter(requests), timeout=CALL_TIMEOUT):
                answers.append(answer)
        except grpc.RpcError as e:
            error = e
        if error is not None and rpc_outcome(error)[0] == "unavailable" and not ctx.alive(tally, example):
            return
        def judge() -> None:
            # What the rules say should have happened.
            if not requests:
                tally.accept() if error is None else tally.crash("an empty publish stream failed", example)
                return
            if not hello_ok:
                if error is None:
                    tally.wrongly_accepted("a publish stream without a valid hello was answered", example)
                else:
                    _refused(tally, error, example)
                return
            valid_all = all(ok for ok, *_ in expected)
            if error is None:
                # every batch must have been valid; answers: hello + one per batch
                if not valid_all:
                    bad = next(why for ok, why, *_ in expected if not ok)
                    tally.wrongly_accepted(f"a batch with {bad} was accepted", example + f" answers={[(a.position, a.stored) for a in answers]}")
                elif [(a.position, a.stored) for a in answers[1:]] != [(p, s) for _, _, p, s in expected]:
                    tally.wrongly_accepted("answers differ from the rules' positions and counts",
                                           example + f" answers={[(a.position, a.stored) for a in answers]} "
                                           f"expected={[(p, s) for _, _, p, s in expected]}")
                else:
                    tally.accept()
                if modelled:
                    model.position, model.versions = trial.position, trial.versions
            else:
                kind, signature = rpc_outcome(error)
                stored_before = sum(1 for a in answers[1:] if a.stored)
                answered = len(answers) - 1  # batches answered before the refusal
                failing = expected[answered] if answered < len(expected) else None
                if kind != "refused":
                    tally.crash(signature, example + f" details={short(error.details())}")
                    if modelled:
                        ctx.resync(claim)
                    return
                if failing is None or failing[0]:
                    tally.wrongly_refused_(f"{signature}: {signature_of(error.details() or '')}",
                                           example + f" details={short(error.details())}")
                    if modelled:
                        ctx.resync(claim)
                    return
                tally.refuse()
                if modelled and answered:
                    # the batches before the refusal were stored: replay the model up to there
                    m = AgencyModel(model.position, dict(model.versions))
                    for request in requests[1:1 + answered]:
                        _, _, position, _, versions = expect_batch(request.batch, m)
                        m = AgencyModel(position, versions)
                    model.position, model.versions = m.position, m.versions
                del stored_before
        judge()
        stored_any = any(a.stored for a in answers[1:])
        if stored_any or claim.upper().strip() == SEEDED.upper():
            # another agency's accepted events must not appear in the seeded agency's log
            now = ctx.hub.position(SEEDED)
            if now.hub_position != ctx.seeded_position.hub_position:
                if claim != SEEDED and stored_any and tally.wrong == wrong_before:
                    tally.wrongly_accepted(
                        f"publishing as another agency id changed the log of {SEEDED}",
                        example + f" -> {SEEDED} hub_position {ctx.seeded_position.hub_position} -> {now.hub_position}")
                    tally.accepted -= 1  # the input was counted as accepted above
                # judge later inputs by what the seeded log now holds (the check at the end still compares
                # it with the log recorded before fuzzing)
                ctx.seeded_position = now
                ctx.seeded_versions = _versions(ctx.hub.served(SEEDED))
    return


def _versions(log: list[tuple]) -> dict[uuid.UUID, int]:
    versions: dict[uuid.UUID, int] = {}
    for _, record, version, _, _ in log:
        versions[uuid.UUID(record)] = version
    return versions


def _refused(tally: Tally, error: grpc.RpcError, example: str) -> None:
    kind, signature = rpc_outcome(error)
    if kind == "refused":
        tally.refuse()
    else:
        tally.crash(signature, example + f" details={short(error.details())}")


# -- wire: raw bytes ------------------------------------------------------------------------------

def raw_methods(ctx: Context) -> list[tuple[str, str, Any, Callable[[Any], Any]]]:
    """(path, kind, request class, sample-message factory) of every method."""
    rng = ctx.rng
    methods = [
        ("/exchange.v1.Exchange/Publish", "stream", pb.PublishRequest,
         lambda: pb.PublishRequest(hello=pb.Hello(agency=rng.choice(POOL), node_version="x"))),
        ("/exchange.v1.Exchange/Subscribe", "unary_stream", pb.SubscribeRequest,
         lambda: pb.SubscribeRequest(agency=rng.choice(POOL), after=1 << 40, max_batch=1)),
        ("/exchange.v1.Exchange/GetPosition", "unary", pb.PositionRequest,
         lambda: pb.PositionRequest(agency=rng.choice(POOL))),
    ]
    for name, request_class, factory in [
        ("SaveEntry", cpb.SaveEntryRequest, lambda: cpb.SaveEntryRequest(content=random_entry(rng, rng.choice(POOL)))),
        ("Submit", cpb.EntryRef, lambda: cpb.EntryRef(code=fuzz_code(rng))),
        ("RecordSecrecyReview", cpb.SecrecyReviewRequest, lambda: cpb.SecrecyReviewRequest(code=fuzz_code(rng), cleared=True)),
        ("ReviewItems", cpb.ReviewItemsRequest, lambda: cpb.ReviewItemsRequest(code=fuzz_code(rng), decisions=[
            cpb.ItemDecision(item="a", accepted=True)])),
        ("Publish", cpb.EntryRef, lambda: cpb.EntryRef(code=fuzz_code(rng))),
        ("Return", cpb.ReturnRequest, lambda: cpb.ReturnRequest(code=fuzz_code(rng), reasons=["r"])),
        ("RecordFullReview", cpb.FullReviewRequest, lambda: cpb.FullReviewRequest(code=fuzz_code(rng), note="n")),
        ("GetEntry", cpb.EntryRef, lambda: cpb.EntryRef(code=SEED_CODE)),
        ("ListEntries", cpb.ListRequest, lambda: cpb.ListRequest(agency=SEEDED)),
        ("GetHistory", cpb.EntryRef, lambda: cpb.EntryRef(code=SEED_CODE)),
        ("GetReport", cpb.ReportRequest, lambda: cpb.ReportRequest(at="2026-06-01T00:00:00+00:00")),
        ("ExportDcat", cpb.DcatRequest, lambda: cpb.DcatRequest()),
    ]:
        methods.append((f"/exchange.v1.Catalog/{name}", "unary", request_class, factory))
    for name, request_class, factory in [
        ("Request", spb.ShareRequestCreate, lambda: spb.ShareRequestCreate(
            agency=rng.choice(POOL), provider=SEEDED, resource=SEED_RESOURCE, scope="s", purpose="p", items=["kind"])),
        ("Answer", spb.ShareAnswer, lambda: spb.ShareAnswer(agency=rng.choice(POOL), request_id=str(uuid.uuid4()))),
        ("Dispute", spb.ShareDispute, lambda: spb.ShareDispute(agency=rng.choice(POOL), request_id=str(uuid.uuid4()))),
        ("Decide", spb.ShareAnswer, lambda: spb.ShareAnswer(request_id=str(uuid.uuid4()), approve=True)),
        ("Revoke", spb.ShareRevoke, lambda: spb.ShareRevoke(agency=rng.choice(POOL), request_id=str(uuid.uuid4()))),
        ("RecordAgreement", spb.SecrecyAgreement, lambda: spb.SecrecyAgreement(
            agency=rng.choice(POOL), consumer=rng.choice(POOL), resource="t", reference="r")),
        ("List", spb.ShareListRequest, lambda: spb.ShareListRequest(agency=rng.choice(POOL))),
        ("Report", spb.ShareReportRequest, lambda: spb.ShareReportRequest()),
    ]:
        methods.append((f"/exchange.v1.Sharing/{name}", "unary", request_class, factory))
    return methods


def raw_payload(rng: random.Random, sample: bytes) -> bytes:
    roll = rng.random()
    if roll < 0.3:
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 200)))
    if roll < 0.4:  # length prefixes far beyond the data, deep groups, varint overflows
        return rng.choice([b"\x0a\xff\xff\xff\xff\x0f", b"\x12\xff\xff\xff\xff\x0f", b"\x0b" * 200,
                           b"\x08" + b"\xff" * 11, b"\x0a\x05\x0a\x03abc\x12", b"\xff\xff\xff\xff",
                           b"\x0a\x80\x80\x80\x80\x10", b"\x0a\x02\xc3\x28", b"\x1a" * 100])
    return mutate_bytes(rng, sample)


def fuzz_raw(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    methods = raw_methods(ctx)
    callables = {}
    for path, kind, *_ in methods:
        if kind == "stream":
            callables[path] = ctx.hub.channel.stream_stream(path)
        elif kind == "unary_stream":
            callables[path] = ctx.hub.channel.unary_stream(path)
        else:
            callables[path] = ctx.hub.channel.unary_unary(path)
    while tally.inputs < count:  # bounded: each pass counts one input
        if ctx.hub_down:
            return
        tally.inputs += 1
        path, kind, request_class, factory = rng.choice(methods)
        payload = raw_payload(rng, factory().SerializeToString())
        try:
            decoded = request_class.FromString(payload)
        except DecodeError:
            decoded = None
        example = f"{path} with raw bytes {payload!r}"[:1200]
        try:
            if kind == "stream":
                list(callables[path](iter([payload]), timeout=CALL_TIMEOUT))
            elif kind == "unary_stream":
                stream = callables[path](payload, timeout=0.5)
                try:
                    next(stream)
                except StopIteration:
                    pass
                finally:
                    stream.cancel()
            else:
                callables[path](payload, timeout=CALL_TIMEOUT)
            error = None
        except grpc.RpcError as e:
            error = e
        if error is not None:
            kind_, signature = rpc_outcome(error)
            if kind_ == "unavailable" and not ctx.alive(tally, example):
                return
            if kind_ == "hang" and path.endswith("Subscribe"):
                kind_ = "waiting"  # a subscription with nothing to send waits: accepted
            if kind_ == "refused":
                tally.refuse()
            elif kind_ == "waiting":
                tally.accept() if decoded is not None else tally.wrongly_accepted(
                    "undecodable bytes opened a subscription", example)
            elif error.code() == grpc.StatusCode.CANCELLED:
                tally.accept()
            else:
                tally.crash(signature, example + f" details={short(error.details())}")
            continue
        if decoded is None:
            tally.wrongly_accepted("bytes that are not the request message were answered", example)
            continue
        # Decoded: judge what the rules can say about the message.
        agency = None
        if path.endswith("Exchange/Publish"):
            if decoded.WhichOneof("kind") != "hello":
                tally.wrongly_accepted("a publish stream not starting with a hello was answered", example)
                continue
            agency = decoded.hello.agency
        elif path.endswith("GetPosition") or path.endswith("Subscribe"):
            agency = decoded.agency
        if agency is not None and not wire_agency(agency):
            tally.wrongly_accepted(f"an invalid agency id {short(agency, 60)} was accepted", example)
            continue
        if path.endswith("Catalog/SaveEntry"):  # an entry saved from mutated bytes: the catalog fuzzer must know it
            ctx.codes.setdefault(decoded.content.code.strip(), decoded.content.agency.strip())
        tally.accept()


# -- wire: Subscribe and GetPosition ---------------------------------------------------------------

def fuzz_position(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    while tally.inputs < count:  # bounded: each pass counts one input
        if ctx.hub_down:
            return
        tally.inputs += 1
        claim = rng.choice([rand_agency_claim(rng), SEEDED, rng.choice(POOL), SEEDED.lower()])
        example = f"GetPosition(agency={short(claim, 80)})"
        try:
            answer = ctx.exchange.GetPosition(pb.PositionRequest(agency=claim), timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            if rpc_outcome(e)[0] == "unavailable" and not ctx.alive(tally, example):
                return
            if wire_agency(claim) and rpc_outcome(e)[0] == "refused":
                tally.wrongly_refused_(rpc_outcome(e)[1], example + f" details={short(e.details())}")
            else:
                _refused(tally, e, example)
            continue
        if not wire_agency(claim):
            tally.wrongly_accepted("GetPosition answered for an invalid agency id", example)
        elif claim in ctx.models and answer.position != ctx.models[claim].position:
            tally.wrongly_accepted("GetPosition differs from the rules' position",
                                   example + f" -> {answer.position}, expected {ctx.models[claim].position}")
        elif claim == SEEDED and answer != ctx.seeded_position:
            tally.wrongly_accepted("the seeded agency's position moved",
                                   example + f" -> {answer}, expected {ctx.seeded_position}")
            ctx.seeded_position = answer
        else:
            tally.accept()


def entitled(ctx: Context, consumer: str, provider: str, resource: str) -> set[str] | None:
    """Approved items of ``consumer`` for the resource per the sharing model (None: not entitled)."""
    if provider != SEEDED or resource != SEED_RESOURCE:
        return None
    items: set[str] = set()
    found = False
    for r in ctx.requests.values():
        if r["requester"] == consumer and r["status"] == "approved" and r.get("expires_ok", True):
            found, items = True, items | set(r["approved"])
    return items if found else None


def fuzz_subscribe(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    seeded_hub = [e[0] for e in ctx.seeded_log]
    while tally.inputs < count:  # bounded: each pass counts one input
        if ctx.hub_down:
            return
        tally.inputs += 1
        agency = rng.choice([SEEDED, SEEDED, rng.choice(POOL), rand_agency_claim(rng)])
        after = rng.choice([0, 0, rng.randint(0, len(seeded_hub) + 2), MAX_ID, MAX_ID + 1, 2**64 - 1, rand_uint(rng)])
        consumer = rng.choice(["", "", "", agency, rng.choice(POOL), rand_agency_claim(rng), SEEDED.lower()])
        resource = rng.choice(["", SEED_RESOURCE, SEED_RESOURCE, "persons", rand_text(rng), huge_text(rng)])
        request = pb.SubscribeRequest(agency=agency, after=after, max_batch=rng.choice([0, 1, 5, 2**32 - 1]),
                                      consumer=consumer, resource=resource,
                                      purpose=rng.choice(["", "checks", rand_text(rng)]))
        example = f"Subscribe({msg_repr(request)})"
        oversize = len(request.SerializeToString()) > MAX_MESSAGE_BYTES
        expects_refusal = oversize or not wire_agency(agency) or bool(consumer and not wire_agency(consumer))
        expects_events = (agency == SEEDED and consumer in ("", SEEDED) and after < seeded_hub[-1]
                          and not expects_refusal)
        stream = ctx.exchange.Subscribe(request, timeout=10 if expects_events or expects_refusal else 0.3)
        try:
            batch = next(stream)
            error = None
        except StopIteration:
            batch, error = None, None
        except grpc.RpcError as e:
            batch, error = None, e
        finally:
            stream.cancel()
        if error is not None:
            kind, signature = rpc_outcome(error)
            if kind == "unavailable" and not ctx.alive(tally, example):
                return
            if kind == "hang":  # waiting for events: nothing to send (yet)
                if expects_events:
                    tally.crash("a subscription with events to send sent none within 10s", example)
                elif oversize:
                    tally.crash("an oversized subscribe request was not refused within 10s", example)
                elif expects_refusal:
                    tally.wrongly_accepted("a subscription with an invalid agency id was opened", example)
                else:
                    tally.accept()
            elif kind == "refused":
                if expects_events:
                    tally.wrongly_refused_(signature, example + f" details={short(error.details())}")
                else:
                    tally.refuse()
            else:
                tally.crash(signature, example + f" details={short(error.details())}")
            continue
        if batch is None:
            tally.accept()
            continue
        ids = [e.notification_id for e in batch.events]
        if not wire_agency(agency):
            tally.wrongly_accepted("events delivered for an invalid agency id", example)
        elif any(b <= a for a, b in zip([after, *ids], ids)):
            tally.wrongly_accepted("delivered ids do not follow the requested position", example + f" ids={ids[:10]}")
        elif consumer not in ("", agency):
            allowed = entitled(ctx, consumer, agency, resource)
            if batch.events and allowed is None:
                tally.wrongly_accepted("events delivered to a consumer without an approved request",
                                       example + f" delivered {len(ids)} events")
            elif batch.events and not set(batch.items) <= allowed:
                tally.wrongly_accepted("items beyond the approved ones delivered",
                                       example + f" items={list(batch.items)} approved={sorted(allowed)}")
            else:
                tally.accept()
        elif agency == SEEDED:
            expected = [e for e in ctx.seeded_log if e[0] > after][:len(batch.events)]
            got = [(e.notification_id, e.originator_id, e.originator_version, e.topic, e.state) for e in batch.events]
            if got[:len(expected)] != expected:
                tally.wrongly_accepted("the seeded agency's delivered events differ from the stored ones", example)
            else:
                tally.accept()
        else:
            tally.accept()


# -- catalog --------------------------------------------------------------------------------------

FUZZ_CODES = [f"2{i:02d}001/{j:04d}" for i in range(3) for j in range(1, 4)]


def fuzz_code(rng: random.Random) -> str:
    return rng.choice(FUZZ_CODES)


def random_entry(rng: random.Random, agency: str) -> cpb.EntryContent:
    content = cpb.EntryContent(
        code=fuzz_code(rng), name="Fuzz entry", agency=agency, provider="Fuzz office", provider_uscc=SEEDED_USCC,
        resource=rng.choice(["t", "persons", ""]), summary="fuzzed", format="database", share_type=1,
        share_modes=["platform:table"], update_cycle="daily", items=[cpb.DataItem(name="a", type="C", length=10)])
    for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
        name = rng.choice(["code", "name", "agency", "provider", "provider_uscc", "resource", "summary", "format",
                           "share_type", "share_condition", "not_shared_basis", "share_modes", "open_to_public",
                           "open_condition", "update_cycle", "related", "items"])
        if name == "share_type":
            content.share_type = rng.choice([0, 1, 2, 3, 4, 2**32 - 1])
        elif name == "open_to_public":
            content.open_to_public = not content.open_to_public
        elif name == "share_modes":
            del content.share_modes[:]
            content.share_modes.extend(rng.choice([[], ["mail", "mail"], ["nonsense"], ["media"] * 300,
                                                 [rand_text(rng)], ["platform:table", "mail"]]))
        elif name == "related":
            content.related.extend(rng.choice([[SEED_CODE], [content.code], ["x"], [SEED_CODE] * 2,
                                               [f"101001/{i:04d}" for i in range(201)], [huge_text(rng)[:5000]]]))
        elif name == "items":
            del content.items[:]
            content.items.extend(rng.choice([
                [], [cpb.DataItem(name="a", type="C"), cpb.DataItem(name="a", type="N")],
                [cpb.DataItem(name="", type="C")], [cpb.DataItem(name="b", type="Q")],
                [cpb.DataItem(name=rand_text(rng), type=rng.choice("CNYDTLMGBIF"), length=rng.randint(0, 2**32 - 1))],
                [cpb.DataItem(name="x" * 129, type="C")],
                [cpb.DataItem(name=f"c{i}", type="C") for i in range(rng.choice([10, 2001]))]]))
        elif name == "code":
            content.code = rng.choice([SEED_CODE, "", "x", "101001/001", "401001/0001", " 201001/0001 ",
                                       "101001/" + "9" * 70, rand_text(rng), fuzz_code(rng)])
        elif name == "agency":
            # not the seeded agency itself: its own edits of its entry would be right
            content.agency = rng.choice([SEEDED[:-1] + "f", rand_agency_claim(rng), SEEDED.lower()])
        elif name == "provider_uscc":
            content.provider_uscc = rng.choice(["", "91310000MB2F31887A", rand_text(rng, 18), SEEDED_USCC.lower()])
        else:
            setattr(content, name, rng.choice(["", " ", rand_text(rng), huge_text(rng), "nonsense", "file",
                                               "realtime", "x" * 129]))
    return content


CODE_RE = re.compile(r"^[1-3]\d{2}\d{3}\d*/\d{4,}\Z")
TEXT_LIMITS = {"code": 64, "name": 200, "agency": 64, "provider": 200, "provider_uscc": 18, "resource": 128,
               "summary": 4000, "format": 32, "share_condition": 2000, "not_shared_basis": 2000,
               "open_condition": 2000, "update_cycle": 32}


def entry_problems(c: cpb.EntryContent) -> list[str]:
    """An independent reading of the catalog rules (docs/catalog.md; GB/T 21063) that must hold for any
    accepted entry: ids, lengths, enumerations, share terms, data items."""
    from exchange.contracts.identifiers import is_valid_uscc

    problems = []
    text = {k: getattr(c, k).strip() for k in TEXT_LIMITS}
    for k, limit in TEXT_LIMITS.items():
        if len(text[k]) > limit:
            problems.append(f"{k} longer than {limit}")
    for k in ("code", "name", "agency", "provider", "provider_uscc", "summary", "format", "update_cycle"):
        if not text[k]:
            problems.append(f"{k} missing")
    if text["code"] and not CODE_RE.match(text["code"]):
        problems.append("code malformed")
    if text["agency"] and not AGENCY_RE.match(text["agency"]):
        problems.append("agency id invalid")
    if text["provider_uscc"] and not is_valid_uscc(text["provider_uscc"]):
        problems.append("provider_uscc invalid")
    if text["format"] and text["format"] not in ("file", "spreadsheet", "database", "image", "stream",
                                                 "self-describing", "other"):
        problems.append("format unknown")
    if text["update_cycle"] and text["update_cycle"] not in ("realtime", "daily", "weekly", "monthly", "quarterly",
                                                             "yearly"):
        problems.append("update_cycle unknown")
    if c.share_type not in (1, 2, 3):
        problems.append("share_type")
    if (c.share_type == 2) != bool(text["share_condition"]):
        problems.append("share_condition")
    if (c.share_type == 3) != bool(text["not_shared_basis"]):
        problems.append("not_shared_basis")
    if c.share_type == 3 and c.open_to_public:
        problems.append("not shared but open")
    if text["open_condition"] and not c.open_to_public:
        problems.append("open_condition without open_to_public")
    modes = list(c.share_modes)
    if not modes or len(modes) > 200 or len(set(modes)) != len(modes) or any(
            m not in ("platform:table", "platform:file", "platform:interface", "mail", "media") for m in modes):
        problems.append("share_modes")
    related = list(c.related)
    if len(related) > 200 or len(set(related)) != len(related) or any(not CODE_RE.match(r) for r in related) \
            or text["code"] in related:
        problems.append("related")
    names = [i.name for i in c.items]
    if not names or len(names) > 2000 or len(set(names)) != len(names) or any(
            not n.strip() or len(n) > 128 or i.type not in "CNYDTLMGBIF" or len(i.type) != 1 for n, i in zip(names, c.items)):
        problems.append("items")
    return problems


def fuzz_catalog(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    stub = ctx.catalog
    while tally.inputs < count:  # bounded: each pass counts one input
        if ctx.hub_down:
            return
        tally.inputs += 1
        roll = rng.random()
        judge: Callable[[Any], str | None] = lambda answer: None  # noqa: E731 - a problem with an accepted answer
        if roll < 0.45:
            agency = rng.choice(POOL) if rng.random() < 0.9 else rand_agency_claim(rng)
            content = random_entry(rng, agency)
            request = cpb.SaveEntryRequest(content=content, submit=rng.random() < 0.3)
            call, name = stub.SaveEntry, "SaveEntry"
            problems = entry_problems(content)
            owner = ctx.codes.get(content.code.strip())

            def judge(answer, content=content, problems=problems, owner=owner):  # noqa: E306
                if problems:
                    return f"an entry breaking the rules ({problems[0]}) was saved"
                if owner is not None and owner != content.agency.strip():
                    return f"an agency saved over the entry of another agency ({owner})"
                ctx.codes.setdefault(content.code.strip(), content.agency.strip())
                return None
        elif roll < 0.55:
            request, call, name = cpb.EntryRef(code=rng.choice(FUZZ_CODES + [rand_text(rng), "", huge_text(rng)])), \
                stub.Submit, "Submit"
        elif roll < 0.7:
            code = rng.choice(FUZZ_CODES + [rand_text(rng), ""])
            name = rng.choice(["RecordSecrecyReview", "ReviewItems", "Publish", "Return", "RecordFullReview"])
            request = {
                "RecordSecrecyReview": lambda: cpb.SecrecyReviewRequest(code=code, cleared=rng.random() < 0.7,
                                                                       sensitivity=[rand_text(rng)], note=rand_text(rng)),
                "ReviewItems": lambda: cpb.ReviewItemsRequest(code=code, decisions=[
                    cpb.ItemDecision(item=rng.choice(["a", rand_text(rng)]), accepted=rng.random() < 0.7,
                                     reason=rng.choice(["", "r", huge_text(rng)]))]),
                "Publish": lambda: cpb.EntryRef(code=code),
                "Return": lambda: cpb.ReturnRequest(code=code, reasons=rng.choice([[], ["why"], [huge_text(rng)], [""]])),
                "RecordFullReview": lambda: cpb.FullReviewRequest(code=code, note=rng.choice(["", "n", huge_text(rng)])),
            }[name]()
            call = getattr(stub, name)

            def judge(answer, code=code):  # noqa: E306
                return None if code in ctx.codes else f"{name} accepted for an entry that was never saved"
        elif roll < 0.8:
            code = rng.choice(FUZZ_CODES + [SEED_CODE, rand_text(rng), "", huge_text(rng)])
            name = rng.choice(["GetEntry", "GetHistory"])
            request, call = cpb.EntryRef(code=code), getattr(stub, name)

            def judge(answer, code=code, name=name):  # noqa: E306
                if name == "GetEntry" and code not in ctx.codes:
                    return "GetEntry answered for a code never saved"
                if name == "GetEntry" and code == SEED_CODE and (answer.content.agency != SEEDED
                                                                 or answer.status != "published"):
                    return "the seeded entry changed owner or status"
                return None
        elif roll < 0.9:
            request = cpb.ListRequest(agency=rng.choice(["", SEEDED, rand_agency_claim(rng)]),
                                      status=rng.choice(["", "draft", "published", rand_text(rng)]))
            call, name = stub.ListEntries, "ListEntries"
        elif roll < 0.97:
            at = rng.choice(["", "2026-06-01", "2026-06-01T00:00:00+08:00", "9999-12-31T23:59:59", "0001-01-01",
                             "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2100-01-01", "1900-01-01",
                             rand_text(rng), "2026-13-45", huge_text(rng)[:3000]])
            request, call, name = cpb.ReportRequest(at=at), stub.GetReport, "GetReport"
        else:
            request, call, name = cpb.DcatRequest(), stub.ExportDcat, "ExportDcat"
        example = f"Catalog.{name}({msg_repr(request, 900)})"
        try:
            answer = call(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            kind, signature = rpc_outcome(e)
            if kind == "unavailable" and not ctx.alive(tally, example):
                return
            if kind == "refused":
                if name == "SaveEntry" and e.code() == grpc.StatusCode.INVALID_ARGUMENT and not problems \
                        and len(request.SerializeToString()) < MAX_MESSAGE_BYTES:
                    tally.wrongly_refused_(f"SaveEntry {signature_of(e.details())}",
                                           example + f" details={short(e.details())}")
                else:
                    tally.refuse()
            else:
                tally.crash(f"Catalog.{name}: {signature}", example + f" details={short(e.details())}")
            continue
        problem = judge(answer)
        if problem:
            tally.wrongly_accepted(problem, example)
        else:
            tally.accept()


# -- sharing --------------------------------------------------------------------------------------

def rand_time(rng: random.Random) -> str:
    now = datetime.now(timezone.utc)
    return rng.choice(["", (now + timedelta(days=30)).isoformat(), (now - timedelta(days=1)).isoformat(),
                       "9999-12-31T23:59:59", "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00",
                       "0001-01-01", "2100-01-01", rand_text(rng), "2026-02-30", huge_text(rng)[:5000]])


def time_ok(text: str) -> bool | None:
    """True: a future time; False: not a time or not in the future; (empty: None)."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment > datetime.now(timezone.utc)
    except OverflowError:
        return False


def fuzz_sharing(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    stub = ctx.sharing
    while tally.inputs < count:  # bounded: each pass counts one input
        if ctx.hub_down:
            return
        tally.inputs += 1
        ids = list(ctx.requests)
        request_id = rng.choice(ids) if ids and rng.random() < 0.85 else rng.choice(
            ["", "not-a-uuid", str(uuid.uuid4()), huge_text(rng)[:5000], rand_text(rng)])
        model = ctx.requests.get(request_id)
        roll = rng.random()
        long_ok = lambda *texts: all(len(t) <= 4000 for t in texts)  # noqa: E731
        update: Callable[[Any], None] = lambda answer: None  # noqa: E731
        if roll < 0.3:
            requester = rng.choice(POOL) if rng.random() < 0.85 else rng.choice([SEEDED, rand_agency_claim(rng)])
            items = rng.choice([["kind"], ["kind", "status"], SEED_ITEMS, [], ["nonexistent"], ["kind", "kind"],
                                [rand_text(rng)], ["kind"] * 2001, [huge_text(rng)]])
            request = spb.ShareRequestCreate(
                agency=requester, provider=rng.choice([SEEDED] * 6 + [rand_agency_claim(rng), SEEDED.lower()]),
                resource=rng.choice([SEED_RESOURCE] * 5 + ["persons", rand_text(rng), huge_text(rng)]),
                scope=rng.choice(["Pudong", "", " ", huge_text(rng), rand_text(rng)]),
                purpose=rng.choice(["checks", "", " ", huge_text(rng), rand_text(rng)]), items=items)
            call, name = stub.Request, "Request"
            valid = (AGENCY_RE.match(requester) and request.provider == SEEDED and request.resource == SEED_RESOURCE
                     and requester != SEEDED and request.scope.strip() and request.purpose.strip() and items
                     and set(items) <= set(SEED_ITEMS) and long_ok(request.scope, request.purpose)
                     and len(set(items)) <= 2000)  # the hub drops repeated items first

            def update(answer, requester=requester, items=items):  # noqa: E306
                ctx.requests[answer.id] = {"requester": requester, "provider": SEEDED, "items": list(dict.fromkeys(items)),
                                           "status": "pending", "approved": [], "decided": False}
        elif roll < 0.55:
            approve = rng.random() < 0.5
            actor = SEEDED if rng.random() < 0.8 else rng.choice(POOL + [rand_agency_claim(rng)])
            items = rng.choice([[], ["kind"], ["status"], ["licence_no"], ["nonexistent"], SEED_ITEMS])
            expires = rand_time(rng) if rng.random() < 0.4 else ""
            reasons = rng.choice(["", "no", " ", huge_text(rng)])
            request = spb.ShareAnswer(agency=actor, request_id=request_id, approve=approve, items=items,
                                      expires=expires, reasons=reasons)
            call, name = stub.Answer, "Answer"
            if approve:
                valid = (model and actor == model["provider"] and model["status"] == "pending"
                         and set(items) <= set(model["items"]) and time_ok(expires) is not False and long_ok(reasons))
            else:
                valid = (model and actor == model["provider"] and model["status"] == "pending" and reasons.strip()
                         and long_ok(reasons))

            def update(answer, model=model, approve=approve, items=items):  # noqa: E306
                model["status"] = "approved" if approve else "rejected"
                model["approved"] = (list(dict.fromkeys(items)) or model["items"]) if approve else []
        elif roll < 0.65:
            actor = model["requester"] if model and rng.random() < 0.8 else rng.choice(POOL + [rand_agency_claim(rng)])
            grounds = rng.choice(["unfair", "", huge_text(rng)])
            request = spb.ShareDispute(agency=actor, request_id=request_id, grounds=grounds)
            call, name = stub.Dispute, "Dispute"
            valid = (model and actor == model["requester"] and not model["decided"] and grounds.strip()
                     and long_ok(grounds) and (model["status"] == "rejected" or (
                         model["status"] == "approved" and set(model["approved"]) != set(model["items"]))))

            def update(answer, model=model):  # noqa: E306
                model["status"] = "disputed"
        elif roll < 0.72:
            approve = rng.random() < 0.5
            items = rng.choice([[], ["kind"], ["nonexistent"]])
            expires = rand_time(rng) if rng.random() < 0.4 else ""
            reasons = rng.choice(["", "decided", huge_text(rng)])
            request = spb.ShareAnswer(agency=rng.choice(["", SEEDED]), request_id=request_id, approve=approve,
                                      items=items, expires=expires, reasons=reasons)
            call, name = stub.Decide, "Decide"
            valid = (model and model["status"] == "disputed" and (not approve or set(items) <= set(model["items"]))
                     and (approve or reasons.strip()) and time_ok(expires) is not False and long_ok(reasons))

            def update(answer, model=model, approve=approve, items=items):  # noqa: E306
                model["status"], model["decided"] = ("approved" if approve else "rejected"), True
                model["approved"] = (list(dict.fromkeys(items)) or model["items"]) if approve else []
        elif roll < 0.8:
            actor = rng.choice([SEEDED, SEEDED, "", rng.choice(POOL), rand_agency_claim(rng)])
            reason = rng.choice(["ended", "", huge_text(rng)])
            request = spb.ShareRevoke(agency=actor, request_id=request_id, reason=reason)
            call, name = stub.Revoke, "Revoke"
            valid = (model and (actor == "" or actor == model["provider"]) and model["status"] == "approved"
                     and reason.strip() and long_ok(reason))

            def update(answer, model=model):  # noqa: E306
                model["status"] = "revoked"
        elif roll < 0.87:
            provider = rng.choice([SEEDED, SEEDED, rng.choice(POOL), rand_agency_claim(rng)])
            request = spb.SecrecyAgreement(
                agency=provider, consumer=rng.choice(POOL + [rand_agency_claim(rng), SEEDED]),
                resource=rng.choice([SEED_RESOURCE, SEED_RESOURCE, "persons", rand_text(rng), huge_text(rng)]),
                reference=rng.choice(["No. 1", "", " ", huge_text(rng), rand_text(rng)]),
                recorded_at=rng.choice(["", rand_text(rng)]))
            call, name = stub.RecordAgreement, "RecordAgreement"
            valid = (provider == SEEDED and AGENCY_RE.match(request.consumer) and request.resource == SEED_RESOURCE
                     and request.reference.strip() and long_ok(request.reference))
        elif roll < 0.96:
            request = spb.ShareListRequest(agency=rng.choice(["", SEEDED, rng.choice(POOL), rand_agency_claim(rng)]),
                                           status=rng.choice(["", "pending", "approved", "revoked", rand_text(rng)]))
            call, name = stub.List, "List"
            valid = ((not request.agency or AGENCY_RE.match(request.agency))
                     and request.status in ("", "pending", "approved", "rejected", "disputed", "revoked"))
        else:
            request, call, name, valid = spb.ShareReportRequest(), stub.Report, "Report", True
        example = f"Sharing.{name}({msg_repr(request, 900)})" + (f" on a request in state {model['status']}"
                                                                 if model else "")
        try:
            answer = call(request, timeout=CALL_TIMEOUT)
        except grpc.RpcError as e:
            kind, signature = rpc_outcome(e)
            if kind == "unavailable" and not ctx.alive(tally, example):
                return
            if kind == "refused":
                tally.refuse()
            else:
                tally.crash(f"Sharing.{name}: {signature}", example + f" details={short(e.details())}")
            continue
        if not valid:
            tally.wrongly_accepted(f"Sharing.{name} accepted what the rules refuse", example)
        else:
            tally.accept()
        if name in ("Request", "Answer", "Dispute", "Decide", "Revoke"):
            if name == "Request" or model is not None:
                update(answer)
            if name != "Request" and model is not None and answer.status != model["status"]:
                model["status"] = answer.status  # follow the hub: the model is only a judge of what is allowed


# -- offline bundles ------------------------------------------------------------------------------

def build_bundle(key, agency: str, after: int, count: int, directory: Path, versions: dict | None = None) -> bytes:
    versions = versions if versions is not None else {}
    records = list(versions) or [uuid.uuid4()]
    notifications = []
    for i in range(after + 1, after + 1 + count):
        record = records[i % len(records)] if i % 3 else uuid.uuid4()
        if record not in records:
            records.append(record)
        versions[record] = versions.get(record, 0) + 1
        notifications.append(Notification(id=i, originator_id=record, originator_version=versions[record],
                                          topic="exchange.record:Created", state=b'{"resource": "t"}'))
    path = write_bundle(directory, agency, notifications, after, key)
    data = path.read_bytes()
    path.unlink()
    return data


def split_bundle(data: bytes) -> tuple[bytes, bytes, bytes]:
    offset = len(MAGIC)
    (m_len,) = struct.unpack(">I", data[offset:offset + 4])
    manifest = data[offset + 4:offset + 4 + m_len]
    offset += 4 + m_len
    (c_len,) = struct.unpack(">Q", data[offset:offset + 8])
    content = data[offset + 8:offset + 8 + c_len]
    offset += 8 + c_len
    (s_len,) = struct.unpack(">H", data[offset:offset + 2])
    return manifest, content, data[offset + 2:offset + 2 + s_len]


def assemble(manifest: bytes, content: bytes, signature: bytes) -> bytes:
    return b"".join([MAGIC, struct.pack(">I", len(manifest)), manifest, struct.pack(">Q", len(content)), content,
                     struct.pack(">H", len(signature)), signature])


MANIFEST_VALUES = [None, True, False, -1, 0, 1, 2, 2**63, 2**70, 1.5, "1", "", [], {}, [1], {"a": 1}, "x" * 300]


def mutate_bundle(rng: random.Random, data: bytes, key) -> tuple[bytes, str, bool]:
    """(mutated bytes, what was done, re-signed with the trusted key?)."""
    manifest, content, signature = split_bundle(data)
    roll = rng.random()
    if roll < 0.45:
        return mutate_bytes(rng, data), "bytes", False
    if roll < 0.55:
        what = rng.choice(["truncate", "append", "prepend"])
        if what == "truncate":
            return data[:rng.randint(0, len(data) - 1)], what, False
        if what == "append":
            return data + bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 32))), what, False
        return bytes(rng.randint(0, 255) for _ in range(rng.randint(1, 8))) + data, what, False
    fields = json.loads(manifest)
    done = []
    if roll < 0.85:
        for _ in range(rng.randint(1, 3)):
            name = rng.choice(sorted(fields) + ["extra", "encryption"])
            if rng.random() < 0.25:
                fields.pop(name, None)
                done.append(f"-{name}")
            else:
                value = rng.choice(MANIFEST_VALUES + [SEEDED, BUNDLE_AGENCY, BUNDLE_AGENCY.lower(),
                                                      fields.get(name, 0) if isinstance(fields.get(name), int)
                                                      and not isinstance(fields.get(name), bool)
                                                      else 0, (fields.get(name) or 0) + 1
                                                      if isinstance(fields.get(name), int) else 1])
                fields[name] = value
                done.append(f"{name}={short(value, 40)}")
        new_manifest = json.dumps(fields).encode()
    elif roll < 0.92:
        what = rng.choice(["content bytes", "content swapped", "batch bytes", "deep manifest"])
        done.append(what)
        new_manifest = manifest
        if what == "content bytes":
            content = mutate_bytes(rng, content)
        elif what == "content swapped":
            import zstandard
            batch = pb.EventBatch.FromString(zstandard.ZstdDecompressor().decompress(content))
            rng.choice([lambda: batch.events.pop() if len(batch.events) > 1 else None,
                        lambda: setattr(batch.events[0], "notification_id", 0),
                        lambda: setattr(batch, "after", batch.after + 1),
                        lambda: setattr(batch.events[0], "originator_id", "not-a-uuid"),
                        lambda: setattr(batch.events[0], "originator_version", 0)])()
            content = zstandard.ZstdCompressor().compress(batch.SerializeToString())
        elif what == "batch bytes":
            import zstandard
            content = zstandard.ZstdCompressor().compress(bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 80))))
        else:
            new_manifest = b"[" * rng.choice([1000, 100_000])
        fields = None
        if what != "deep manifest":
            fields = json.loads(new_manifest)
            fields["content_sha256"] = hashlib.sha256(content).hexdigest()
            new_manifest = json.dumps(fields).encode()
    else:
        # the manifest and content of a valid bundle for the seeded agency, signed with the bundle agency's key
        fields["agency"] = rng.choice([SEEDED, SEEDED.lower()])
        done.append(f"agency={fields['agency']}")
        new_manifest = json.dumps(fields).encode()
    if rng.random() < 0.85:
        return assemble(new_manifest, content, key.sign(SIGNED_PREFIX + new_manifest)), " ".join(done), True
    return assemble(new_manifest, content, signature), " ".join(done) + " (signature kept)", False


def bundle_problem(manifest, batch, data: bytes, original: bytes, resigned: bool) -> str | None:
    """Why an accepted bundle should not have been (None: acceptable)."""
    if data == original:
        return None
    if not resigned:
        return "a bundle whose bytes were altered without re-signing was accepted"
    raw = json.loads(split_bundle(data)[0])
    ints = ("first", "last", "after", "events")
    if raw.get("format") is not True and raw.get("format") == 1 and type(raw.get("format")) is int:
        pass
    else:
        return f"a signed manifest whose format is {raw.get('format')!r} (not the integer 1) was accepted"
    for name in ints:
        if type(raw.get(name)) is not int:
            return f"a signed manifest whose {name} is not an integer (a JSON {type(raw.get(name)).__name__}) was accepted"
    for name in ("created", "key_id", "content_sha256"):
        if type(raw.get(name)) is not str:
            return f"a signed manifest whose {name} is not text (a JSON {type(raw.get(name)).__name__}) was accepted"
    if manifest.agency != BUNDLE_AGENCY:
        return f"a bundle claiming agency {manifest.agency} signed with the key of {BUNDLE_AGENCY} was accepted"
    ids = [e.notification_id for e in batch.events]
    if not ids or batch.after != manifest.after or len(ids) != manifest.events or (ids[0], ids[-1]) != (
            manifest.first, manifest.last) or any(b <= a for a, b in zip([manifest.after, *ids], ids)):
        return "an accepted bundle's manifest and content disagree"
    return None


def fuzz_bundle_read(ctx: Context, tally: Tally, count: int) -> None:
    rng = ctx.rng
    work = ctx.dir / "bundle-read"
    work.mkdir(exist_ok=True)
    key = ctx.hub.private_key
    trusted = {BUNDLE_AGENCY: ctx.hub.public_key}
    originals = [build_bundle(key, BUNDLE_AGENCY, after, n, work) for after, n in ((0, 1), (4, 4), (10, 20), (100, 3))]
    path = work / f"{BUNDLE_AGENCY}-fuzz.bundle"
    while tally.inputs < count:  # bounded: each pass counts one input
        tally.inputs += 1
        original = rng.choice(originals)
        data, what, resigned = mutate_bundle(rng, original, key)
        path.write_bytes(data)
        example = f"read_bundle of a valid bundle after: {what}; bytes (base64) {base64.b64encode(data).decode()[:800]}"
        try:
            manifest, batch = read_bundle(path, trusted)
        except BundleError as e:
            if data == original:
                tally.wrongly_refused_("an unaltered bundle was refused", example + f" error={e}")
            else:
                tally.refuse()
            continue
        except Exception as e:  # noqa: BLE001 - anything but BundleError is a crash
            tally.crash(f"{type(e).__name__}: {signature_of(str(e))}",
                        example + f"\n{''.join(traceback.format_exception_only(e)).strip()}")
            continue
        problem = bundle_problem(manifest, batch, data, original, resigned)
        if problem:
            tally.wrongly_accepted(problem, example)
        else:
            tally.accept()


def fuzz_bundle_import(ctx: Context, tally: Tally, count: int) -> None:
    """`exchange hub import DIR` beside the running hub: a valid next bundle plus mutated ones per directory."""
    rng = ctx.rng
    key = ctx.hub.private_key
    work = ctx.dir / "bundle-import"
    work.mkdir(exist_ok=True)
    versions: dict = {}
    position = ctx.hub.position(BUNDLE_AGENCY).position
    per_dir = 25
    for _ in range(max(1, math.ceil(count / per_dir)) + 1):
        if ctx.hub_down or tally.inputs >= count:
            return
        directory = work / f"round-{tally.inputs:06d}"
        directory.mkdir()
        n = min(per_dir, count - tally.inputs)
        scratch_versions = dict(versions)
        valid = build_bundle(key, BUNDLE_AGENCY, position, rng.randint(1, 5), directory, scratch_versions)
        manifest = json.loads(split_bundle(valid)[0])
        files: dict[str, tuple[bytes, str, bool, bytes]] = {}
        valid_name = f"{BUNDLE_AGENCY}-{manifest['first']:012d}-{manifest['last']:012d}.bundle"
        files[valid_name] = (valid, "unaltered next bundle", True, valid)
        for i in range(n - 1):
            data, what, resigned = mutate_bundle(rng, valid, key)
            files[f"{BUNDLE_AGENCY}-{manifest['first']:012d}-{manifest['last']:012d}-m{i:02d}.bundle"] = (
                data, what, resigned, valid)
        for name, (data, *_rest) in files.items():
            (directory / name).write_bytes(data)
        before_seeded = ctx.hub.position(SEEDED)
        result = subprocess.run([*EXCHANGE, "hub", "import", str(directory), "--config", str(ctx.hub.config)],
                                capture_output=True, text=True, timeout=300)
        tally.inputs += len(files)
        example_dir = f"exchange hub import {directory} (kept with --keep)"
        try:
            report = json.loads(result.stdout.strip().splitlines()[-1]) if result.stdout.strip() else None
        except json.JSONDecodeError:
            report = None
        if result.returncode not in (0, 1) or report is None or "Traceback" in result.stderr:
            for _ in files:
                tally.crash(f"hub import exit {result.returncode}",
                            example_dir + f"\nstderr: {result.stderr[-1500:]}")
            continue
        imported = {r["file"]: r for r in report["imported"]}
        refused = {r["file"] for r in report["quarantined"]} | {r["file"] for r in report["pending"]}
        for name, (data, what, resigned, original) in files.items():
            example = f"{example_dir}: {name}: {what}"
            if name in imported:
                if data == original:
                    tally.accept()
                elif not resigned:
                    tally.wrongly_accepted("hub import took a bundle altered without re-signing", example)
                else:
                    raw = json.loads(split_bundle(data)[0]) if data.startswith(MAGIC) else {}
                    wrong = [k for k in ("format", "first", "last", "after", "events") if type(raw.get(k)) is not int]
                    if raw.get("agency") != BUNDLE_AGENCY:
                        tally.wrongly_accepted("hub import took a bundle claiming another agency", example)
                    elif wrong:
                        tally.wrongly_accepted(f"hub import took a signed bundle whose manifest {wrong[0]} is not an "
                                               "integer", example)
                    else:
                        tally.accept()
            elif name in refused:
                if name == valid_name:
                    tally.wrongly_refused_("hub import refused the unaltered next bundle",
                                           example + f" report={short(report, 600)}")
                else:
                    tally.refuse()
            else:
                tally.crash("hub import neither imported nor refused a bundle", example + f" report={short(report, 600)}")
        after_seeded = ctx.hub.position(SEEDED)
        if after_seeded != before_seeded:
            tally.wrongly_accepted(f"hub import changed the seeded agency {SEEDED}", example_dir)
            ctx.seeded_position = after_seeded
        now = ctx.hub.position(BUNDLE_AGENCY).position
        if now != position:
            versions = scratch_versions if now == manifest["last"] else versions
            position = now
            if now != manifest["last"]:  # a mutated bundle moved the position: follow the hub's store
                versions = {}
                for _, record, version, _, _ in ctx.hub.served(BUNDLE_AGENCY):
                    versions[uuid.UUID(record)] = version
        shutil.rmtree(directory, ignore_errors=True) if not ctx.verbose else None


# -- file drops -----------------------------------------------------------------------------------

class DuplicateKey(ValueError):
    pass


def _pairs(pairs: list) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        raise DuplicateKey("duplicate object key")
    return dict(pairs)


def reference_drop(fmt: str, data: bytes) -> tuple[bool, str, dict | None]:
    """An independent reading of adapters/files' contract: (valid, why not, {key: row} when valid)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return False, "not UTF-8", None
    if text.startswith("\ufeff"):
        text = text[1:]
    rows: list[dict] = []
    if fmt == "csv":
        if re.search(r"\r(?!\n|\Z)", text):  # (a CR ending the file is a cut CRLF: harmless)
            return False, "a bare carriage return", None
        try:
            records = [r for r in csv.reader(io.StringIO(text, newline=""), strict=True) if r]
        except csv.Error as e:
            return False, f"bad CSV {e}", None
        if not records:
            return False, "empty CSV", None
        header = records[0]
        if any(not h for h in header) or len(set(header)) != len(header):
            return False, "bad header", None
        for r in records[1:]:
            if len(r) != len(header):
                return False, "field count", None
            rows.append(dict(zip(header, r)))
        columns = header
    else:
        def constant(name: str):
            raise ValueError(name)

        def integer(text: str) -> int | str:  # beyond 64 bits the source carries the exact decimal text
            return int(text) if len(text) <= 20 else text

        def check_value(v: Any) -> None:
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError("non-finite number")
            if isinstance(v, str) and any(0xD800 <= ord(ch) <= 0xDFFF for ch in v):
                raise ValueError("lone surrogate")
        try:
            if fmt == "json":
                value = json.loads(text, object_pairs_hook=_pairs, parse_constant=constant, parse_int=integer)
                if not isinstance(value, list):
                    return False, "not an array", None
                objects = value
            else:
                objects = [json.loads(line, object_pairs_hook=_pairs, parse_constant=constant, parse_int=integer)
                           for line in text.splitlines() if line.strip()]
                if not objects:
                    return False, "empty JSON lines", None
        except DuplicateKey:
            return False, "duplicate object key", None
        except (ValueError, RecursionError) as e:
            return False, f"bad JSON {type(e).__name__}", None
        if not objects:
            return True, "", {}
        if not all(isinstance(o, dict) and o for o in objects):
            return False, "not objects", None
        columns = list(objects[0])
        for o in objects:
            if set(o) != set(columns):
                return False, "columns differ", None
            for k, v in o.items():
                if isinstance(v, (dict, list)):
                    return False, "nested value", None
                try:
                    check_value(v)
                    check_value(k)
                except ValueError as e:
                    return False, str(e), None
        rows = objects
    if "id" not in columns:
        return False, "key column missing", None
    keyed: dict = {}
    for row in rows:
        if row["id"] is None:
            return False, "null key", None
        k = json.dumps([row["id"]], ensure_ascii=False)
        if k in keyed:
            return False, "duplicate key", None
        keyed[k] = row
    return True, "", keyed


def drop_content(rng: random.Random, fmt: str) -> bytes:
    n = rng.choice([0, 1, 2, 3, 5, 10])
    columns = ["id", "name", "value"]
    rows = [{"id": i, "name": rng.choice(["a", "b", "王伟", ""]), "value": rng.choice([1, 2.5, True, None, "x"])}
            for i in range(1, n + 1)]
    faults = rng.choice([0, 0, 1, 1, 1, 2])
    bom = False
    hostile_values = ["1e999", "-1e999", "NaN", "Infinity", "-Infinity", "9" * 5000, "9" * 4301, "1" + "0" * 400 + ".5",
                      '"\\ud800"', '"\\udfff x"', '"\\u0000"', "[" * 100_000, "[" * 500 + "]" * 500,
                      '{"a": ' * 2000 + "1" + "}" * 2000, "[1, 2]", '{"a": 1}', "-0", "1E400", "0.1e-400",
                      '"' + "x" * 300_000 + '"', "true", "null", '"😀"']
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator=rng.choice(["\n", "\r\n"]))
        header = list(columns)
        body = [[str(r[c]) if r[c] is not None else "" for c in columns] for r in rows]
        for _ in range(faults):
            kind = rng.choice(["dup header", "no key", "empty header", "dup key", "short row", "long row", "quote",
                               "nul", "huge field", "bom"])
            if kind == "dup header":
                header.append("name")
                body = [b + ["z"] for b in body]
            elif kind == "no key":
                header[0] = "ident"
            elif kind == "empty header":
                header.append("")
                body = [b + ["z"] for b in body]
            elif kind == "dup key" and body:
                body.append(list(body[0]))
            elif kind == "short row" and body:
                body[-1] = body[-1][:-1]
            elif kind == "long row" and body:
                body[-1] = body[-1] + ["extra"]
            elif kind == "nul" and body:
                body[0][1] = "a\x00b"
            elif kind == "huge field" and body:
                body[0][1] = "x" * rng.choice([200_000, 140_000])
            elif kind == "bom":
                bom = True
            elif kind == "quote" and body:
                body[0][1] = 'he said "hi"\nnext line'
        writer.writerow(header)
        writer.writerows(body)
        data = out.getvalue().encode()
        if bom:
            data = b"\xef\xbb\xbf" + data
    else:
        texts = [json.dumps(r, ensure_ascii=rng.random() < 0.5) for r in rows]
        for _ in range(faults):
            kind = rng.choice(["value", "value", "value", "dup key", "missing key", "extra col", "null key",
                               "dup id", "nested", "not object", "truncate", "trailing"])
            if not texts:
                texts = ['{"id": 1, "name": "a", "value": 1}']
            i = rng.randrange(len(texts))
            if kind == "value":
                value = rng.choice(hostile_values)
                texts[i] = re.sub(r'"value": [^,}]*', lambda _m: '"value": ' + value, texts[i], count=1)
            elif kind == "dup key":
                texts[i] = texts[i][:-1] + ', "name": "again"}'
            elif kind == "missing key":
                try:
                    texts[i] = json.dumps({k: v for k, v in json.loads(texts[i]).items() if k != "id"})
                except (ValueError, AttributeError, RecursionError):
                    texts[i] = '{"name": "no id"}'
            elif kind == "extra col":
                texts[i] = texts[i][:-1] + ', "more": 1}'
            elif kind == "null key":
                texts[i] = texts[i].replace('"id": ', '"id": null, "was": ', 1)
            elif kind == "dup id" and rows:
                texts.append(texts[0])
            elif kind == "nested":
                texts[i] = texts[i][:-1] + ', "n": {"a": [1]}}'
            elif kind == "not object":
                texts[i] = rng.choice(["1", '"s"', "[]", "null", "{}"])
            elif kind == "truncate":
                texts[i] = texts[i][:rng.randint(0, len(texts[i]))]
            elif kind == "trailing":
                texts[i] = texts[i] + rng.choice([" x", ",", "}", "]"])
        if fmt == "json":
            data = ("[" + rng.choice([",", ",\n"]).join(texts) + "]").encode()
        else:
            data = ("\n".join(texts) + rng.choice(["", "\n", "\n\n"])).encode()
    roll = rng.random()
    if roll < 0.08:
        data = mutate_bytes(rng, data)
    elif roll < 0.12:
        data = data.replace(b"a", b"\xc3\x28", 1) if b"a" in data else data + b"\xff"
    elif roll < 0.14:
        data = bytes(rng.randint(0, 255) for _ in range(rng.randint(0, 100)))
    return data


def fuzz_drops(ctx: Context, tally: Tally, count: int, fmt: str) -> None:
    rng = ctx.rng
    directory = ctx.dir / f"drops-{fmt}"
    directory.mkdir(exist_ok=True)
    state = ctx.dir / f"drops-{fmt}-state.db"

    def open_source():
        return adapters.open_source(f"files://{directory}", ["t"], {"t": ["id"]}, settle_seconds=0,
                                    state_path=str(state))
    source = open_source()
    source.prepare()
    after = 0
    while tally.inputs < count:  # bounded: each pass counts one input
        n = tally.inputs
        tally.inputs += 1
        try:
            data = drop_content(rng, fmt)
        except (ValueError, RecursionError):  # a generator edge case: an empty table instead
            data = b"[]" if fmt == "json" else b"id\n"
        valid, why, rows = reference_drop(fmt, data)
        path = directory / f"t-{n:06d}.{fmt}"
        path.write_bytes(data)
        example = f"drop file {path.name} ({len(data)} bytes): {data[:600]!r}"
        try:
            changes = source.read(after, 100_000)
        except Exception as e:  # noqa: BLE001 - a drop source refuses a file by leaving it; anything raised is a crash
            tally.crash(f"{type(e).__name__}: {signature_of(str(e))}",
                        example + f"\n{''.join(traceback.format_exception_only(e)).strip()}")
            path.unlink(missing_ok=True)
            source.close()
            source = open_source()
            continue
        taken = not path.exists()
        if changes:
            after = changes[-1].position
        if not taken:
            path.unlink()
            tally.wrongly_refused_("a valid drop file was refused", example) if valid else tally.refuse()
            continue
        if not valid:
            tally.wrongly_accepted(f"a drop file with {why} was taken", example)
            continue
        problem = None
        for change in changes:
            for image in (change.after,):  # what this file brought
                if image is None:
                    continue
                try:
                    json.dumps(image, allow_nan=False).encode("utf-8")
                except (ValueError, UnicodeEncodeError) as e:
                    problem = f"a captured row is not valid JSON text ({type(e).__name__})"
        if problem:
            tally.wrongly_accepted(problem, example)
        else:
            tally.accept()
        if n % 200 == 0 and after:
            source.acknowledge(after)
    source.close()


def log_exceptions(text: str) -> dict[tuple[str, str, str], int]:
    """Tracebacks in the hub's log that no answer showed: (the log line before, last frame, exception) -> count.
    Those of a batch refused with INTERNAL (hub/api.py _store) are counted with the calls already."""
    found: dict[tuple[str, str, str], int] = defaultdict(int)
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("Traceback (most recent call last):"):
            continue
        where = re.sub(r"^\S+ \S+ ", "", lines[i - 1]) if i else ""
        if where.startswith(("Traceback", "  ", "During handling")) or not where.strip():
            continue  # a chained traceback: counted with its first part
        frames, j = [], i + 1
        while j < len(lines) and (lines[j].startswith(" ") or not lines[j].strip()):
            if lines[j].strip().startswith("File "):
                frames.append(lines[j].strip())
            j += 1
        exception = lines[j] if j < len(lines) else "?"
        if any("hub/api.py" in f and "in _store" in f for f in frames) or "storing a batch for agency" in where \
                or "deserializ" in where.lower() or "grpc._server" in where:
            continue  # answered to the caller (INTERNAL/UNKNOWN): counted with the calls
        frame = re.sub(r'File ".*?([^/]+/[^/]+\.py)", line (\d+), in (\S+)', r"\1:\2 \3", frames[-1]) if frames else "?"
        found[(signature_of(where), frame, signature_of(exception))] += 1
    return found


# -- the run --------------------------------------------------------------------------------------

def allocate(total: int) -> dict[str, int]:
    counts = {s: max(1, int(total * share)) for s, share in SHARES.items()}
    counts["wire.publish"] += total - sum(counts.values())
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=100_000, help="total generated inputs (default 100000)")
    parser.add_argument("--seed", type=int, default=2016, help="random seed (default 2016)")
    parser.add_argument("--keep", help="work in this directory and keep it (hub store, logs, bundles)")
    parser.add_argument("--verbose", action="store_true", help="print progress")
    args = parser.parse_args()
    logging.disable(logging.CRITICAL)  # the file-drop source logs each refusal; outcomes are counted here
    counts = allocate(args.inputs)
    rng = random.Random(args.seed)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        directory = Path(args.keep) if args.keep else Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        hub = Hub(directory)
        hub.start()
        try:
            seed(hub, directory)
            seeded_entry = cpb_grpc.CatalogStub(hub.channel).GetEntry(cpb.EntryRef(code=SEED_CODE), timeout=CALL_TIMEOUT)
            ctx = Context(hub, rng, directory, args.verbose)
            print(f"seeded: {len(ctx.seeded_log)} events of {SEEDED} (position {ctx.seeded_position.position}), "
                  f"catalog entry {SEED_CODE} {seeded_entry.status}; seed {args.seed}, {args.inputs} inputs", flush=True)
            tallies = []
            plan: list[tuple[str, Callable[[Context, Tally, int], None]]] = [
                ("wire.publish", fuzz_publish), ("wire.raw", fuzz_raw), ("wire.position", fuzz_position),
                ("catalog", fuzz_catalog), ("sharing", fuzz_sharing), ("wire.subscribe", fuzz_subscribe),
                ("bundle.read", fuzz_bundle_read), ("bundle.import", fuzz_bundle_import),
                ("drop.csv", lambda c, t, n: fuzz_drops(c, t, n, "csv")),
                ("drop.json", lambda c, t, n: fuzz_drops(c, t, n, "json")),
                ("drop.jsonl", lambda c, t, n: fuzz_drops(c, t, n, "jsonl")),
            ]
            for surface, run in plan:
                tally = Tally(surface)
                began = time.perf_counter()
                for _ in range(20):  # a harness error ends one input, not the surface (at most 20 times)
                    try:
                        run(ctx, tally, counts[surface])
                        break
                    except Exception as e:  # noqa: BLE001 - the harness itself failed: say so, go on
                        tally.crash(f"harness error {type(e).__name__}", traceback.format_exc()[-2000:])
                    if tally.inputs >= counts[surface] or ctx.hub_down:
                        break
                tally.seconds = time.perf_counter() - began
                tallies.append(tally)
                if args.verbose:
                    print(f"  {surface}: {tally.inputs} inputs, {tally.seconds:.1f}s", flush=True)
            # After: the hub still runs and answers; the seeded agency's events and entry are unchanged.
            running = hub.running()
            healthy = hub.healthy(timeout=10)
            log_after = hub.stored(SEEDED)
            unchanged = log_after == ctx.seeded_log
            entry_after = None
            try:
                entry_after = cpb_grpc.CatalogStub(hub.channel).GetEntry(cpb.EntryRef(code=SEED_CODE),
                                                                         timeout=CALL_TIMEOUT)
            except grpc.RpcError:
                pass
            entry_unchanged = entry_after is not None and (entry_after.published, entry_after.status,
                                                           entry_after.content.agency) == (
                seeded_entry.published, seeded_entry.status, seeded_entry.content.agency)
        finally:
            hub.stop()
        background = log_exceptions(hub.log())
    total = time.perf_counter() - started
    print()
    header = f"{'surface':<16}{'inputs':>9}{'refused':>9}{'accepted':>10}{'wrongly acc.':>14}{'wrongly ref.':>14}" \
             f"{'crashes':>9}{'seconds':>9}"
    print(header)
    print("-" * len(header))
    for t in tallies:
        print(f"{t.surface:<16}{t.inputs:>9}{t.refused:>9}{t.accepted:>10}{t.wrong:>14}{t.wrongly_refused:>14}"
              f"{t.crashes:>9}{t.seconds:>9.1f}")
    sums = [sum(getattr(t, a) for t in tallies) for a in ("inputs", "refused", "accepted", "wrong", "wrongly_refused",
                                                          "crashes")]
    print("-" * len(header))
    print(f"{'total':<16}{sums[0]:>9}{sums[1]:>9}{sums[2]:>10}{sums[3]:>14}{sums[4]:>14}{sums[5]:>9}{total:>9.1f}")
    print()
    print(f"hub still running: {running}; answering health checks: {healthy}")
    print(f"stored events of {SEEDED} unchanged: {unchanged} ({len(ctx.seeded_log)} before, {len(log_after)} after); "
          f"catalog entry {SEED_CODE} unchanged: {entry_unchanged}")
    print(f"hub log: {sum(background.values())} tracebacks outside the calls counted above "
          f"(where logged | last frame | exception):")
    for (where, frame, exception), n in sorted(background.items(), key=lambda kv: -kv[1])[:12]:
        print(f"    x{n}  {where[:110]} | {frame} | {exception[:160]}")
    findings = [(t.surface, key, t.counts[key], examples) for t in tallies for key, examples in t.findings.items()]
    if findings:
        print("\nfindings (count, first examples):")
        for surface, key, n, examples in sorted(findings, key=lambda f: (not f[1].startswith(("CRASH", "WRONG")), f[0])):
            print(f"\n[{surface}] {key}  x{n}")
            for example in examples[:EXAMPLES]:
                print("    " + example.replace("\n", "\n    ")[:2500])
    bad = sums[3] or sums[5] or background or not (running and healthy and unchanged and entry_unchanged)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
