"""Configuration: TOML plus environment, unknown keys refused with clear errors."""

import argparse
import json

import pytest

from exchange.common.config import REQUIRED, ConfigError, Setting, env_name, from_values
from exchange.contracts.errors import InvalidInput
from exchange.transport.rpc import hubs
from exchange.transport.rpc.channel import client_settings
from hub import config as hub_config
from node import config as node_config

NODE_TOML = """
agency = "91310000MB2F31887X"
[source]
url = "sqlite:///agency.db"
tables = ["persons"]
[store]
url = "sqlite:///node.db"
[hub]
address = "127.0.0.1:50051"
"""


def write(tmp_path, text):
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_file_values_and_defaults(tmp_path):
    cfg = node_config.load(write(tmp_path, NODE_TOML), environ={})
    assert cfg["source.tables"] == ["persons"]
    assert cfg["metrics.port"] == 9464


def test_environment_overrides_the_file(tmp_path):
    env = {"EXCHANGE_NODE_SOURCE_TABLES": "persons,licences", "EXCHANGE_NODE_METRICS_PORT": "0",
           "EXCHANGE_NODE_HUB_ADDRESS": "hub:443"}
    cfg = node_config.load(write(tmp_path, NODE_TOML), environ=env)
    assert cfg["source.tables"] == ["persons", "licences"]
    assert cfg["metrics.port"] == 0
    assert cfg["hub.address"] == "hub:443"


def test_settings_from_environment_alone():
    env = {"EXCHANGE_HUB_STORE_URL": "sqlite:///hub.db"}
    assert hub_config.load(None, environ=env)["store.url"] == "sqlite:///hub.db"


@pytest.mark.parametrize(
    "prefix, suffix, message",
    [
        ("", "[log]\nlevle = 'debug'\n", "unknown key 'levle' in [log]; known: format, level"),
        ("colour = 'red'\n", "", "unknown key 'colour' in the top level"),
        ("", "[metrics]\nport = 'ninety'\n", "[metrics] port: expected int, got 'ninety'"),
    ],
)
def test_bad_keys_are_named(tmp_path, prefix, suffix, message):
    text = prefix + NODE_TOML + suffix
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        node_config.load(write(tmp_path, text), environ={})


def test_unknown_environment_setting_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="EXCHANGE_NODE_SORCE_URL is not a setting"):
        node_config.load(write(tmp_path, NODE_TOML), environ={"EXCHANGE_NODE_SORCE_URL": "x"})


def test_missing_required_setting_names_key_and_variable(tmp_path):
    text = NODE_TOML.replace('[store]\nurl = "sqlite:///node.db"\n', "")
    with pytest.raises(ConfigError, match=r"missing required setting \[store\] url .*EXCHANGE_NODE_STORE_URL"):
        node_config.load(write(tmp_path, text), environ={})


def test_hub_addresses_list_several_hubs_after_the_hub_address(tmp_path):
    text = NODE_TOML + 'addresses = ["hub-b:7000", "127.0.0.1:50051", "hub-c:7000"]\n'
    cfg = node_config.load(write(tmp_path, text), environ={})
    assert hubs.addresses(cfg) == ["127.0.0.1:50051", "hub-b:7000", "hub-c:7000"]
    only = node_config.load(write(tmp_path, NODE_TOML.replace('address = "127.0.0.1:50051"', "")),
                            environ={"EXCHANGE_NODE_HUB_ADDRESSES": "h1:7000, h2:7000"})
    assert hubs.addresses(only) == ["h1:7000", "h2:7000"]


@pytest.mark.parametrize("address", ["hub", "hub:", ":7000", "hub:0", "hub:70000", "hub:port", " hub:7000"])
def test_a_hub_address_that_is_not_host_and_port_is_refused_naming_it(tmp_path, address):
    cfg = node_config.load(write(tmp_path, NODE_TOML), environ={"EXCHANGE_NODE_HUB_ADDRESSES": json.dumps([address])})
    with pytest.raises(InvalidInput, match="is not HOST:PORT"):
        hubs.addresses(cfg)


def test_a_node_without_any_hub_is_refused_naming_both_keys(tmp_path):
    cfg = node_config.load(write(tmp_path, NODE_TOML.replace('address = "127.0.0.1:50051"', "")), environ={})
    with pytest.raises(InvalidInput, match=r"\[hub\] address .* or \[hub\] addresses"):
        hubs.check_all(cfg)


