"""What operators install and run: status commands, logs and configuration
errors, systemd units, container files and the Grafana dashboard."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from test_prometheus import AGENCY, ROOT, metric_names, start_pair, undocumented

EXCHANGE = [sys.executable, "-m", "exchange"]
DEPLOY = ROOT / "deploy"


def exchange(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*EXCHANGE, *args], capture_output=True, text=True, timeout=120)


def hub_status(hub, *flags: str) -> subprocess.CompletedProcess:
    result = exchange("hub", "status", "--config", str(hub.config_path), *flags)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def test_hub_status_asks_the_running_hub_and_reads_the_store_when_it_is_down(launch, tmp_path):
    hub, node = start_pair(launch, tmp_path)
    live = json.loads(hub_status(hub, "--json").stdout)
    assert live["hub_running"] is True
    [row] = live["agencies"]
    assert row["agency"] == AGENCY and row["connected"] is True and row["node_backlog_events"] == 0
    table = hub_status(hub).stdout
    assert table.startswith("hub running; 1 agency, 1 connected")
    assert re.search(rf"^{AGENCY}\s+yes\s", table, re.MULTILINE), table

    node.kill()
    assert hub.terminate() == 0
    stopped = json.loads(hub_status(hub, "--json").stdout)
    assert stopped["hub_running"] is False and "not running" in stopped["note"]
    [row_then] = stopped["agencies"]
    assert row_then["connected"] is False
    assert (row_then["hub_position"], row_then["latest_event_id"], row_then["last_event_time"]) == (
        row["hub_position"], row["latest_event_id"], row["last_event_time"])
    assert hub_status(hub).stdout.startswith("the hub is not running (no answer at http://127.0.0.1:")

    hub = launch.restart(hub)
    [row_after] = json.loads(hub_status(hub, "--json").stdout)["agencies"]
    assert row_after["connected"] is False and row_after["node_backlog_events"] is None
    assert row_after["hub_position"] == row["hub_position"]


def test_node_status_prints_a_table_or_json(launch, tmp_path):
    _, node = start_pair(launch, tmp_path)
    report = json.loads(exchange("node", "status", "--config", str(node.config_path), "--json").stdout)
    assert {"backlog_events", "caught_up", "hub_position", "hub_reachable"} <= set(report)
    table = exchange("node", "status", "--config", str(node.config_path)).stdout
    assert re.search(r"^backlog events\s+\d+$", table, re.MULTILINE), table
    assert re.search(r"^caught up\s+(yes|no)$", table, re.MULTILINE), table


@pytest.mark.parametrize("content, expected", [
    ('[store]\nurl = "sqlite:///hub.db"\n[listen]\nmax_batch = "many"\n', "[listen] max_batch: expected int, got 'many'"),
    ('[store]\nurl = "sqlite:///hub.db"\n[metrics]\nprot = 9465\n', "unknown key 'prot' in [metrics]; known: address, port"),
    ('[listen]\naddress = "127.0.0.1:0"\n', "missing required setting [store] url"),
], ids=["wrong type", "unknown key", "missing key"])
def test_a_bad_config_exits_2_naming_the_file_and_the_key(tmp_path, content, expected):
    bad = tmp_path / "bad.toml"
    bad.write_text(content)
    result = exchange("hub", "run", "--config", str(bad))
    assert result.returncode == 2
    assert f"exchange: configuration error: {bad}: {expected}" in result.stderr


NODE_TOML = """agency = "91310000MB2F31887X"
[source]
url = "sqlite:///agency.db"
tables = ["persons"]
[store]
url = "sqlite:///node-store.db"
[hub]
address = "127.0.0.1:1"
insecure = true
"""


@pytest.mark.parametrize("extra, env, expected", [
    ("batch_size = 0\n", {}, "{config}: [hub] batch_size = 0: must be at least 1"),
    ("", {"EXCHANGE_NODE_HUB_RECONNECT_MAX": "-1"},
     "environment variable EXCHANGE_NODE_HUB_RECONNECT_MAX = -1.0: must be greater than 0"),
], ids=["file", "environment"])
def test_a_node_setting_out_of_range_exits_2_naming_key_value_and_range(tmp_path, extra, env, expected):
    config = tmp_path / "bad.toml"
    config.write_text(NODE_TOML + extra)
    environ = {k: v for k, v in os.environ.items() if not k.startswith("EXCHANGE_NODE_")}
    result = subprocess.run([str(Path(sys.executable).with_name("exchange")), "node", "run", "--config", str(config)],
                            cwd=tmp_path, env={**environ, **env}, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"exchange: configuration error: {expected.format(config=config)}" in result.stderr
    assert not (tmp_path / "node-store.db").exists()  # refused before anything was opened


def test_json_logs_are_one_object_per_line_with_level_message_and_logger(launch, tmp_path):
    hub, node = start_pair(launch, tmp_path, hub_config={"log": {"format": "json"}})
    node.kill()  # so the hub need not wait for its publish stream to end
    assert hub.terminate() == 0
    entries = [json.loads(line) for line in hub.log().splitlines() if line.strip()]
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries), entries
    connected = [e for e in entries if e["message"].startswith("publisher connected")]
    assert connected and connected[0]["level"] == "info" and connected[0]["agency"] == AGENCY
    assert entries[-1]["message"] == "hub stopped"


@pytest.mark.skipif(not shutil.which("systemd-analyze"), reason="systemd-analyze not installed")
def test_systemd_units_verify_clean(tmp_path):
    """``systemd-analyze verify`` in a scratch root holding the system's units,
    the exchange units and a stub for the command they start."""
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    system_units = Path("/usr/lib/systemd/system")
    if not system_units.is_dir():
        pytest.skip("no systemd unit directory to verify against")
    shutil.copytree(system_units, tmp_path / "usr/lib/systemd/system", symlinks=True)
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    for unit in units:
        shutil.copy(unit, tmp_path / "etc/systemd/system")
        command = re.search(r"^ExecStart=(\S+)", unit.read_text(), re.MULTILINE).group(1)
        stub = tmp_path / command.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    result = subprocess.run(["systemd-analyze", "verify", f"--root={tmp_path}", "--man=no", *(u.name for u in units)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


def test_dockerfile_installs_the_package_as_a_non_root_user():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip install" in dockerfile
    user = re.search(r"^USER (\S+)$", dockerfile, re.MULTILINE)
    assert user and user.group(1) not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["exchange"\]$', dockerfile, re.MULTILINE)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert not {"pyproject.toml", "README.md", "exchange", "hub", "node", "adapters", "protos"} & set(ignored)


def test_compose_file_parses_and_references_files_that_exist():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"hub", "postgres", "prometheus"} <= set(services)
    build = services["hub"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in compose["volumes"], f"{name} uses undeclared volume {source}"
    assert "--config.file=/etc/prometheus/prometheus.yml" in services["prometheus"]["command"]


def dashboard_queries(dashboard: dict) -> list[str]:
    """Every PromQL expression of the dashboard's panels (rows included)."""
    panels = [p for panel in dashboard["panels"] for p in [panel, *panel.get("panels", [])]]
    queries = []
    for panel in panels:
        if panel["type"] != "row":
            assert panel.get("targets"), f"panel {panel['title']!r} has no query"
            queries += [target["expr"] for target in panel["targets"]]
    return queries


def test_grafana_dashboard_queries_only_catalogued_metrics():
    dashboard = json.loads((DEPLOY / "grafana/dashboards/exchange-hub.json").read_text())
    queries = dashboard_queries(dashboard)
    used = set().union(*(metric_names(q) for q in queries))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            used |= set(re.findall(r"label_values\((\w+)", variable["query"]["query"]))
    assert len(used) > 10
    assert undocumented(used) == set(), "dashboard metrics missing from docs/metrics.md"
    provider = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/exchange.yml").read_text())
    datasource = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text())
    assert provider["providers"][0]["options"]["path"] == "/var/lib/grafana/dashboards/exchange"
    assert datasource["datasources"][0]["type"] == "prometheus"
