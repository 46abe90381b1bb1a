"""Fan-in: many agencies publishing at once to the hub over real gRPC.

Each simulated agency has its own identity (a valid unified social credit
code) and its own Publish stream, and behaves as a node's shipper does:
changes arrive at a steady rate, and every tick (100 ms) it sends what is
pending as one batch of record events (at most 500, at most 4 batches
unacknowledged), resuming from the hub's position after any refusal.  The
events are made with the project's own record events, mapper and wire
conversion.  Publishers run in a few worker processes (asyncio, grpc.aio),
each driving many agencies.

Configurations (real hub processes, a private PostgreSQL cluster with fsync on):

    pg1     1 hub on PostgreSQL
    pg2     2 hubs on the same PostgreSQL database, agencies split across them
    sqlite  1 hub on SQLite

Per configuration: offered and sustained events/s over the measured window,
publish-to-acknowledgement p50/p99 of the batches sent in it, refusals by
gRPC code, CPU of the hubs, of PostgreSQL and of the publishing clients (all
from /proc, as a percentage of one core), hub RSS, and at the end an
exactly-once check of every agency: GetPosition's position equals the last
notification id the agency had acknowledged (no gap) and its hub position
(the number of events in the agency's log) equals that count.

    .venv/bin/python bench/fanin.py [--agencies 100] [--rate 200] [--seconds 20] [--configs pg1,pg2,sqlite]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "bench")]

import grpc  # noqa: E402
from eventsourcing.persistence import Notification  # noqa: E402
from postgres_e2e import REAL, peak_rss_mib  # noqa: E402
from support.postgres import start_cluster  # noqa: E402
from support.records import record_event  # noqa: E402

from exchange.contracts.events import RecordCreated, RecordUpdated, make_mapper  # noqa: E402
from exchange.contracts.identifiers import uscc_check_char  # noqa: E402
from exchange.demos.pipeline import free_port, start, stop  # noqa: E402
from exchange.transport.rpc.health import wait_serving  # noqa: E402
from exchange.transport.wire import to_wire  # noqa: E402
from protos.exchange.v1 import exchange_pb2 as pb  # noqa: E402
from protos.exchange.v1 import exchange_pb2_grpc as pb_grpc  # noqa: E402

CONFIGS = {"pg1": ("postgresql", 1), "pg2": ("postgresql", 2), "sqlite": ("sqlite", 1)}
RECORDS = 1000  # records per agency: the first pass creates them, later passes update them
WARMUP = 5.0  # seconds of publishing (streams opened, agency logs created) before the measured window
DRAIN = 30.0  # seconds after the window to deliver what is still pending
TICKS = os.sysconf("SC_CLK_TCK")


def agency_ids(count: int) -> list[str]:
    """``count`` distinct valid unified social credit codes (Shanghai, enterprise)."""
    return [first17 + uscc_check_char(first17) for first17 in (f"91310000MA{i:07d}" for i in range(count))]


# -- the publishing side (worker processes) --------------------------------------------------------------------


class Publisher:
    """One agency's publish stream, as a node's shipper drives it."""

    def __init__(self, agency: str, address: str, opts: dict, began: float):
        self.agency, self.address, self.opts, self.began = agency, address, opts, began
        self.acked = 0  # the hub's position as last answered
        self.generated_at_start = self.generated_at_end = self.acked_at_end = 0
        self.acked_in_window = 0
        self.latencies: list[float] = []
        self.errors: Counter = Counter()
        self.details: dict[str, str] = {}  # the first message of each refusal code
        self.mapper = make_mapper()

    def generated(self, now: float) -> int:
        """Changes made at the agency by ``now``: the last notification id it could send."""
        return int((min(now, self.opts["end_at"]) - self.began) * self.opts["rate"])

    def batch(self, first: int, last: int, head: int) -> pb.EventBatch:
        notifications = []
        for i in range(first, last + 1):
            record, version = (i - 1) % RECORDS, (i - 1) // RECORDS + 1
            if version == 1:
                kind, fields = RecordCreated, {"row": {"id": record, "status": "有效", "kind": "食品经营许可证"}}
            else:
                kind, fields = RecordUpdated, {"changed": {"status": ("有效", "暂停")[version % 2]}}
            stored = self.mapper.to_stored_event(record_event(kind, self.agency, f"{self.agency}/{record}", version,
                                                              **fields))
            notifications.append(Notification(id=i, originator_id=stored.originator_id,
                                              originator_version=stored.originator_version, topic=stored.topic,
                                              state=stored.state))
        return to_wire(notifications, after=first - 1, head=head)

    async def run(self) -> None:
        backoff = 0.2
        deadline = self.opts["end_at"] + DRAIN
        async with grpc.aio.insecure_channel(self.address) as channel:
            stub = pb_grpc.ExchangeStub(channel)
            while time.time() < deadline and not self.done():
                try:
                    await self.session(stub, deadline)
                    backoff = 0.2
                except grpc.aio.AioRpcError as e:
                    self.errors[e.code().name] += 1
                    self.details.setdefault(e.code().name, e.details() or "")
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)

    def done(self) -> bool:
        return time.time() > self.opts["end_at"] and self.acked >= self.generated(self.opts["end_at"])

    async def session(self, stub, deadline: float) -> None:
        call = stub.Publish()
        await call.write(pb.PublishRequest(hello=pb.Hello(agency=self.agency, node_version="bench-fanin")))
        self.acked = sent = (await call.read()).position
        in_flight: deque = deque()  # (sent at, last id) per unanswered batch, in order
        window_free = asyncio.Event()
        window_free.set()

        async def answers() -> None:
            while True:
                answer = await call.read()
                if answer is grpc.aio.EOF:
                    return
                now = time.time()
                at, _ = in_flight.popleft()
                if self.opts["start_at"] <= at < self.opts["end_at"]:
                    self.latencies.append((now - at) * 1000)
                if self.opts["start_at"] <= now < self.opts["end_at"]:
                    self.acked_in_window += answer.position - self.acked
                self.acked = answer.position
                window_free.set()

        reader = asyncio.ensure_future(answers())
        try:
            while not self.done() and time.time() < deadline:
                if reader.done():
                    reader.result()  # raises what ended the stream
                    return
                now = time.time()
                head = self.generated(now)
                if sent < head and len(in_flight) < self.opts["window"]:
                    last = min(head, sent + self.opts["batch_size"])
                    in_flight.append((time.time(), last))
                    await call.write(pb.PublishRequest(batch=self.batch(sent + 1, last, head)))
                    sent = last
                    continue
                if sent < head:  # the window is full: the next answer frees it
                    window_free.clear()
                    try:
                        await asyncio.wait_for(window_free.wait(), self.opts["interval"])
                    except asyncio.TimeoutError:
                        pass
                else:  # nothing pending: the next tick
                    await asyncio.sleep(self.opts["interval"])
            await call.done_writing()
            await reader
        finally:
            reader.cancel()
            call.cancel()

    def mark(self, which: str) -> None:
        now = time.time()
        if which == "start":
            self.generated_at_start = self.generated(now)
        else:
            self.generated_at_end, self.acked_at_end = self.generated(now), self.acked


async def _drive(assigned: list[tuple[str, str]], opts: dict) -> list[Publisher]:
    began = time.time()
    publishers = [Publisher(agency, address, opts, began) for agency, address in assigned]
    loop = asyncio.get_running_loop()
    for p in publishers:
        loop.call_at(loop.time() + opts["start_at"] - time.time(), p.mark, "start")
        loop.call_at(loop.time() + opts["end_at"] - time.time(), p.mark, "end")
    await asyncio.gather(*(p.run() for p in publishers))
    return publishers


def worker(assigned: list[tuple[str, str]], opts: dict, results) -> None:
    """Publish as the ``assigned`` (agency, hub address) pairs; put what happened on ``results``."""
    publishers = asyncio.run(_drive(assigned, opts))
    results.put({
        "agencies": {p.agency: {"address": p.address, "acked": p.acked, "generated": p.generated(opts["end_at"]),
                                "acked_at_end": p.acked_at_end} for p in publishers},
        "offered": sum(p.generated_at_end - p.generated_at_start for p in publishers),
        "acked_in_window": sum(p.acked_in_window for p in publishers),
        "latencies": [ms for p in publishers for ms in p.latencies],
        "errors": sum((p.errors for p in publishers), Counter()),
        "details": {code: text for p in publishers for code, text in p.details.items()},
        "backlog_at_end": sum(p.generated_at_end - p.acked_at_end for p in publishers),
    })


# -- measuring from /proc ---------------------------------------------------------------------------------------


def cpu_seconds(pid: int, children: bool = False) -> float:
    """User + system CPU of a process (with its reaped children when ``children``); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12]) + ((int(fields[13]) + int(fields[14])) if children else 0)
    return ticks / TICKS


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def postgres_cpu(cluster) -> float:
    """CPU of a cluster's postmaster, its live processes and those already ended."""
    postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
    total = cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            if parent == postmaster:
                total += cpu_seconds(int(entry.name))
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / TICKS, sum(values) / TICKS