def test_hub_option_of_command_line_clients_takes_several_hubs():
    args = argparse.Namespace(config=None, hub="h1:7000,h2:7000", insecure=True)
    cfg = client_settings(args)
    assert hubs.addresses(cfg) == ["h1:7000", "h2:7000"]


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="node.toml: not valid TOML"):
        node_config.load(write(tmp_path, "agency = \n"), environ={})


def test_the_example_configs_load():
    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "deploy" / "config"
    assert node_config.load(root / "node.example.toml", environ={})["agency"]
    assert hub_config.load(root / "hub.example.toml", environ={})["store.url"]
    consumer = node_config.load_consumer(root / "consumer.example.toml", environ={})
    assert consumer.tls.cert and consumer.consumer.replica
    admin = client_settings(argparse.Namespace(config=root / "admin.example.toml", hub=None, insecure=False))
    assert admin.tls.cert and admin.hub.address


# Allowed ranges: every bounded or enumerated setting of every spec refuses values outside them.

BASE = {
    "node": (node_config.SETTINGS, "EXCHANGE_NODE", {
        "agency": "91310000MB2F31887X", "source.url": "sqlite:///agency.db", "source.tables": ["persons"],
        "store.url": "sqlite:///node.db", "hub.address": "127.0.0.1:50051"}),
    "consumer": (node_config.CONSUMER_SETTINGS, "EXCHANGE_NODE", {
        "agency": "91310000MB2F31887X", "consumer.replica": "sqlite:///replica.db",
        "consumer.resources": ["91110000000000000X/licences"]}),
    "hub": (hub_config.SETTINGS, "EXCHANGE_HUB", {"store.url": "sqlite:///hub.db"}),
}
LOADERS = {"node": node_config.load, "consumer": node_config.load_consumer, "hub": hub_config.load}


def out_of_range(setting: Setting) -> list:
    """Values just outside each bound of ``setting`` (and one far outside)."""
    if setting.choices:
        return ["nope", setting.choices[0].upper()]
    values = []
    if setting.minimum is not None:
        values += [setting.minimum - 1, setting.minimum - 1000]
    if setting.above is not None:
        values += [setting.above, setting.above - 1]
    if setting.maximum is not None:
        values.append(setting.maximum + 1)
    return [setting.type(v) for v in values]


CASES = [(spec_name, key, value) for spec_name, (spec, _, _) in BASE.items()
         for key, setting in spec.items() for value in out_of_range(setting)]


def to_toml(values: dict) -> str:
    """A TOML document of dotted keys (JSON strings, numbers and lists are TOML too)."""
    sections: dict[str, list[str]] = {}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        sections.setdefault(section, []).append(f"{name} = {json.dumps(value)}")
    return "\n".join(sections.pop("", []) + [f"[{s}]\n" + "\n".join(lines) for s, lines in sections.items()]) + "\n"


def display(key: str) -> str:
    section, _, name = key.rpartition(".")
    return f"[{section}] {name}" if section else name


def shown(value) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def test_every_numeric_and_enumerated_setting_has_a_range():
    for spec in (node_config.SETTINGS, node_config.CONSUMER_SETTINGS, hub_config.SETTINGS):
        unchecked = [k for k, s in spec.items() if s.type in (int, float) and not s.allowed()]
        assert not unchecked
        assert spec["log.level"].choices and spec["log.format"].choices
    assert node_config.SETTINGS["offline.mode"].choices == ("auto", "always", "off")


def test_every_default_is_allowed():
    for spec in (node_config.SETTINGS, node_config.CONSUMER_SETTINGS, hub_config.SETTINGS):
        assert {k: s.problem(s.default) for k, s in spec.items() if s.default is not REQUIRED and s.problem(s.default)} == {}


@pytest.mark.parametrize("spec_name, key, value", CASES, ids=[f"{n}-{k}={v}" for n, k, v in CASES])
def test_a_value_out_of_range_in_the_file_is_refused_naming_key_value_and_range(tmp_path, spec_name, key, value):
    spec, _, base = BASE[spec_name]
    path = tmp_path / f"{spec_name}.toml"
    path.write_text(to_toml({**base, key: value}))
    expected = f"{path}: {display(key)} = {shown(value)}: must be {spec[key].allowed()}"
    with pytest.raises(ConfigError) as refused:
        LOADERS[spec_name](path, environ={})
    assert str(refused.value) == expected


