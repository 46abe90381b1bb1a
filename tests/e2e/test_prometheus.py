"""Metrics catalog, alert rules and a real Prometheus watching a real hub and node.

promtool checks the live /metrics output, the scrape configuration and the
rules, and runs the rules' unit tests (deploy/prometheus/tests/); a
Prometheus server started on loopback fires the node-down alert when the node
is SIGKILLed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from exchange.demos.pipeline import stop
from exchange.demos.sample import TABLES, SampleAgency

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
RULES = PROMETHEUS_DIR / "rules" / "exchange.yml"
CATALOG = ROOT / "docs" / "metrics.md"
AGENCY = "91310000MB2F31887X"
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset"}
SERIES_SUFFIXES = ("_bucket", "_sum", "_count", "_created")

needs_promtool = pytest.mark.skipif(not shutil.which("promtool"), reason="promtool not installed (apt-get install prometheus)")
needs_prometheus = pytest.mark.skipif(not shutil.which("prometheus"), reason="prometheus not installed (apt-get install prometheus)")


def catalogued_metrics() -> set[str]:
    """Metric names listed in docs/metrics.md's tables (rows: name, type, ...)."""
    return set(re.findall(r"^\| `([a-z_:][a-z0-9_:]*)` \| (?:counter|gauge|histogram|summary) \|",
                          CATALOG.read_text(), re.MULTILINE))


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    expr = re.sub(r'"[^"]*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", expr):
        if not expr[match.end():].lstrip().startswith("(") and match.group() not in PROMQL_WORDS:
            names.add(match.group())
    return names


def undocumented(names: set[str]) -> set[str]:
    """Those of ``names`` that docs/metrics.md does not list (a histogram's
    series and a counter's ``_created`` count as their metric)."""
    known = catalogued_metrics()
    known |= {name.removesuffix("_total") for name in known}
    return {n for n in names
            if n not in known and not any(n.endswith(s) and n[: -len(s)] in known for s in SERIES_SUFFIXES)}


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def wait_for(check, what: str, timeout: float = 120.0):
    """Poll ``check()`` until it returns something true; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


def start_pair(launch, tmp_path: Path, hub_config: dict | None = None):
    """A hub (``hub_config`` sections merged over the defaults) and a node
    with a small sample agency whose changes reached the hub."""
    agency = SampleAgency(str(tmp_path / "agency.db"))
    agency.create(persons=20, legal_persons=10, licences=10)
    hub = launch.hub(config=hub_config)
    node = launch.node(hub.grpc_address, Path(agency.path), TABLES, agency=AGENCY)
    agency.run(50)
    status_url = f"http://127.0.0.1:{hub.config['metrics']['port']}/status.json"

    def caught_up():
        rows = json.loads(get(status_url))["agencies"]
        return rows and rows[0]["connected"] and rows[0]["node_backlog_events"] == 0 and rows[0]["latest_event_id"] > 0

    wait_for(caught_up, "the node to catch up")
    return hub, node


def metrics_url(process) -> str:
    return f"http://127.0.0.1:{process.config['metrics']['port']}/metrics"


def sample(process, name: str) -> float | None:
    """The value of the unlabelled metric ``name`` that ``process`` serves now (None when absent)."""
    found = re.search(rf"^{name} (\S+)$", get(metrics_url(process)), re.MULTILINE)
    return float(found.group(1)) if found else None


def test_the_node_backlog_age_grows_while_the_hub_is_down_and_is_0_once_caught_up(launch, tmp_path):
    hub, node = start_pair(launch, tmp_path)
    wait_for(lambda: sample(node, "exchange_node_backlog_events") == 0 and sample(node, "exchange_node_backlog_seconds") == 0,
             "the node to see its events acknowledged")  # two scrapes: retried until both say caught up
    assert hub.terminate() == 0
    source = SampleAgency(str(tmp_path / "agency.db")).connect()
    source.execute("UPDATE legal_persons SET registered_capital = registered_capital + 1")
    source.close()
    wait_for(lambda: (sample(node, "exchange_node_backlog_events") or 0) > 0, "the node to capture the changes")
    age = wait_for(lambda: sample(node, "exchange_node_backlog_seconds"), "a backlog age above 0")
    wait_for(lambda: sample(node, "exchange_node_backlog_seconds") > age + 1, "the backlog age to grow")
    assert sample(node, "exchange_node_hub_connected") == 0

    launch.restart(hub)
    wait_for(lambda: sample(node, "exchange_node_backlog_events") == 0 and sample(node, "exchange_node_backlog_seconds") == 0
             and sample(node, "exchange_node_source_pending_changes") == 0, "the node to catch up")


@needs_promtool
def test_rules_and_scrape_config_pass_promtool():
    for args in (["check", "rules", str(RULES)], ["check", "config", str(PROMETHEUS_DIR / "prometheus.yml")]):
        result = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_promtool
def test_alert_rule_unit_tests_pass():
    tests = sorted(str(p) for p in (PROMETHEUS_DIR / "tests").glob("*.yml"))
    result = subprocess.run(["promtool", "test", "rules", *tests], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_documented():
    alerts = {rule["alert"] for rule in alert_rules()}
    firing_in_tests = set()
    for path in (PROMETHEUS_DIR / "tests").glob("*.yml"):
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    firing_in_tests.add(check["alertname"])
    assert alerts - firing_in_tests == set(), "alerts without a unit test that makes them fire"
    catalog = CATALOG.read_text()
    assert {a for a in alerts if a not in catalog} == set(), "alerts missing from docs/metrics.md"
    used = set().union(*(metric_names(rule["expr"]) for rule in alert_rules()))
    assert undocumented(used) == set(), "metrics used by alert rules but missing from docs/metrics.md"


def test_promql_metric_name_extraction():
    assert metric_names('max by (agency) (time() - a_b{job="x", c=~"$d"} and c_d > 0) > 4 * 1024^3 or '
                        'rate(e_total[$__rate_interval]) unless on(x) f offset 5m') == {"a_b", "c_d", "e_total", "f"}


@needs_promtool
def test_live_metrics_of_hub_and_node_pass_promtool_and_are_catalogued(launch, tmp_path):
    hub, node = start_pair(launch, tmp_path)
    for process in (hub, node):
        text = get(metrics_url(process))
        result = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                                timeout=60)
        assert result.returncode == 0 and not result.stdout.strip(), f"{process.name}: {result.stdout}{result.stderr}"
        families = set(re.findall(r"^# TYPE (exchange_\w+) ", text, re.MULTILINE))
        assert families, f"{process.name} exports no exchange_ metrics"
        assert undocumented(families) == set(), f"{process.name} exports metrics missing from docs/metrics.md"


def prometheus_config(tmp_path: Path, hub, node) -> Path:
    """A prometheus.yml scraping ``hub`` and ``node`` every second, with the
    production rules whose node-down ``for`` is cut to one second."""
    groups = yaml.safe_load(RULES.read_text())
    for group in groups["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "ExchangeNodeDown":
                rule["for"] = "1s"
    rules = tmp_path / "rules.yml"
    rules.write_text(yaml.safe_dump(groups))
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            {"job_name": "exchange-hub", "static_configs": [{"targets": [f"127.0.0.1:{hub.config['metrics']['port']}"]}]},
            {"job_name": "exchange-node", "static_configs": [
                {"targets": [f"127.0.0.1:{node.config['metrics']['port']}"], "labels": {"agency": AGENCY}}]},
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def prometheus(tmp_path, free_port):
    """Start Prometheus with ``start(config_path)``; its base URL is returned."""
    started: list[subprocess.Popen] = []

    def start(config: Path) -> str:
        address = f"127.0.0.1:{free_port()}"
        log = open(tmp_path / "prometheus.log", "wb")
        started.append(subprocess.Popen(
            ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address={address}", "--log.level=warn"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        ))
        log.close()
        url = f"http://{address}"

        def ready():
            assert started[0].poll() is None, (tmp_path / "prometheus.log").read_text()
            try:
                return get(f"{url}/-/ready")
            except OSError:
                return None

        wait_for(ready, "Prometheus to be ready")
        return url

    yield start
    for process in started:
        stop(process)


def query(url: str, promql: str) -> list[dict]:
    answer = json.loads(get(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": promql})))
    return answer["data"]["result"]


def firing(url: str, name: str) -> list[dict]:
    alerts = json.loads(get(f"{url}/api/v1/alerts"))["data"]["alerts"]
    return [a for a in alerts if a["labels"]["alertname"] == name and a["state"] == "firing"]


@needs_prometheus
def test_killing_the_node_fires_the_node_down_alert_in_prometheus(launch, tmp_path, prometheus):
    hub, node = start_pair(launch, tmp_path)
    url = prometheus(prometheus_config(tmp_path, hub, node))
    wait_for(lambda: query(url, 'up{job="exchange-node"} == 1'), "Prometheus to scrape the node")
    wait_for(lambda: query(url, 'exchange_hub_publishers_connected == 1'), "Prometheus to scrape the hub")
    assert firing(url, "ExchangeNodeDown") == []

    node.kill()
    alerts = wait_for(lambda: firing(url, "ExchangeNodeDown"), "ExchangeNodeDown to fire", timeout=90)
    assert alerts[0]["labels"]["agency"] == AGENCY
    assert alerts[0]["labels"]["severity"] == "critical"
    assert firing(url, "ExchangeHubDown") == []
