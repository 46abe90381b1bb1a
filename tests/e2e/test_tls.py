"""Mutual TLS and authorisation: real hub and node processes over TLS on loopback.

One CA (made with ``exchange ca``) and one TLS hub per module; agencies A and
B, an administrator, a second CA nobody trusts, expired and revoked
certificates.  Identity comes from the certificate, never from the message.
"""

from __future__ import annotations

import queue
import re
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.pki import PKI, client, events, get_position, publish, run_exchange, subscribe_first, tls_settings
from test_exchange_e2e import AGENCY, assert_exactly_once, wait_caught_up

from exchange.demos.sample import TABLES
from exchange.transport.rpc import tls
from exchange.transport.rpc.health import http_answers
from protos.exchange.v1 import catalog_pb2, catalog_pb2_grpc, sharing_pb2, sharing_pb2_grpc
from protos.exchange.v1 import exchange_pb2 as pb
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

OTHER = "91310000OTHER00001"
ADMIN = "admin-ops"
REFUSED_AT_HANDSHAKE = (grpc.StatusCode.UNAVAILABLE,)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    return PKI(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def certs(pki) -> dict[str, dict]:
    """Certificates by who holds them."""
    now = datetime.now(timezone.utc)
    stranger_ca = PKI(pki.dir.parent / "stranger", name="Someone else's CA")
    return {
        "A": pki.issue("agency", AGENCY),
        "B": pki.issue("agency", OTHER),
        "admin": pki.issue("administrator", ADMIN),
        "unlisted admin": pki.issue("administrator", "admin-other"),
        "hub": pki.issue("hub", "hub-probe"),
        "expired A": pki.issue("agency", "EXPIRED_A", not_before=now - timedelta(days=30),
                               not_after=now - timedelta(days=1)),
        "stranger A": stranger_ca.issue("agency", AGENCY),
    }


@pytest.fixture(scope="module")
def tls_hub(module_launch, pki):
    return module_launch.hub("tls-hub", config={"tls": pki.hub_tls(), "security": {"administrators": [ADMIN]}})


def test_a_node_with_a_valid_certificate_publishes_over_tls(launch, tls_hub, certs, agency):
    node = launch.node(tls_hub.grpc_address, Path(agency.path), TABLES, config={"tls": tls_settings(certs["A"])})
    wait_caught_up(node)
    assert_exactly_once(node, tls_hub)
    assert "WITHOUT TLS" not in node.log()
    for process, holder in ((node, "A"), (tls_hub, "hub")):
        presented = certs["A"]["cert"] if holder == "A" else tls_hub.config["tls"]["cert"]
        expiry = tls.load_certificates(presented, "cert")[0].not_valid_after_utc.timestamp()
        assert _expiry_metric(process) == expiry


def _expiry_metric(process) -> float:
    url = f"http://127.0.0.1:{process.config['metrics']['port']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    return float(re.search(r"^exchange_certificate_expiry_timestamp_seconds (\S+)$", text, re.MULTILINE).group(1))


# Identity: the certificate, never the message.

def test_a_certificate_of_one_agency_cannot_publish_for_another(tls_hub, certs):
    with client(tls_hub.grpc_address, certs["A"]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            publish(channel, OTHER, [pb.EventBatch(after=0, events=events(2))])
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"belongs to {AGENCY}, not to {OTHER}" in refused.value.details()
    with client(tls_hub.grpc_address, certs["B"]) as channel:
        assert get_position(channel, OTHER).position == 0  # nothing was stored for B


@pytest.mark.parametrize("holder", ["admin", "hub"])
def test_a_certificate_that_is_not_an_agencys_cannot_act_for_one(tls_hub, certs, holder):
    with client(tls_hub.grpc_address, certs[holder]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            get_position(channel, "")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only an agency's certificate may act for an agency" in refused.value.details()


@pytest.mark.parametrize("holder, expected", [
    ("stranger A", "a certificate from a CA the hub does not trust"),
    ("expired A", "an expired certificate"),
])
def test_the_handshake_refuses_untrusted_and_expired_certificates(tls_hub, certs, holder, expected, pki, tmp_path):
    settings = dict(certs[holder])
    settings["ca"] = certs["A"]["ca"]  # trusts the hub; only the client certificate is wrong
    channel = grpc.secure_channel(tls_hub.grpc_address, grpc.ssl_channel_credentials(
        Path(settings["ca"]).read_bytes(), Path(settings["key"]).read_bytes(), Path(settings["cert"]).read_bytes()))
    with channel, pytest.raises(grpc.RpcError) as refused:
        get_position(channel, AGENCY)
    assert refused.value.code() in REFUSED_AT_HANDSHAKE, expected


def test_a_node_with_an_expired_certificate_refuses_to_start_saying_so(launch, tls_hub, certs, agency):
    with pytest.raises(RuntimeError, match=r"exited with code 2[\s\S]*expired at"):
        launch.node(tls_hub.grpc_address, Path(agency.path), TABLES, name="expired-node",
                    config={"tls": tls_settings(certs["expired A"])})


def test_a_node_with_a_certificate_from_another_ca_refuses_to_start(launch, tls_hub, certs, agency):
    with pytest.raises(RuntimeError, match=r"exited with code 2[\s\S]*was not issued by the CA"):
        launch.node(tls_hub.grpc_address, Path(agency.path), TABLES, name="stranger-node",
                    config={"tls": {**tls_settings(certs["stranger A"]), "ca": certs["A"]["ca"]}})


def test_a_plain_connection_to_a_tls_hub_is_refused(tls_hub):
    with client(tls_hub.grpc_address, None) as channel, pytest.raises(grpc.RpcError) as refused:
        get_position(channel, AGENCY)
    assert refused.value.code() in REFUSED_AT_HANDSHAKE


def test_a_revoked_certificate_is_refused_without_restarting_the_hub(tls_hub, pki):
    revoked = pki.issue("agency", "REVOKED_AGENCY")
    with client(tls_hub.grpc_address, revoked) as channel:
        answers = publish(channel, "REVOKED_AGENCY", [pb.EventBatch(after=0, events=events(2))])
        assert answers[-1].stored == 2
        report = pki.revoke("--agency", "REVOKED_AGENCY")
        assert report["revoked_now"] == [revoked["serial"]]
        with pytest.raises(grpc.RpcError) as refused:
            get_position(channel, "REVOKED_AGENCY")
        with pytest.raises(grpc.RpcError) as health_refused:  # every service, not only those asking who calls
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=30)
    assert refused.value.code() == health_refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert f"serial {revoked['serial']}) has been revoked" in refused.value.details()
    assert tls_hub.running


def test_a_revocation_stops_an_open_publish_stream(tls_hub, pki):
    revoked = pki.issue("agency", "STREAMING_AGENCY")
    record = events(3)
    with client(tls_hub.grpc_address, revoked) as channel:
        requests: queue.Queue = queue.Queue()
        requests.put(pb.PublishRequest(hello=pb.Hello(agency="STREAMING_AGENCY")))
        responses = pb_grpc.ExchangeStub(channel).Publish(iter(requests.get, None), timeout=20)
        assert next(responses).position == 0
        requests.put(pb.PublishRequest(batch=pb.EventBatch(after=0, events=record[:1])))
        assert next(responses).stored == 1
        pki.revoke(revoked["serial"])
        requests.put(pb.PublishRequest(batch=pb.EventBatch(after=1, events=record[1:])))
        with pytest.raises(grpc.RpcError) as refused:
            next(responses)
        requests.put(None)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "has been revoked" in refused.value.details()


# Access matrix: who may do what.  Deny by default.

ALLOW, DENY = "allow", "deny"
MATRIX = {
    # holder:           publish A, subscribe A, position A, admin call
    "A": (ALLOW, ALLOW, ALLOW, DENY),
    "B": (DENY, DENY, DENY, DENY),
    "admin": (DENY, DENY, DENY, ALLOW),
    "unlisted admin": (DENY, DENY, DENY, DENY),
    "hub": (DENY, DENY, DENY, DENY),
}
ACTIONS = ("publish", "subscribe", "position", "admin call")


def _attempt(action: str, address: str, tls_settings_: dict) -> str:
    with client(address, tls_settings_) as channel:
        try:
            if action == "publish":
                publish(channel, AGENCY, [])
            elif action == "subscribe":
                subscribe_first(channel, AGENCY, timeout=2, resource="persons")
            elif action == "position":
                get_position(channel, AGENCY)
            else:  # the catalog's publish step, for an entry that does not exist
                catalog_pb2_grpc.CatalogStub(channel).Publish(catalog_pb2.EntryRef(code="101001/9999"), timeout=30)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.PERMISSION_DENIED:
                return DENY
            if action == "admin call" and e.code() == grpc.StatusCode.NOT_FOUND:
                return ALLOW  # let through to the catalog's own rules
            raise
    return ALLOW


@pytest.mark.parametrize("holder", list(MATRIX))
@pytest.mark.parametrize("action", ACTIONS)
def test_access_matrix(tls_hub, certs, holder, action):
    expected = MATRIX[holder][ACTIONS.index(action)]
    assert _attempt(action, tls_hub.grpc_address, certs[holder]) == expected


def test_a_refused_administrative_call_is_audited(tls_hub, certs):
    assert _attempt("admin call", tls_hub.grpc_address, certs["B"]) == DENY
    audit = Path(tls_hub.config["store"]["url"].removeprefix("sqlite:///")).parent / "audit.log"
    entry = [line for line in audit.read_text().splitlines() if OTHER in line][-1]
    assert '"action":"access.refused"' in entry and "is not a hub administrator" in entry


# Starting a hub: TLS or an explicit, loopback-only insecure setting.

def _hub_run(tmp_path: Path, toml: str) -> subprocess.CompletedProcess:
    config = tmp_path / "hub.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{tmp_path}/hub.db"\n[metrics]\nport = 0\n' + toml)
    return subprocess.run([sys.executable, "-m", "exchange", "hub", "run", "--config", str(config)],
                          capture_output=True, text=True, timeout=60)


def test_an_insecure_hub_on_a_network_address_refuses_to_start(tmp_path, free_port):
    result = _hub_run(tmp_path, f'[listen]\naddress = "0.0.0.0:{free_port()}"\ninsecure = true\n')
    assert result.returncode == 2
    assert "insecure = true is refused on 0.0.0.0" in result.stderr


def test_a_hub_without_tls_or_the_insecure_setting_refuses_to_start(tmp_path, free_port):
    result = _hub_run(tmp_path, f'[listen]\naddress = "127.0.0.1:{free_port()}"\n')
    assert result.returncode == 2
    assert "no [tls] ca, cert and key" in result.stderr


def test_an_insecure_hub_warns_loudly(hub):
    assert "INSECURE: listening on" in hub.log()


def test_a_node_refuses_a_plain_connection_to_a_remote_hub(launch, agency):
    with pytest.raises(RuntimeError, match=r"exited with code 2[\s\S]*insecure = true is refused for 10.1.2.3:50051"):
        launch.node("10.1.2.3:50051", Path(agency.path), TABLES, name="remote-plain")


@pytest.mark.parametrize("change, expected", [
    ({"crl": "missing-crl.pem"}, "missing-crl.pem: cannot read it"),
    ({"key": "A-key"}, "does not belong to the certificate"),
    ({"crl": "stranger-crl"}, "is not signed by the CA"),
    ({"cert": "expired"}, "expired at"),
], ids=["missing CRL", "key of another certificate", "CRL of another CA", "expired hub certificate"])
def test_a_hub_with_unusable_tls_files_refuses_to_start(tmp_path, free_port, pki, certs, change, expected):
    settings = pki.hub_tls(f"hub-{len(list(pki.certs.glob('hub-*.pem')))}")
    stand_ins = {"A-key": certs["A"]["key"], "expired": certs["expired A"]["cert"],
                 "stranger-crl": str(pki.dir.parent / "stranger" / "ca" / "crl.pem")}
    for key, value in change.items():
        settings[key] = stand_ins.get(value, str(tmp_path / value))
    if "expired" in change.values():
        settings["key"] = certs["expired A"]["key"]
    tls_toml = "".join(f'{k} = "{v}"\n' for k, v in settings.items() if k != "serial")
    result = _hub_run(tmp_path, f'[listen]\naddress = "127.0.0.1:{free_port()}"\n[tls]\n{tls_toml}')
    assert result.returncode == 2
    assert expected in result.stderr


def test_a_broken_or_older_crl_never_makes_a_revoked_certificate_valid_again(tls_hub, pki):
    holder = pki.issue("agency", "CRL_ROLLBACK")
    crl = Path(pki.crl)
    older = crl.read_bytes()
    pki.revoke(holder["serial"])
    newer = crl.read_bytes()
    with client(tls_hub.grpc_address, holder) as channel:
        for replacement in (older, b"not a CRL at all"):
            with pytest.raises(grpc.RpcError) as refused:
                get_position(channel, "CRL_ROLLBACK")
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
            crl.write_bytes(replacement)
        with pytest.raises(grpc.RpcError) as refused:
            get_position(channel, "CRL_ROLLBACK")
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    crl.write_bytes(newer)
    assert "cannot be used" in tls_hub.log()


def test_a_node_store_is_restored_over_tls_only_with_the_agencys_own_certificate(launch, pki, certs, agency, tmp_path):
    hub = launch.hub("restore-hub", config={"tls": pki.hub_tls("restore-hub")})
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES, config={"tls": tls_settings(certs["A"])})
    at_hub = wait_caught_up(node)["hub_position"]
    node.kill()
    lost = tmp_path / "lost-store.db"
    forged = tmp_path / "forged.toml"
    forged.write_text(node.config_path.read_text().replace(node.config["store"]["url"], f"sqlite:///{lost}")
                      .replace(certs["A"]["cert"], certs["B"]["cert"]).replace(certs["A"]["key"], certs["B"]["key"]))
    refused = subprocess.run([sys.executable, "-m", "exchange", "node", "restore", "--config", str(forged)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert f"belongs to {OTHER}, not to {AGENCY}" in refused.stderr
    genuine = tmp_path / "genuine.toml"
    genuine.write_text(node.config_path.read_text().replace(node.config["store"]["url"], f"sqlite:///{lost}"))
    restored = subprocess.run([sys.executable, "-m", "exchange", "node", "restore", "--config", str(genuine)],
                              capture_output=True, text=True, timeout=120)
    assert restored.returncode == 0, restored.stderr
    assert '"hub_position": %d' % at_hub in restored.stdout


def test_the_ca_commands_issue_list_revoke_and_re_sign(tmp_path):
    ca_dir = str(tmp_path / "ca")
    run_exchange("ca", "init", "--dir", ca_dir)
    hub = run_exchange("ca", "issue", "--dir", ca_dir, "--hub", "hub", "--host", "hub.example.gov.cn",
                       "--host", "10.0.0.5", "--days", "30")
    names = x509.load_pem_x509_certificate(Path(hub["cert"]).read_bytes()).extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["hub.example.gov.cn"]
    assert [str(a) for a in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert oct(Path(hub["key"]).stat().st_mode & 0o777) == "0o600"
    admin = run_exchange("ca", "issue", "--dir", ca_dir, "--admin", "admin-ops")
    run_exchange("ca", "revoke", "--dir", ca_dir, "--admin", "admin-ops")
    listed = {entry["name"]: entry for entry in run_exchange("ca", "list", "--dir", ca_dir)}
    assert (listed["admin-ops"]["revoked"], listed["hub"]["revoked"]) == (True, False)
    assert listed["admin-ops"]["serial"] == admin["serial"]
    crl_path = Path(ca_dir) / "crl.pem"
    number = lambda: x509.load_pem_x509_crl(crl_path.read_bytes()).extensions.get_extension_for_class(  # noqa: E731
        x509.CRLNumber).value.crl_number
    before = number()
    run_exchange("ca", "crl", "--dir", ca_dir)
    crl = x509.load_pem_x509_crl(crl_path.read_bytes())
    assert number() == before + 1 and crl.get_revoked_certificate_by_serial_number(int(admin["serial"], 16))
    for args, message in [(["init"], "already holds a CA"), (["issue", "--admin", "admin-ops"], "already exists"),
                          (["revoke", "FFFF"], "no certificate with serial FFFF"),
                          (["revoke", "--agency", "NOBODY"], "no certificate to agency NOBODY"),
                          (["issue", "--agency", "A1", "--host", "x"], "--host is for hub certificates only")]:
        result = subprocess.run([sys.executable, "-m", "exchange", "ca", *args, "--dir", ca_dir],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)


def test_a_certificate_expiring_during_an_open_stream_stops_it(tls_hub, pki):
    lifetime = timedelta(seconds=4)
    expiring = pki.issue("agency", "EXPIRING_AGENCY", not_after=datetime.now(timezone.utc) + lifetime)
    record = events(2)
    with client(tls_hub.grpc_address, expiring) as channel:
        requests: queue.Queue = queue.Queue()
        requests.put(pb.PublishRequest(hello=pb.Hello(agency="EXPIRING_AGENCY")))
        responses = pb_grpc.ExchangeStub(channel).Publish(iter(requests.get, None), timeout=30)
        assert next(responses).position == 0
        requests.put(pb.PublishRequest(batch=pb.EventBatch(after=0, events=record[:1])))
        assert next(responses).stored == 1
        expiry = tls.load_certificates(expiring["cert"], "cert")[0].not_valid_after_utc
        while datetime.now(timezone.utc) <= expiry:
            time.sleep(0.2)
        requests.put(pb.PublishRequest(batch=pb.EventBatch(after=1, events=record[1:])))
        with pytest.raises(grpc.RpcError) as refused:
            next(responses)
        requests.put(None)
    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "EXPIRING_AGENCY" in refused.value.details() and "expired at" in refused.value.details()


def _served_serial(address: str, holder: dict) -> int:
    """The serial number of the certificate the server at ``address`` presents."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(holder["ca"])
    context.load_cert_chain(holder["cert"], holder["key"])
    context.set_alpn_protocols(["h2"])
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as wrapped:
        return x509.load_der_x509_certificate(wrapped.getpeercert(binary_form=True)).serial_number


def test_a_renewed_hub_certificate_is_served_without_a_restart(launch, pki, certs, tmp_path):
    settings = pki.hub_tls("rotating-hub")
    live = {name: tmp_path / f"live-{name}.pem" for name in ("cert", "key")}
    for name, path in live.items():
        path.write_bytes(Path(settings[name]).read_bytes())
    hub = launch.hub("rotating-hub", config={"tls": {**settings, **{k: str(v) for k, v in live.items()}}})
    first = tls.load_certificates(settings["cert"], "cert")[0]
    assert _served_serial(hub.grpc_address, certs["A"]) == first.serial_number
    renewed = pki.issue("hub", "rotating-hub-2")
    for name, path in live.items():
        path.write_bytes(Path(renewed[name]).read_bytes())
    assert _served_serial(hub.grpc_address, certs["A"]) == int(renewed["serial"], 16)
    with client(hub.grpc_address, certs["A"]) as channel:
        assert get_position(channel, AGENCY).position == 0
    assert _expiry_metric(hub) == tls.load_certificates(renewed["cert"], "cert")[0].not_valid_after_utc.timestamp()


def test_a_node_holding_another_agencys_certificate_refuses_to_start(launch, tls_hub, certs, agency):
    with pytest.raises(RuntimeError, match=rf"exited with code 2[\s\S]*belongs to agency {OTHER}, not to agency {AGENCY}"):
        launch.node(tls_hub.grpc_address, Path(agency.path), TABLES, name="borrowed-node",
                    config={"tls": tls_settings(certs["B"])})


# A consumer over mutual TLS: its certificate is its identity.

def _replica_rows(replica: Path, table: str) -> list:
    if not replica.exists():
        return []
    with sqlite3.connect(replica) as db:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone():
            return []
        return db.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def _source_rows(source: str, table: str) -> list:
    with sqlite3.connect(source) as db:
        return db.execute(f'SELECT * FROM "{table}" ORDER BY 1').fetchall()


def _wait_for(condition, what: str, process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.running, process.log()[-3000:]
        assert time.monotonic() < deadline, f"{what}\n{process.log()[-3000:]}"
        time.sleep(0.2)


def test_a_consumer_certificate_receives_its_entitlement_and_nothing_after_revocation(launch, pki, certs, tmp_path,
                                                                                         free_port):
    from test_consumer import CONSUMER, publish_catalog

    from exchange.demos.sample import SampleAgency

    source = SampleAgency(str(tmp_path / "agency.db"))
    source.create(persons=10, legal_persons=20, licences=10)
    hub = launch.hub("consumer-tls-hub", config={"tls": pki.hub_tls("consumer-tls-hub")})
    publish_catalog(hub.config["store"]["url"])  # legal_persons unconditional, licences conditional
    node = launch.node(hub.grpc_address, source.path, ["legal_persons", "licences"],
                       config={"tls": tls_settings(certs["A"])})  # the module's certificate of A
    wait_caught_up(node)
    consumer_cert = pki.issue("agency", CONSUMER)
    replica = tmp_path / "replica.db"
    metrics_port = free_port()
    consumer = launch.start(["node", "subscribe"], {
        "agency": CONSUMER, "hub": {"address": hub.grpc_address, "reconnect_max": 0.5},
        "tls": tls_settings(consumer_cert),
        "consumer": {"replica": f"sqlite:///{replica}", "purpose": "licensing",
                     "resources": [f"{AGENCY}/legal_persons", f"{AGENCY}/licences"]},
        "metrics": {"address": "127.0.0.1", "port": metrics_port},
    }, name="tls-consumer", ready=lambda: http_answers(f"http://127.0.0.1:{metrics_port}/metrics"))
    _wait_for(lambda: _replica_rows(replica, "legal_persons") == _source_rows(source.path, "legal_persons"),
              "the consumer's replica never held the unconditional resource", consumer)
    assert _replica_rows(replica, "licences") == []  # conditional, and never approved for this consumer

    pki.revoke(consumer_cert["serial"])
    _wait_for(lambda: "revoked" in consumer.log(), "the hub never refused the revoked consumer certificate", consumer)
    before = _replica_rows(replica, "legal_persons")
    with sqlite3.connect(source.path) as db:
        db.execute("UPDATE legal_persons SET name = name || ' (renamed)'")
    wait_caught_up(node)
    time.sleep(3)  # the consumer keeps retrying; nothing may arrive
    assert _replica_rows(replica, "legal_persons") == before


# Catalog and Sharing calls: each acts only as the certificate's holder.

def _catalog_content(agency: str) -> catalog_pb2.EntryContent:
    from test_catalog import entry

    from hub.catalog import wire
    return wire.content_to_pb(entry(agency=agency, code="101001/0042", resource="tls_licences"))


SHARING_CALLS = {
    # call: (method, request made by the holder, acting for agency A where a message names one)
    "request for A": ("Request", sharing_pb2.ShareRequestCreate(agency=AGENCY, provider=OTHER, resource="r",
                                                                scope="s", purpose="p", items=["x"])),
    "answer as A": ("Answer", sharing_pb2.ShareAnswer(agency=AGENCY, request_id=str(uuid.uuid4()), approve=True)),
    "dispute as A": ("Dispute", sharing_pb2.ShareDispute(agency=AGENCY, request_id=str(uuid.uuid4()), grounds="g")),
    "agreement as A": ("RecordAgreement", sharing_pb2.SecrecyAgreement(agency=AGENCY, consumer=OTHER, resource="r",
                                                                       reference="ref")),
    "list A's": ("List", sharing_pb2.ShareListRequest(agency=AGENCY)),
    "decide": ("Decide", sharing_pb2.ShareAnswer(request_id=str(uuid.uuid4()), approve=True)),
    "revoke as office": ("Revoke", sharing_pb2.ShareRevoke(request_id=str(uuid.uuid4()), reason="r")),
    "list all": ("List", sharing_pb2.ShareListRequest()),
    "report": ("Report", sharing_pb2.ShareReportRequest()),
}


@pytest.mark.parametrize("holder", ["B", "admin", "hub"])
@pytest.mark.parametrize("call", list(SHARING_CALLS))
def test_sharing_calls_act_only_as_the_certificate_holder(tls_hub, certs, holder, call):
    method, request = SHARING_CALLS[call]
    office_call = not getattr(request, "agency", "")
    with client(tls_hub.grpc_address, certs[holder]) as channel:
        try:
            getattr(sharing_pb2_grpc.SharingStub(channel), method)(request, timeout=30)
            outcome = ALLOW
        except grpc.RpcError as e:
            outcome = DENY if e.code() == grpc.StatusCode.PERMISSION_DENIED else ALLOW  # ALLOW: the ledger's rules
    assert outcome == (ALLOW if holder == "admin" and office_call else DENY)


@pytest.mark.parametrize("holder", ["B", "admin", "hub"])
def test_no_certificate_but_the_agencys_saves_or_submits_its_catalog_entry(tls_hub, certs, holder):
    with client(tls_hub.grpc_address, certs["A"]) as channel:
        catalog_pb2_grpc.CatalogStub(channel).SaveEntry(
            catalog_pb2.SaveEntryRequest(content=_catalog_content(AGENCY)), timeout=30)
    with client(tls_hub.grpc_address, certs[holder]) as channel:
        stub = catalog_pb2_grpc.CatalogStub(channel)
        for call in (lambda: stub.SaveEntry(catalog_pb2.SaveEntryRequest(content=_catalog_content(AGENCY)), timeout=30),
                     lambda: stub.Submit(catalog_pb2.EntryRef(code="101001/0042"), timeout=30)):
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("holder", ["admin", "hub"])
def test_a_caller_that_is_no_agency_learns_nothing_about_entries_it_cannot_submit(tls_hub, certs, holder):
    with client(tls_hub.grpc_address, certs[holder]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            catalog_pb2_grpc.CatalogStub(channel).Submit(catalog_pb2.EntryRef(code="101001/9999"), timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("holder", ["B", "hub"])
def test_identity_is_checked_before_the_request_is_read(tls_hub, certs, holder):
    with client(tls_hub.grpc_address, certs[holder]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            sharing_pb2_grpc.SharingStub(channel).List(sharing_pb2.ShareListRequest(agency=AGENCY, status="bogus"),
                                                       timeout=30)
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED


@pytest.mark.parametrize("holder, expected", [("A", ALLOW), ("B", ALLOW), ("admin", ALLOW), ("hub", DENY),
                                              ("unlisted admin", DENY)])
def test_only_agencies_and_administrators_read_the_catalog(tls_hub, certs, holder, expected):
    with client(tls_hub.grpc_address, certs[holder]) as channel:
        stub = catalog_pb2_grpc.CatalogStub(channel)
        outcomes = set()
        for call in (lambda: stub.ListEntries(catalog_pb2.ListRequest(), timeout=30),
                     lambda: stub.GetEntry(catalog_pb2.EntryRef(code="101001/0001"), timeout=30),
                     lambda: stub.GetHistory(catalog_pb2.EntryRef(code="101001/0001"), timeout=30),
                     lambda: stub.GetReport(catalog_pb2.ReportRequest(), timeout=30),
                     lambda: stub.ExportDcat(catalog_pb2.DcatRequest(), timeout=30)):
            try:
                call()
                outcomes.add(ALLOW)
            except grpc.RpcError as e:
                outcomes.add(DENY if e.code() == grpc.StatusCode.PERMISSION_DENIED else ALLOW)  # NOT_FOUND: read
    assert outcomes == {expected}