@pytest.mark.parametrize("spec_name, key, value", CASES, ids=[f"{n}-{k}={v}" for n, k, v in CASES])
def test_a_value_out_of_range_in_the_environment_is_refused_naming_variable_value_and_range(tmp_path, spec_name,
                                                                                            key, value):
    spec, prefix, base = BASE[spec_name]
    path = tmp_path / f"{spec_name}.toml"
    path.write_text(to_toml(base))
    variable = env_name(prefix, key)
    with pytest.raises(ConfigError) as refused:
        LOADERS[spec_name](path, environ={variable: str(value)})
    assert str(refused.value) == f"environment variable {variable} = {shown(value)}: must be {spec[key].allowed()}"


@pytest.mark.parametrize("section, line, message", [
    ("hub", "batch_size = 0", "[hub] batch_size = 0: must be at least 1"),
    ("hub", "reconnect_max = 0", "[hub] reconnect_max = 0.0: must be greater than 0"),
    ("hub", "reconnect_max = -1.0", "[hub] reconnect_max = -1.0: must be greater than 0"),
    ("hub", "reconnect_max = inf", "[hub] reconnect_max = inf: must be a finite number"),
    ("metrics", "port = 65536", "[metrics] port = 65536: must be between 0 and 65535"),
    ("log", "format = 'xml'", '[log] format = "xml": must be one of text, json'),
])
def test_the_messages_read_as_the_operator_wrote_the_setting(tmp_path, section, line, message):
    text = NODE_TOML.replace("[hub]\n", f"[hub]\n{line}\n") if section == "hub" else NODE_TOML + f"[{section}]\n{line}\n"
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        node_config.load(path, environ={})
    assert str(refused.value) == f"{path}: {message}"


def test_bounds_are_inclusive_and_the_edges_load(tmp_path):
    text = NODE_TOML + "[metrics]\nport = 0\n[sftp]\nport = 65535\nmax_rate = 0\n[offline]\nfallback_after = 0\n"
    cfg = node_config.load(write(tmp_path, text.replace("[hub]\n", "[hub]\nbatch_size = 1\nwindow = 1\n")), environ={})
    assert (cfg.metrics.port, cfg.sftp.port, cfg.sftp.max_rate, cfg.offline.fallback_after) == (0, 65535, 0, 0.0)
    assert (cfg.hub.batch_size, cfg.hub.window) == (1, 1)


def test_an_environment_value_of_the_wrong_type_names_the_variable(tmp_path):
    with pytest.raises(ConfigError, match=r"^environment variable EXCHANGE_NODE_SOURCE_KEYS: expected dict, got \[1\]$"):
        node_config.load(write(tmp_path, NODE_TOML), environ={"EXCHANGE_NODE_SOURCE_KEYS": "[1]"})


# The loaded object.

def test_sections_and_top_level_settings_are_attributes_of_a_frozen_object(tmp_path):
    import dataclasses

    cfg = node_config.load(write(tmp_path, NODE_TOML), environ={"EXCHANGE_NODE_HUB_BATCH_SIZE": "50"})
    assert (cfg.agency, cfg.source.tables, cfg.hub.batch_size, cfg.tls.ca) == ("91310000MB2F31887X", ["persons"], 50, "")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.hub.batch_size = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.agency = "x"  # type: ignore[misc]
    assert cfg == node_config.load(write(tmp_path, NODE_TOML), environ={"EXCHANGE_NODE_HUB_BATCH_SIZE": "50"})


def test_dotted_item_access_still_works(tmp_path):
    cfg = node_config.load(write(tmp_path, NODE_TOML), environ={})
    assert cfg["hub.address"] == cfg.hub.address and cfg["agency"] == cfg.agency
    assert "tls.ca" in cfg and "tls.crl" not in cfg
    assert cfg.get("tls.crl", "none") == "none" and cfg.get("metrics.port") == 9464
    assert list(cfg) == list(node_config.SETTINGS) and len(cfg) == len(node_config.SETTINGS)
    with pytest.raises(KeyError):
        cfg["hub"]


