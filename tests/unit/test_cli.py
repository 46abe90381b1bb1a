"""The ``exchange`` command: one parser whose every command has a handler, help that stays light, and
errors of the exchange reported as ``exchange: MESSAGE`` with their exit code instead of a traceback."""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from exchange.cli import catalog_client, share_client
from exchange.cli.main import build_parser, main
from exchange.contracts.errors import ExchangeError
from node.resnapshot import chosen_tables

AGENCY = "cli_agency"
PACKAGES = ("exchange", "adapters", "node", "hub", "consumer")


@pytest.fixture(autouse=True)
def restore_logging():
    """Commands set up logging to the stderr of their test; the next test's must not write there."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def leaves(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command words, parser) of every parser that takes no further subcommand."""
    subparsers = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subparsers:
        yield path, parser
    for action in subparsers:
        for name, sub in action.choices.items():
            yield from leaves(sub, path + (name,))


def subcommands(*words: str) -> set[str]:
    parser = build_parser()
    for word in words:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[word]
    return set(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


# The parser.

def test_every_command_has_a_handler():
    found = list(leaves(build_parser()))
    assert len(found) > 40
    missing = [" ".join(words) for words, parser in found if not callable(parser.get_default("handler"))]
    assert not missing, f"commands without a handler: {missing}"


def test_every_remote_share_and_catalog_action_has_a_call():
    assert set(share_client.CALLS) == subcommands("share") - {"receipts", "verify-receipts"}
    assert set(catalog_client.CALLS) == subcommands("catalog") - {"draft", "submit"}


@pytest.mark.parametrize("argv, listed", [
    ([], ["hub", "node", "share", "demo-sharing", "replay", "store", "verify", "audit", "ca", "catalog", "registry",
          "demo"]),
    (["node"], ["run", "restore", "status", "quality", "keygen", "export", "subscribe", "import"]),
    (["catalog", "review"], ["--accept", "--accept-all", "--reject", "--hub", "--config", "--insecure"]),
    (["share", "list"], ["--status", "--all", "--agency", "--hub"]),
    (["replay"], ["--store", "--bundles", "--key", "--until", "--cipher-key-file"]),
])
def test_help_lists_the_commands_and_options(capsys, argv, listed):
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: exchange")
    assert all(word in out for word in listed), out


def test_building_the_parser_imports_no_grpc_and_no_handler_code():
    probe = ("import sys; from exchange.cli.main import build_parser; build_parser(); "
             "print(sorted(m for m in sys.modules if m.split('.')[0] in ('grpc', 'protos', 'node', 'consumer', 'adapters') "
             "or m.startswith(('exchange.tools', 'exchange.demos', 'exchange.transport'))))")
    imported = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert imported.strip() == "[]"


def test_python_dash_m_runs_the_same_command():
    for module in ("exchange", "exchange.cli"):
        result = subprocess.run([sys.executable, "-m", module, "ca", "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and "usage: exchange ca" in result.stdout, result.stderr


# Errors: `exchange: MESSAGE` on stderr and the error's exit code, never a traceback.

def test_a_missing_config_file_is_a_configuration_error(capsys, tmp_path):
    code, out, err = run(capsys, "hub", "status", "--config", str(tmp_path / "absent.toml"))
    assert (code, out) == (2, "")
    assert err == f"exchange: configuration error: {tmp_path / 'absent.toml'}: no such config file\n"


def test_a_bad_store_url(capsys, tmp_path):
    code, _, err = run(capsys, "replay", "--store", "foo://x", "--agency", AGENCY,
                       "--target", f"sqlite:///{tmp_path / 'rebuilt.db'}")
    assert code == 2 and err.startswith("exchange: unsupported store URL 'foo://x'"), err


def test_an_unsupported_database_url(capsys, tmp_path):
    code, _, err = run(capsys, "verify", "--source", "foo://x", "--target", f"sqlite:///{tmp_path / 'y.db'}")
    assert code == 2 and err.startswith("exchange: unsupported database URL 'foo://x'"), err



def test_a_sqlite_url_without_a_path(capsys, tmp_path):
    code, _, err = run(capsys, "verify", "--source", "sqlite:///", "--target", f"sqlite:///{tmp_path / 'y.db'}")
    assert code == 2 and err == "exchange: unsupported URL 'sqlite:///': expected sqlite:///PATH\n", err


@pytest.mark.parametrize("argv, message", [
    (["replay", "--bundles", ".", "--agency", AGENCY, "--target", "sqlite:///never.db"],
     "--bundles needs --key, the agency's bundle public key"),
    (["replay", "--store", "sqlite:///never.db", "--agency", AGENCY, "--target", "sqlite:///never.db", "--jobs", "0"],
     "--jobs takes a number of processes, at least 1, not 0"),
    (["replay", "--bundles", ".", "--key", "k.pub", "--agency", AGENCY, "--target", "sqlite:///never.db",
      "--jobs", "2"], "--jobs works with --store; a folder of bundles is replayed in one job"),
    (["ca", "issue", "--dir", ".", "--agency", AGENCY, "--host", "example.org"], "--host is for hub certificates only"),
    (["ca", "revoke", "--dir", "."], "name what to revoke: SERIAL..., --agency ID or --admin NAME"),
    (["audit", "verify", "--path", "audit.log", "--head", "12:beef"], "not an audit head '12:beef'"),
    (["share", "list", "--agency", AGENCY], "name the hub: --hub HOST:PORT, or --config with a [hub] address"),
    (["share", "list", "--config", "absent.toml"], "absent.toml: cannot read: No such file or directory"),
    (["share", "request", "--hub", "127.0.0.1:1", "--insecure", "--provider", "p", "--resource", "r",
      "--scope", "s", "--purpose", "p", "--items", "i"],
     "configuration error: name the agency acting: --agency ID or a --config with agency"),
    (["catalog", "review", "CODE", "--reject", "nameless", "--hub", "127.0.0.1:1", "--insecure"],
     "--reject 'nameless': expected ITEM=REASON"),
    (["catalog", "review", "CODE", "--hub", "127.0.0.1:1", "--insecure"],
     "give --accept ITEM..., --accept-all or --reject ITEM=REASON..."),
])
def test_bad_options_exit_2_naming_the_problem(capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(capsys, *argv)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].startswith(f"exchange: {message}"), err
    assert "Traceback" not in err


def test_an_unreadable_entry_file_submits_nothing(capsys, tmp_path):
    code, out, err = run(capsys, "catalog", "submit", str(tmp_path / "absent.toml"), "--hub", "127.0.0.1:1", "--insecure")
    assert (code, out) == (2, "")
    assert err == (f"{tmp_path / 'absent.toml'}: cannot read: No such file or directory\n"
                   "exchange: nothing submitted: 1 of 1 files have problems\n")


def test_a_hub_that_cannot_be_reached_fails_with_exit_1(capsys):
    code, out, err = run(capsys, "share", "list", "--agency", AGENCY, "--hub", "127.0.0.1:1", "--insecure")
    assert (code, out) == (1, "")
    assert err.splitlines()[-1].startswith("exchange: the hub refused: ") and err.rstrip().endswith("(UNAVAILABLE)"), err



def test_an_interrupted_command_exits_130():
    with socket.socket() as silent_hub:  # accepts the connection and never answers
        silent_hub.bind(("127.0.0.1", 0))
        silent_hub.listen()
        silent_hub.settimeout(60)  # a command that never connects fails the test instead of hanging it
        address = "127.0.0.1:%d" % silent_hub.getsockname()[1]
        command = subprocess.Popen([sys.executable, "-m", "exchange", "share", "list", "--agency", AGENCY,
                                    "--hub", address, "--insecure"], stderr=subprocess.PIPE, text=True)
        try:
            connection, _ = silent_hub.accept()  # the command is waiting for the hub's answer now
            with connection:
                command.send_signal(signal.SIGINT)
                assert command.wait(60) == 130
        finally:
            command.kill()
            command.wait()
    assert "Traceback" not in command.stderr.read()


# Settings that cannot work, found by the command rather than the config loader.

def hub_config(tmp_path: Path, extra: str = "") -> str:
    return write(tmp_path / "hub.toml", f'[store]\nurl = "sqlite:///{tmp_path / "hub-store.db"}"\n{extra}')


def node_config(tmp_path: Path, extra: str = "") -> str:
    return write(tmp_path / "node.toml", f'agency = "{AGENCY}"\n[source]\nurl = "sqlite:///{tmp_path / "agency.db"}"\n'
                                         f'tables = ["people"]\n{extra}\n[store]\n'
                                         f'url = "sqlite:///{tmp_path / "node-store.db"}"\n'
                                         '[hub]\naddress = "127.0.0.1:1"\ninsecure = true\n')


def test_importing_a_directory_that_does_not_exist(capsys, tmp_path):
    code, _, err = run(capsys, "hub", "import", str(tmp_path / "absent"), "--config", hub_config(tmp_path))
    assert code == 2 and err == f"exchange: {tmp_path / 'absent'}: no such directory\n"


def test_hub_export_refuses_a_bad_bundle_size(capsys, tmp_path):
    code, _, err = run(capsys, "hub", "export", "--consumer", AGENCY, "--to", str(tmp_path / "out"),
                       "--max-events", "0", "--config", hub_config(tmp_path))
    assert code == 2 and err == "exchange: --max-events must be at least 1, got 0\n"


def test_hub_export_refuses_an_invalid_agency_id(capsys, tmp_path):
    code, _, err = run(capsys, "hub", "export", "--consumer", "no-dashes", "--to", str(tmp_path / "out"),
                       "--config", hub_config(tmp_path))
    assert code == 2 and err.startswith("exchange: invalid agency id 'no-dashes'"), err


def test_node_export_refuses_a_bad_bundle_size(capsys, tmp_path):
    code, _, err = run(capsys, "node", "export", "--to", str(tmp_path / "out"), "--max-events", "0",
                       "--config", node_config(tmp_path))
    assert code == 2 and err == "exchange: --max-events must be at least 1, got 0\n"


def test_quality_refuses_identifiers_of_a_table_not_captured(capsys, tmp_path):
    config = node_config(tmp_path, '[source.identifiers]\ncompanies = {code = "uscc"}')
    code, _, err = run(capsys, "node", "quality", "--config", config)
    assert code == 2 and err.startswith("exchange: [source] identifiers names table 'companies'"), err


def test_catalog_draft_refuses_an_unknown_mask_method(capsys, tmp_path):
    config = node_config(tmp_path, '[policy.mask]\npeople = {name = "rot13"}')
    code, _, err = run(capsys, "catalog", "draft", "--to", str(tmp_path / "drafts"), "--config", config)
    assert code == 2 and err.startswith("exchange: [policy] mask: people.name = 'rot13'"), err


def test_replica_import_refuses_a_resource_that_is_not_provider_slash_resource(capsys, tmp_path):
    config = write(tmp_path / "consumer.toml", f'agency = "{AGENCY}"\n[consumer]\n'
                                               f'replica = "sqlite:///{tmp_path / "replica.db"}"\n'
                                               'resources = ["people"]\nhub_key = "hub.pub"\n')
    code, _, err = run(capsys, "node", "import", str(tmp_path), "--config", config)
    assert code == 2 and err == "exchange: [consumer] resources: 'people' is not PROVIDER/RESOURCE\n"


def test_hub_import_refuses_a_calendar_date_that_is_no_date(capsys, tmp_path):
    config = hub_config(tmp_path, '[calendar]\nholidays = ["1 May"]\n')
    code, _, err = run(capsys, "hub", "import", str(tmp_path), "--config", config)
    assert code == 2 and err.startswith("exchange: [calendar] expects ISO dates like 2027-01-01, got '1 May'"), err


def test_every_exception_class_of_the_project_is_an_exchange_error():
    classes = []
    for package in PACKAGES:
        root = importlib.import_module(package)
        for module in pkgutil.walk_packages(root.__path__, f"{package}."):
            if module.name.endswith("__main__"):
                continue  # running it is the point of it
            namespace = vars(importlib.import_module(module.name))
            classes += [value for value in namespace.values() if isinstance(value, type)
                        and issubclass(value, BaseException) and value.__module__ == module.name]
    assert len(classes) > 25
    assert not [c.__qualname__ for c in classes if not issubclass(c, ExchangeError)]



def test_json_output_keeps_64_bit_integers_as_numbers():
    from exchange.cli.output import message_json
    from protos.exchange.v1 import sharing_pb2

    report = sharing_pb2.ShareReport(at="now", providers=[
        sharing_pb2.ProviderReport(agency="A", requests=1, delivered={"B": 2**40},
                                   late_or_overdue=[sharing_pb2.ShareRequestInfo(id="r", items=["x"])])])
    shown = message_json(report)["providers"][0]
    assert shown["delivered"] == {"B": 2**40} and shown["requests"] == 1
    assert shown["late_or_overdue"][0]["items"] == ["x"]


def test_resnapshot_needs_tables_or_all_and_names_what_is_not_captured(capsys, tmp_path):
    sqlite3.connect(tmp_path / "agency.db").execute("CREATE TABLE people (id INTEGER PRIMARY KEY)")
    code, _, err = run(capsys, "node", "resnapshot", "--config", node_config(tmp_path))
    assert code == 2 and "name the tables to read again, or give --all" in err
    assert chosen_tables(["people", "sales.orders"], ["sales.*", "people"]) == ["sales.orders", "people"]
    with pytest.raises(ExchangeError, match="'places' names no captured table; the captured tables are: people"):
        chosen_tables(["people"], ["places"])