# -- one configuration ------------------------------------------------------------------------------------------


def start_hubs(directory: Path, store_url: str, count: int) -> list[tuple[object, str]]:
    """``count`` hub processes on ``store_url``, each with its own audit chain; (process, address) each."""
    addresses = [f"127.0.0.1:{free_port()}" for _ in range(count)]
    audits = [directory / f"audit-{i}.log" for i in range(count)]
    hubs: list[tuple[object, str]] = []
    # One after another: the first start on a fresh database creates the shared tables.
    for i, address in enumerate(addresses):
        peers = ", ".join(f'"{a}"' for a in audits if a != audits[i])
        config = directory / f"hub-{i}.toml"
        config.write_text(f'[store]\nurl = "{store_url}"\n[listen]\naddress = "{address}"\ninsecure = true\n'
                          f'[metrics]\nport = {free_port()}\n[audit]\npath = "{audits[i]}"\npeers = [{peers}]\n')
        hubs.append((start("hub", config, directory / f"hub-{i}.log"), address))
        try:
            wait_serving(address, timeout=60)
        except TimeoutError:
            for process, _ in hubs:
                stop(process)
            raise RuntimeError(f"hub {i} did not start:\n{(directory / f'hub-{i}.log').read_text()[-3000:]}") from None
    return hubs


