"""Configuration: TOML plus environment, unknown keys refused with clear errors."""

import argparse

import pytest

from exchange.transport.rpc.channel import client_settings
from exchange.common.config import ConfigError
from hub import config as hub_config
from node import config as node_config

NODE_TOML = """
agency = "91310000MB2F31887F"
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
    text = NODE_TOML.replace('[hub]\naddress = "127.0.0.1:50051"\n', "")
    with pytest.raises(ConfigError, match=r"missing required setting \[hub\] address .*EXCHANGE_NODE_HUB_ADDRESS"):
        node_config.load(write(tmp_path, text), environ={})


def test_invalid_toml_names_the_file(tmp_path):
    with pytest.raises(ConfigError, match="node.toml: not valid TOML"):
        node_config.load(write(tmp_path, "agency = \n"), environ={})


def test_the_example_configs_load():
    root = __import__("pathlib").Path(__file__).resolve().parents[2] / "deploy" / "config"
    assert node_config.load(root / "node.example.toml", environ={})["agency"]
    assert hub_config.load(root / "hub.example.toml", environ={})["store.url"]
    consumer = node_config.load_consumer(root / "consumer.example.toml", environ={})
    assert consumer["tls.cert"] and consumer["consumer.replica"]
    admin = client_settings(argparse.Namespace(config=root / "admin.example.toml", hub=None, insecure=False))
    assert admin["tls.cert"] and admin["hub.address"]