def test_defaults_are_not_shared_between_configs(tmp_path):
    one = node_config.load(write(tmp_path, NODE_TOML), environ={})
    one.source.not_shared.append("persons")
    assert node_config.load(write(tmp_path, NODE_TOML), environ={}).source.not_shared == []


def test_from_values_builds_a_checked_config_from_dotted_keys():
    cfg = from_values(hub_config.SETTINGS, {"store.url": "sqlite:///hub.db", "listen.max_batch": 10})
    assert (cfg.store.url, cfg.listen.max_batch, cfg.metrics.port) == ("sqlite:///hub.db", 10, 9465)
    with pytest.raises(ConfigError, match=r"^settings: \[listen\] max_batch = 0: must be at least 1$"):
        from_values(hub_config.SETTINGS, {"store.url": "sqlite:///hub.db", "listen.max_batch": 0})
    with pytest.raises(ConfigError, match=r"^settings: missing required setting \[store\] url$"):
        from_values(hub_config.SETTINGS, {})
    with pytest.raises(ConfigError, match=r"^settings: unknown settings listen.batch; known: "):
        from_values(hub_config.SETTINGS, {"store.url": "sqlite:///hub.db", "listen.batch": 1})


def test_the_settings_tables_document_every_allowed_range():
    """README.md and docs/bundles.md give each bounded or enumerated setting its range, in the words of the error."""
    root = __import__("pathlib").Path(__file__).resolve().parents[2]
    rows = [line for doc in ("README.md", "docs/bundles.md") for line in (root / doc).read_text().splitlines()
            if line.startswith("| `")]

    def documented(key: str, allowed: str) -> bool:
        section, _, name = key.rpartition(".")
        return any(f"`{key}`" in row.split(" | ")[0] and allowed in row for row in rows) or \
            any(f"`{section}." in row.split(" | ")[0] and f"`{name}`" in row.split(" | ")[0] and allowed in row
                for row in rows)

    for spec in (node_config.SETTINGS, hub_config.SETTINGS):
        missing = [k for k, s in spec.items() if s.allowed() and not documented(k, s.allowed())]
        assert not missing


# Federation: [upstream] on a district hub, [federation] downstream on the city hub.

HUB_TOML = """
[store]
url = "sqlite:///hub.db"
[upstream]
address = "city.example.gov.cn:7000"
agencies = ["91310000MB2F31887X"]
[federation]
downstream = { "district-a" = ["91310000MB2F31887X", "11310000002421001L"] }
"""


def test_federation_settings_come_from_the_file_and_the_environment(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text(HUB_TOML)
    cfg = hub_config.load(path, environ={})
    assert cfg.upstream.address == "city.example.gov.cn:7000" and cfg.upstream.batch_size == 500
    assert hub_config.downstream_hubs(cfg) == {"district-a": frozenset({"91310000MB2F31887X", "11310000002421001L"})}
    cfg = hub_config.load(path, environ={"EXCHANGE_HUB_UPSTREAM_AGENCIES": "11310000002421001L",
                                         "EXCHANGE_HUB_FEDERATION_DOWNSTREAM": '{"district-b": []}'})
    assert cfg.upstream.agencies == ["11310000002421001L"]
    assert hub_config.downstream_hubs(cfg) == {"district-b": frozenset()}


@pytest.mark.parametrize("text, message", [
    ("[upstream]\naddres = \"city:7000\"\n", "unknown key 'addres' in [upstream]"),
    ("[federation]\ndownstream = { \"district-a\" = \"91310000MB2F31887X\" }\n",
     "[federation] downstream.district-a: expected a list of agency ids"),
    ("[federation]\ndownstream = { \"district-a\" = [\"no such agency\"] }\n",
     "[federation] downstream.district-a: invalid agency id"),
    ("[upstream]\naddress = \"city:7000\"\nagencies = [\"a-b\"]\n", "[upstream] agencies: invalid agency id"),
    ("[upstream]\nagencies = [\"91310000MB2F31887X\"]\n", "neither [upstream] address nor addresses"),
])
def test_bad_federation_settings_are_refused_naming_them(tmp_path, text, message):
    path = tmp_path / "hub.toml"
    path.write_text("[store]\nurl = \"sqlite:///hub.db\"\n" + text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        hub_config.load(path, environ={})