def verify(agencies: dict[str, dict]) -> tuple[int, list[str]]:
    """(agencies stored exactly as acknowledged, what is wrong with the others)."""
    wrong = []
    channels: dict[str, grpc.Channel] = {}
    for agency, seen in agencies.items():
        channel = channels.setdefault(seen["address"], grpc.insecure_channel(seen["address"]))
        at = pb_grpc.ExchangeStub(channel).GetPosition(pb.PositionRequest(agency=agency), timeout=30)
        if at.position != seen["acked"] or at.hub_position != seen["acked"]:
            wrong.append(f"{agency}: acknowledged {seen['acked']} events, the store holds {at.hub_position} "
                         f"with position {at.position}")
    for channel in channels.values():
        channel.close()
    return len(agencies) - len(wrong), wrong


def run_config(name: str, args, cluster, directory: Path) -> dict:
    kind, hub_count = CONFIGS[name]
    if kind == "postgresql":
        store_url = cluster.url(cluster.create_database(f"fanin_{name}"))
    else:
        store_url = f"sqlite:///{directory}/hub.db"
    hubs = start_hubs(directory, store_url, hub_count)
    agencies = agency_ids(args.agencies)
    try:
        now = time.time()
        opts = {"rate": args.rate, "interval": args.interval, "window": args.window, "batch_size": args.batch_size,
                "start_at": now + WARMUP + 2, "end_at": now + WARMUP + 2 + args.seconds}
        spawn = multiprocessing.get_context("spawn")
        results = spawn.Queue()
        assigned = [(a, hubs[i % hub_count][1]) for i, a in enumerate(agencies)]
        workers = [spawn.Process(target=worker, args=(assigned[w::args.workers], opts, results))
                   for w in range(args.workers)]
        for w in workers:
            w.start()
        time.sleep(max(0.0, opts["start_at"] - time.time()))
        before = ([cpu_seconds(h.pid) for h, _ in hubs], postgres_cpu(cluster) if kind == "postgresql" else 0.0,
                  [cpu_seconds(w.pid) for w in workers], machine_busy())
        time.sleep(max(0.0, opts["end_at"] - time.time()))
        after = ([cpu_seconds(h.pid) for h, _ in hubs], postgres_cpu(cluster) if kind == "postgresql" else 0.0,
                 [cpu_seconds(w.pid) for w in workers], machine_busy())
        rss = [rss_mib(h.pid) for h, _ in hubs]
        parts = [results.get(timeout=DRAIN + 120) for _ in workers]
        drained = time.time() - opts["end_at"]
        for w in workers:
            w.join()
        seen = {a: v for part in parts for a, v in part["agencies"].items()}
        exact, wrong = verify(seen)
        peak = [peak_rss_mib(h.pid) for h, _ in hubs]
    finally:
        for process, _ in hubs:
            stop(process)
    latencies = sorted(ms for part in parts for ms in part["latencies"])
    window = args.seconds
    busy = (after[3][0] - before[3][0]) / (after[3][1] - before[3][1]) * os.cpu_count()
    return {
        "config": name, "hubs": hub_count, "offered": sum(p["offered"] for p in parts) / window,
        "sustained": sum(p["acked_in_window"] for p in parts) / window,
        "p50": statistics.median(latencies) if latencies else float("nan"),
        "p99": statistics.quantiles(latencies, n=100)[98] if len(latencies) > 1 else float("nan"),
        "batches": len(latencies), "errors": sum((p["errors"] for p in parts), Counter()),
        "details": {code: text for p in parts for code, text in p["details"].items()},
        "hub_cpu": sum(a - b for a, b in zip(after[0], before[0])) / window * 100,
        "hub_rss": sum(rss), "hub_peak": sum(peak), "pg_cpu": (after[1] - before[1]) / window * 100,
        "client_cpu": sum(a - b for a, b in zip(after[2], before[2])) / window * 100, "machine": busy * 100,
        "backlog": sum(p["backlog_at_end"] for p in parts), "drain": drained,
        "delivered": sum(v["acked"] == v["generated"] for v in seen.values()), "agencies": len(seen),
        "exact": exact, "wrong": wrong,
    }


