"""``exchange demo-sharing``: three agencies share data through a hub, each consumer holding exactly its entitlement.

A provider (the market regulator) publishes three resources: enterprises
(unconditional), licences (conditional, commercial data) and inspections
(not shared).  Two consumers run replicas.  The story, through the real
``exchange`` commands and processes:

1. both consumers receive enterprises; licences and inspections are refused;
2. consumer B requests licences, the provider approves fewer items and
   records the secrecy agreement: B's replica gets those items;
3. consumer C requests licences, the provider rejects, C disputes, the
   coordinating office approves some items: C's replica gets those;
4. the provider changes its data; both replicas follow;
5. the provider revokes B's approval: B's replica drops licences, C's keeps
   following.

After every step each replica is compared with what its agency is entitled
to, computed from the provider's own database.  The last line printed is
JSON; the exit status is 0 only when every check held.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from exchange.transport.rpc.health import wait_serving

PROVIDER = "91310000MA1FL0000N"  # the market regulator
CONSUMER_B = "11310000002420000A"  # a district permits office
CONSUMER_C = "11310000002421001L"  # the tax bureau
TABLES = {
    "enterprises": ("uscc", ["uscc", "name", "district", "capital"]),
    "licences": ("licence_no", ["licence_no", "holder", "kind", "fee", "inspector"]),
    "inspections": ("id", ["id", "licence_no", "findings"]),
}
WAIT_SECONDS = 60.0


def run(directory: str | None = None) -> int:
    """Run the story in ``directory`` (a temp dir when None); the exit status."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="exchange-sharing-") as tmp:
            result = scenario(Path(tmp))
    else:
        Path(directory).mkdir(parents=True, exist_ok=True)
        result = scenario(Path(directory))
    for agency, replica in result["replicas"].items():
        print(f"replica of {agency}:", file=sys.stderr)
        for table, content in replica.items():
            print(f"  {table} ({', '.join(content['columns'])}): {len(content['rows'])} rows", file=sys.stderr)
            for row in content["rows"][:3]:
                print(f"    {row}", file=sys.stderr)
    print(json.dumps({"ok": result["ok"], "checks": result["checks"], "replicas": result["replicas"]},
                     ensure_ascii=False))
    return 0 if result["ok"] else 1


def scenario(directory: Path) -> dict[str, Any]:
    """The story as above; returns {"ok", "checks": [(step, held)], "replicas", "report"}."""
    story = _Story(directory)
    try:
        return story.play()
    finally:
        story.stop()


