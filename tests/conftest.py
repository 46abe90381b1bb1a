"""Shared fixtures: free loopback ports and ``exchange`` processes.

- ``free_port``: a function returning a TCP port on 127.0.0.1 that is free
  now (never the same one twice in a test session).
- ``launch`` (per test) and ``module_launch`` (per test module): a Launcher
  that starts ``exchange ...`` as a subprocess with a TOML config written in
  a temp dir, waits until it is ready (gRPC health SERVING when it listens),
  and SIGKILLs whatever is still running at teardown.
  ``launch.hub()`` starts a hub on fresh ports with a SQLite store.
  ``launch.node(hub_address, source_db, tables)`` starts a node.
- ``hub``: a hub of its own for one test (``launch.hub()``).

Tests are grouped by kind, in folders and as pytest markers set here from
what each test uses: ``unit`` (nothing outside the process), ``contract``
(the shared adapter suites in contract/), ``integration`` (a real
PostgreSQL, MariaDB or sshd started by the session) and ``e2e`` (hub and
node as real processes).  ``pytest -m unit`` runs the fast ones alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import pytest

from exchange.common.config import from_values
from exchange.demos.sample import SampleAgency
from exchange.transport.rpc.channel import CLIENT_SETTINGS
from exchange.transport.rpc.health import http_answers, is_serving

READY_TIMEOUT = 90.0  # a busy CI machine starts processes slowly; a healthy one is ready in a second
HERE = Path(__file__).resolve().parent
KINDS = ("unit", "contract", "integration", "e2e")
# Test modules share helpers across the kind folders (test_exchange_e2e's assertions, for one).
sys.path[:0] = [str(HERE / kind) for kind in KINDS if str(HERE / kind) not in sys.path]
PROCESS_FIXTURES = {"launch", "module_launch", "hub"}
SERVER_FIXTURES = {"postgres", "mariadb", "sshd"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its kind: its folder's, or a heavier one by the fixtures it uses."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        folder = Path(str(item.path)).parent.name
        kinds = [folder if folder in KINDS else "unit"]
        if used & PROCESS_FIXTURES:
            kinds.append("e2e")
        elif used & SERVER_FIXTURES:
            kinds.append("integration")
        kind = max(kinds, key=KINDS.index)
        item.add_marker(kind)
_handed_out: set[int] = set()


def _exchange_command() -> str:
    beside_python = Path(sys.executable).with_name("exchange")
    found = str(beside_python) if beside_python.exists() else shutil.which("exchange")
    if not found:
        raise RuntimeError("the exchange command is not installed: run pip install -e . in the venv")
    return found


def _free_port() -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def to_toml(config: Mapping[str, Any]) -> str:
    """TOML text of ``{section: {key: value}}`` (top-level scalars allowed too)."""
    lines = [f"{key} = {_toml_value(value)}" for key, value in config.items() if not isinstance(value, Mapping)]
    for section, values in config.items():
        if isinstance(values, Mapping):
            lines.append(f"\n[{section}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")


@dataclass
class ExchangeProcess:
    """One running ``exchange`` subprocess."""

    name: str
    args: list[str]  # after the ``exchange`` command, without --config
    config: dict[str, Any]
    config_path: Path
    log_path: Path
    popen: subprocess.Popen
    grpc_address: str | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL (no clean-up at all, like a power cut) and reap."""
        if self.running:
            self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait for the exit; the exit code."""
        if self.running:
            self.popen.send_signal(signal.SIGTERM)
        return self.popen.wait(timeout)

    def log(self) -> str:
        """Everything the process wrote to stdout and stderr."""
        return self.log_path.read_text(errors="replace")


class Launcher:
    """Starts ``exchange`` subprocesses in ``directory`` and kills them in ``close()``."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.processes: list[ExchangeProcess] = []

    def start(
        self,
        args: Sequence[str],
        config: Mapping[str, Any],
        *,
        name: str,
        grpc_address: str | None = None,
        ready: Callable[[], bool] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float = READY_TIMEOUT,
    ) -> ExchangeProcess:
        """Run ``exchange ARGS --config <dir>/NAME.toml`` and wait until it is ready:
        gRPC health SERVING at ``grpc_address`` and/or ``ready()`` true (either
        may be left out).  The process runs in ``directory``; its output goes
        to ``<dir>/NAME.log``."""
        config_path = self.directory / f"{name}.toml"
        config_path.write_text(to_toml(config))
        log_path = self.directory / f"{name}.log"
        environ = {k: v for k, v in os.environ.items() if not k.startswith(("EXCHANGE_HUB_", "EXCHANGE_NODE_"))}
        environ.update(env or {})
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(
                [_exchange_command(), *args, "--config", str(config_path)],
                cwd=self.directory, env=environ, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )
        process = ExchangeProcess(name, list(args), dict(config), config_path, log_path, popen, grpc_address,
                                  dict(env or {}))
        self.processes.append(process)
        deadline = time.monotonic() + timeout
        if grpc_address:
            # A TLS hub is probed with its own certificate (it may act as a client too).
            tls = {f"tls.{k}": v for k, v in config.get("tls", {}).items() if k in ("ca", "cert", "key")}
            probe = from_values(CLIENT_SETTINGS, tls) if tls else None
            _wait_for(process, deadline, lambda: is_serving(grpc_address, cfg=probe), f"gRPC health SERVING at {grpc_address}")
        if ready:
            _wait_for(process, deadline, ready, "readiness")
        return process

    def restart(self, process: ExchangeProcess, **kwargs: Any) -> ExchangeProcess:
        """Kill ``process`` if it still runs and start it again with the same settings."""
        process.kill()
        return self.start(process.args, process.config, name=process.name,
                          grpc_address=process.grpc_address, env=process.env, **kwargs)

    def hub(self, name: str = "hub", config: Mapping[str, Mapping[str, Any]] | None = None) -> ExchangeProcess:
        """A hub on fresh loopback ports with a SQLite store in the directory;
        ``config`` sections are merged over those defaults; without a ``tls``
        section it serves plain gRPC (``[listen] insecure``)."""
        settings: dict[str, dict[str, Any]] = {
            "store": {"url": f"sqlite:///{self.directory / (name + '-store.db')}"},
            "listen": {"address": f"127.0.0.1:{_free_port()}", "insecure": "tls" not in (config or {})},
            "metrics": {"address": "127.0.0.1", "port": _free_port()},
            "log": {"level": "info"},
        }
        for section, values in (config or {}).items():
            settings.setdefault(section, {}).update(values)
        return self.start(["hub", "run"], settings, name=name, grpc_address=settings["listen"]["address"])

    def node(self, hub_address: str, source_db: Path | str, tables: Sequence[str], *, name: str = "node",
             agency: str = "91310000MB2F31887X", config: Mapping[str, Mapping[str, Any]] | None = None,
             wait_ready: bool = True) -> ExchangeProcess:
        """A node capturing ``tables`` of ``source_db`` (a SQLite file, or a database
        URL) and shipping to ``hub_address``; ready once it serves /metrics
        (its source is prepared).  Without a ``tls`` section in ``config`` it
        connects in plain gRPC (``[hub] insecure``)."""
        settings: dict[str, Any] = {
            "agency": agency,
            "source": {"url": source_db if "://" in str(source_db) else f"sqlite:///{source_db}",
                       "tables": list(tables), "poll_interval": 0.05},
            "store": {"url": f"sqlite:///{self.directory / (name + '-store.db')}"},
            "hub": {"address": hub_address, "reconnect_max": 1.0, "insecure": "tls" not in (config or {})},
            "metrics": {"address": "127.0.0.1", "port": _free_port()},
        }
        for section, values in (config or {}).items():
            settings.setdefault(section, {}).update(values)
        metrics_url = f"http://127.0.0.1:{settings['metrics']['port']}/metrics"
        return self.start(["node", "run"], settings, name=name, ready=(lambda: http_answers(metrics_url)) if wait_ready else None)

    def close(self) -> None:
        for process in self.processes:
            process.kill()