def report(args, rows: list[dict]) -> None:
    print(f"\n{args.agencies} agencies x {args.rate} changes/s, a batch every {args.interval * 1000:.0f} ms "
          f"(at most {args.batch_size} events, {args.window} in flight), {args.seconds} s measured after "
          f"{WARMUP:.0f} s of warm-up; {args.workers} client processes; {os.cpu_count()} cores; "
          "CPU in % of one core over the window")
    header = ("config", "offered ev/s", "sustained ev/s", "p50 ms", "p99 ms", "hub CPU", "hub RSS MiB", "pg CPU",
              "client CPU", "machine", "backlog", "errors")
    lines = [header]
    for r in rows:
        errors = ", ".join(f"{code} {n}" for code, n in sorted(r["errors"].items())) or "none"
        lines.append((r["config"], f"{r['offered']:.0f}", f"{r['sustained']:.0f}", f"{r['p50']:.0f}",
                      f"{r['p99']:.0f}", f"{r['hub_cpu']:.0f}%", f"{r['hub_rss']:.0f}",
                      f"{r['pg_cpu']:.0f}%" if r["config"] != "sqlite" else "-", f"{r['client_cpu']:.0f}%",
                      f"{r['machine']:.0f}%", str(r["backlog"]), errors))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))))
    for r in rows:
        print(f"{r['config']}: {r['hubs']} hub(s), RSS {r['hub_rss']:.0f} MiB (peak {r['hub_peak']:.0f}); "
              f"{r['batches']} batches timed; backlog at the window's end {r['backlog']} events, "
              f"drained {r['drain']:.1f} s after it; {r['delivered']}/{r['agencies']} agencies delivered everything; "
              f"exactly once (GetPosition position = count = acknowledged): {r['exact']}/{r['agencies']}")
        for code, text in sorted(r["details"].items()):
            print(f"  {code}: {text[:300]}")
        for problem in r["wrong"][:5]:
            print(f"  NOT EXACT {problem}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--agencies", type=int, default=100)
    parser.add_argument("--rate", type=float, default=200.0, help="changes per second per agency")
    parser.add_argument("--seconds", type=int, default=20, help="measured window per configuration")
    parser.add_argument("--configs", default="pg1,pg2,sqlite", help=f"comma-separated, of {', '.join(CONFIGS)}")
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between a publisher's batches")
    parser.add_argument("--window", type=int, default=4, help="batches in flight per publisher")
    parser.add_argument("--batch-size", type=int, default=500, help="events per batch, at most")
    parser.add_argument("--workers", type=int, default=2, help="publishing client processes")
    args = parser.parse_args()
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        parser.error(f"unknown configuration {', '.join(unknown)}: choose from {', '.join(CONFIGS)}")
    cluster = start_cluster(**REAL) if any(CONFIGS[n][0] == "postgresql" for n in names) else None
    rows = []
    try:
        for name in names:
            with tempfile.TemporaryDirectory(prefix=f"bench-fanin-{name}-") as tmp:
                try:
                    rows.append(run_config(name, args, cluster, Path(tmp)))
                except RuntimeError as e:  # a hub that did not start: the other configurations still run
                    print(f"{name} FAILED: {e}", flush=True)
                    continue
                print(f"{name} done", flush=True)
    finally:
        if cluster is not None:
            cluster.stop()
    report(args, rows)


if __name__ == "__main__":
    main()