class _Story:
    def __init__(self, directory: Path):
        self.dir = directory
        self.processes: dict[str, subprocess.Popen] = {}
        self.checks: list[tuple[str, bool]] = []
        self.source = directory / "provider.db"
        self.hub_address = f"127.0.0.1:{_free_port()}"
        self.entitled: dict[str, dict[str, list[str]]] = {CONSUMER_B: {}, CONSUMER_C: {}}

    # The story --------------------------------------------------------------------------------------

    def play(self) -> dict[str, Any]:
        self._create_source()
        self._start_hub()
        self._publish_catalog()
        self._start("provider", ["node", "run"], self._node_config())
        for consumer, resources in ((CONSUMER_B, ["enterprises", "licences"]),
                                    (CONSUMER_C, ["enterprises", "licences", "inspections"])):
            self._start(f"consumer-{consumer}", ["node", "subscribe"], self._consumer_config(consumer, resources))
        columns = TABLES["enterprises"][1]
        self.entitled[CONSUMER_B]["enterprises"] = self.entitled[CONSUMER_C]["enterprises"] = columns
        self._expect("1. unconditional enterprises reach both consumers; licences and inspections do not")
        self._refused(CONSUMER_B, "licences", "no current approval")
        self._refused(CONSUMER_C, "inspections", "not shared")

        request = self._share(CONSUMER_B, "request", "--provider", PROVIDER, "--resource", "licences",
                              "--scope", "licences held by enterprises in Pudong", "--purpose", "permit approvals",
                              "--items", "holder", "kind", "fee")
        approved = self._share(PROVIDER, "approve", request["id"], "--items", "holder", "kind",
                               "--note", "fee is not needed")
        self.checks.append(("2a. the approval says delivery waits for a secrecy agreement",
                            any("secrecy agreement" in w for w in approved["waiting_for"])))
        self._expect("2a. approved but no secrecy agreement yet: licences (commercial data) do not flow")
        self._refused(CONSUMER_B, "licences", "no secrecy agreement")
        self._share(PROVIDER, "agreement", "--consumer", CONSUMER_B, "--resource", "licences",
                    "--reference", "SA-2026-0042")
        self.entitled[CONSUMER_B]["licences"] = ["licence_no", "holder", "kind"]
        self._expect("2b. B receives the approved items of licences (and the key), no more")

        request_c = self._share(CONSUMER_C, "request", "--provider", PROVIDER, "--resource", "licences",
                                "--scope", "all licences", "--purpose", "fee income assessment",
                                "--items", "kind", "fee", "inspector")
        self._share(PROVIDER, "reject", request_c["id"], "--reasons", "inspector names are personal data")
        self._expect("3a. rejected: C receives no licences")
        self._refused(CONSUMER_C, "licences", "no current approval")
        self._share(CONSUMER_C, "dispute", request_c["id"], "--grounds", "fees are needed for the tax assessment")
        self._share(None, "decide", request_c["id"], "--approve", "--items", "kind", "fee")
        self._share(PROVIDER, "agreement", "--consumer", CONSUMER_C, "--resource", "licences",
                    "--reference", "SA-2026-0043")
        self.entitled[CONSUMER_C]["licences"] = ["licence_no", "kind", "fee"]
        self._expect("3b. after the office's decision C receives kind and fee of licences, no more")

        self._change_source(1)
        self._expect("4. changes at the provider reach both replicas, projected")

        self._share(PROVIDER, "revoke", request["id"], "--reason", "permit programme ended")
        self.entitled[CONSUMER_B].pop("licences")
        self._change_source(2)
        self._expect("5. after the revocation B holds no licences; C keeps following")
        self._refused(CONSUMER_B, "licences", "no current approval")

        self.checks.append(("inspections never reached the hub", not self._hub_holds("inspections")))
        audited = {json.loads(line)["action"] for line in (self.dir / "audit.log").read_text().splitlines()}
        steps = {"share.requested", "share.approved", "share.rejected", "share.disputed", "share.decided",
                 "share.revoked", "share.agreementrecorded", "share.delivered", "share.refused"}
        self.checks.append(("every decision, delivery and refusal is in the audit log", steps <= audited))
        report = self._share(None, "report")
        replicas = {consumer: _dump(self._replica(consumer)) for consumer in (CONSUMER_B, CONSUMER_C)}
        return {"ok": all(held for _, held in self.checks), "checks": self.checks, "replicas": replicas,
                "report": report}

    # Steps ------------------------------------------------------------------------------------------

    def _expect(self, step: str) -> None:
        """Wait until both replicas hold exactly what their agencies are entitled to; record the check."""
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            self._check_running()
            wrong = [c for c in (CONSUMER_B, CONSUMER_C) if _dump(self._replica(c)) != self._expected(c)]
            if not wrong:
                self.checks.append((step, True))
                return
            if time.monotonic() > deadline:
                self.checks.append((step, False))
                raise RuntimeError(f"{step}: replicas of {', '.join(wrong)} differ from their entitlement; "
                                   f"logs in {self.dir}")
            time.sleep(0.2)

    def _expected(self, consumer: str) -> dict[str, Any]:
        with sqlite3.connect(self.source) as db:
            return {table: {"columns": columns,
                            "rows": [list(r) for r in db.execute(
                                f"SELECT {', '.join(columns)} FROM {table} ORDER BY {TABLES[table][0]}")]}
                    for table, columns in sorted(self.entitled[consumer].items())}

    def _replica(self, consumer: str) -> Path:
        return self.dir / f"replica-{consumer}.db"

    def _share(self, agency: str | None, *args: str) -> dict[str, Any]:
        return json.loads(self._exchange("share", *args, *(["--agency", agency] if agency else [])))

    def _refused(self, consumer: str, resource: str, reason: str) -> None:
        """Check that the hub refuses the consumer's subscription to the resource, for the reason given."""
        import grpc

        from protos.exchange.v1 import exchange_pb2 as pb
        from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc

        with grpc.insecure_channel(self.hub_address) as channel:
            call = pb_grpc.ExchangeStub(channel).Subscribe(pb.SubscribeRequest(
                agency=PROVIDER, consumer=consumer, resource=resource, purpose="checking"), timeout=30)
            try:
                next(call)
                refused = False
            except grpc.RpcError as e:
                refused = e.code() == grpc.StatusCode.PERMISSION_DENIED and reason in (e.details() or "")
            finally:
                call.cancel()
        self.checks.append((f"the hub refuses {resource} to {consumer}: {reason}", refused))

    def _hub_holds(self, resource: str) -> bool:
        from exchange.contracts.events import make_mapper
        from exchange.store import EventStore

        store = EventStore(f"sqlite:///{self.dir / 'hub-store.db'}", create=False)
        try:
            recorder, after, mapper = store.recorder(PROVIDER), 0, make_mapper()
            while notifications := recorder.read(after, 1000):
                if any(mapper.to_domain_event(n).resource == resource for n in notifications):
                    return True
                after = notifications[-1].id
            return False
        finally:
            store.close()

    # Set-up -----------------------------------------------------------------------------------------

    def _create_source(self) -> None:
        with sqlite3.connect(self.source) as db:
            db.executescript("""
                CREATE TABLE enterprises (uscc TEXT PRIMARY KEY, name TEXT, district TEXT, capital INTEGER);
                CREATE TABLE licences (licence_no TEXT PRIMARY KEY, holder TEXT, kind TEXT, fee INTEGER, inspector TEXT);
                CREATE TABLE inspections (id INTEGER PRIMARY KEY, licence_no TEXT, findings TEXT);
            """)
            db.executemany("INSERT INTO enterprises VALUES (?, ?, ?, ?)", [
                ("91310115MA1H7GQ417", "Pudong Bakery Ltd", "Pudong", 500000),
                ("91310101MA1FP8XL2T", "Huangpu Print Co", "Huangpu", 1200000),
                ("91310104MA1FR9K33M", "Xuhui Clinic", "Xuhui", 3000000)])
            db.executemany("INSERT INTO licences VALUES (?, ?, ?, ?, ?)", [
                ("SP3101150001", "91310115MA1H7GQ417", "food", 300, "Wang Fang"),
                ("JY3101010002", "91310101MA1FP8XL2T", "printing", 800, "Li Wei"),
                ("YL3101040003", "91310104MA1FR9K33M", "medical", 2500, "Zhao Min")])
            db.executemany("INSERT INTO inspections VALUES (?, ?, ?)", [
                (1, "SP3101150001", "storage temperature too high"), (2, "YL3101040003", "no findings")])

    def _change_source(self, round_: int) -> None:
        with sqlite3.connect(self.source) as db:
            db.execute("UPDATE licences SET fee = fee + ?, inspector = ? WHERE licence_no = 'SP3101150001'",
                       (round_ * 10, f"Inspector {round_}"))
            db.execute("INSERT INTO licences VALUES (?, ?, ?, ?, ?)",
                       (f"SP31011500{round_ + 10}", "91310115MA1H7GQ417", "food", 100 * round_, "Sun Li"))
            db.execute("UPDATE enterprises SET capital = capital * 2 WHERE district = 'Xuhui'")
            db.execute("DELETE FROM licences WHERE licence_no = 'JY3101010002'")
            db.execute("INSERT INTO inspections (licence_no, findings) VALUES (?, ?)",
                       ("SP3101150001", f"follow-up {round_}"))

    def _start_hub(self) -> None:
        self._start("hub", ["hub", "run"], {
            "store": {"url": f"sqlite:///{self.dir / 'hub-store.db'}"},
            "listen": {"address": self.hub_address, "insecure": True},
            "metrics": {"port": 0},
        })
        wait_serving(self.hub_address)

    def _publish_catalog(self) -> None:
        """The provider's entries, submitted, reviewed and published through the hub's catalog service."""
        for number, (resource, share_type, sensitivity) in enumerate(
                [("enterprises", 1, []), ("licences", 2, ["commercial"]), ("inspections", 3, [])], start=1):
            code = f"201001/{number:04d}"
            entry = self.dir / f"entry-{resource}.json"
            entry.write_text(json.dumps({
                "code": code, "name": resource.title(), "agency": PROVIDER,
                "provider": "Municipal market regulator", "provider_uscc": PROVIDER, "resource": resource,
                "summary": f"{resource} the regulator keeps", "format": "database", "share_type": share_type,
                "share_condition": "for permit and tax administration" if share_type == 2 else "",
                "not_shared_basis": "inspection working papers are internal (Art. 8)" if share_type == 3 else "",
                "share_modes": ["platform:interface"], "open_to_public": False, "update_cycle": "realtime",
                "items": [{"name": c, "type": "C", "length": 64} for c in TABLES[resource][1]],
            }))
            self._exchange("catalog", "submit", str(entry))
            self._exchange("catalog", "secrecy", code, "--cleared",
                           *(["--sensitivity", *sensitivity] if sensitivity else []))
            self._exchange("catalog", "review", code, "--accept-all")
            self._exchange("catalog", "publish", code)

    def _exchange(self, *args: str) -> str:
        """Run ``exchange ARGS --hub HUB``; its output, or an error saying what failed."""
        done = subprocess.run([sys.executable, "-m", "exchange", *args, "--hub", self.hub_address, "--insecure"],
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            raise RuntimeError(f"exchange {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def _node_config(self) -> dict[str, Any]:
        return {"agency": PROVIDER,
                "source": {"url": f"sqlite:///{self.source}", "tables": list(TABLES), "poll_interval": 0.05,
                           "not_shared": ["inspections"]},
                "store": {"url": f"sqlite:///{self.dir / 'provider-store.db'}"},
                "hub": {"address": self.hub_address, "reconnect_max": 1.0, "insecure": True},
                "metrics": {"port": 0}}

    def _consumer_config(self, consumer: str, resources: list[str]) -> dict[str, Any]:
        return {"agency": consumer,
                "hub": {"address": self.hub_address, "reconnect_max": 0.5, "insecure": True},
                "consumer": {"replica": f"sqlite:///{self._replica(consumer)}",
                             "resources": [f"{PROVIDER}/{r}" for r in resources],
                             "purpose": "administrative licensing and taxation"},
                "metrics": {"port": 0}}

    def _start(self, name: str, args: list[str], config: dict[str, Any]) -> None:
        """Start ``exchange ARGS --config NAME.toml`` as a process of its own, output in NAME.log."""
        path = self.dir / f"{name}.toml"
        path.write_text(_toml(config))
        with open(self.dir / f"{name}.log", "ab") as log:
            self.processes[name] = subprocess.Popen([sys.executable, "-m", "exchange", *args, "--config", str(path)],
                                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def _check_running(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with status {process.returncode}; see {self.dir / (name + '.log')}")

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _dump(path: Path) -> dict[str, Any]:
    """Every user table of a SQLite replica: its columns and rows ordered by the first column."""
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE "
                                           "'\\_exchange\\_%' ESCAPE '\\' ORDER BY name")]
        found = {}
        for table in tables:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            rows = [list(r) for r in db.execute(f'SELECT * FROM "{table}" ORDER BY 1')]
            found[table] = {"columns": columns, "rows": rows}
        return found


def _toml(config: dict[str, Any]) -> str:
    """TOML of top-level strings and one level of sections (JSON renders these values as TOML does)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in config.items() if not isinstance(v, dict)]
    for section, values in config.items():
        if isinstance(values, dict):
            lines += [f"[{section}]"] + [f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    from exchange.demos.pipeline import free_port

    return free_port()