def _wait_for(process: ExchangeProcess, deadline: float, check: Callable[[], bool], what: str) -> None:
    while True:
        if not process.running:
            raise RuntimeError(
                f"{process.name} exited with code {process.popen.returncode} before {what}:\n{process.log()[-4000:]}"
            )
        if check():
            return
        if time.monotonic() > deadline:
            process.kill()
            raise TimeoutError(f"{process.name} not ready ({what}):\n{process.log()[-4000:]}")
        time.sleep(0.05)


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()`` gives a loopback TCP port that is free now."""
    return _free_port


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path)
    yield launcher
    launcher.close()


@pytest.fixture(scope="module")
def module_launch(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Launcher]:
    launcher = Launcher(tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2]))
    yield launcher
    launcher.close()


@pytest.fixture
def hub(launch: Launcher) -> ExchangeProcess:
    """A hub of its own for one test; ``hub.grpc_address``, ``hub.config``."""
    return launch.hub()


@pytest.fixture
def agency(tmp_path: Path) -> SampleAgency:
    """The sample agency's SQLite database (exchange/demos/sample.py) with a few rows in each table."""
    sample = SampleAgency(str(tmp_path / "agency.db"))
    sample.create(persons=60, legal_persons=30, licences=40)
    return sample


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A private PostgreSQL cluster for the session (tests/support/postgres.py):
    ``postgres.url(db)``, ``postgres.create_database(name)``, ``postgres.execute(sql)``."""
    from support.postgres import start_cluster

    cluster = start_cluster()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def mariadb() -> Iterator[Any]:
    """A private MariaDB server with the binlog set up for capture, for the session
    (tests/support/mariadb.py): ``mariadb.url(db)``, ``mariadb.create_database(name)``,
    ``mariadb.execute(sql)``, ``mariadb.restart()``."""
    from support.mariadb import start_server

    server = start_server()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def sshd() -> Iterator[Any]:
    """A private OpenSSH sshd serving SFTP on loopback for the session (tests/support/sshd.py):
    ``sshd.settings(remote_dir)``, ``sshd.known_hosts``, ``sshd.client_key``."""
    from support.sshd import start_sshd

    server = start_sshd()
    yield server
    server.stop()
