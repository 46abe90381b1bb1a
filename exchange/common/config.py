"""TOML configuration with environment overrides.

Every setting has a dotted name (``source.url``) that is a key in the TOML
file (``[source] url = ...``) and an environment variable
(``EXCHANGE_NODE_SOURCE_URL`` for a node, ``EXCHANGE_HUB_...`` for the hub).
The environment wins over the file.  Unknown keys, in the file or under the
component's environment prefix, are refused with an error naming them.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

REQUIRED = object()


class ConfigError(Exception):
    """A configuration problem; the message names the file, key and expectation."""


@dataclass(frozen=True)
class Setting:
    type: type  # str, int, float, bool, list (of str) or dict
    default: Any = REQUIRED
    help: str = ""


def env_name(prefix: str, key: str) -> str:
    return f"{prefix}_{key.replace('.', '_').upper()}"


def load_config(
    path: str | Path | None,
    spec: Mapping[str, Setting],
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Read ``path`` (may be None) and the environment into a flat dict of
    dotted keys, checked against ``spec``."""
    environ = os.environ if environ is None else environ
    where = str(path) if path else "environment"
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        raw = _flatten(data, spec, path)

    known_env = {env_name(env_prefix, k): k for k in spec}
    for var, value in environ.items():
        if not var.startswith(env_prefix + "_"):
            continue
        if var not in known_env:
            raise ConfigError(
                f"environment variable {var} is not a setting; known: {', '.join(sorted(known_env))}"
            )
        raw[known_env[var]] = _from_env(value, spec[known_env[var]], var)

    values: dict[str, Any] = {}
    for key, setting in spec.items():
        if key in raw:
            values[key] = _check_type(raw[key], setting, f"{where}: {_display(key)}")
        elif setting.default is REQUIRED:
            raise ConfigError(
                f"{where}: missing required setting {_display(key)} "
                f"(or environment variable {env_name(env_prefix, key)})"
            )
        else:
            values[key] = setting.default
    return values


def _display(key: str) -> str:
    section, _, name = key.rpartition(".")
    return f"[{section}] {name}" if section else name


def _flatten(data: dict[str, Any], spec: Mapping[str, Setting], path: str | Path) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    sections = {k.rpartition(".")[0] for k in spec if "." in k}

    def walk(prefix: str, table: dict[str, Any]) -> None:
        for name, value in table.items():
            key = f"{prefix}.{name}" if prefix else name
            if key in spec:
                flat[key] = value
            elif isinstance(value, dict) and key in sections:
                walk(key, value)
            else:
                known = sorted(k.rpartition(".")[2] for k in spec if k.rpartition(".")[0] == prefix)
                known += sorted(s.partition(".")[0] for s in sections if not prefix and "." not in s)
                raise ConfigError(
                    f"{path}: unknown key {name!r} in {f'[{prefix}]' if prefix else 'the top level'}; "
                    f"known: {', '.join(known) or 'none'}"
                )

    walk("", data)
    return flat


def _from_env(value: str, setting: Setting, var: str) -> Any:
    if setting.type is list:
        if value.strip().startswith("["):
            return _json(value, var)
        return [v.strip() for v in value.split(",") if v.strip()]
    if setting.type is dict:
        return _json(value, var)
    if setting.type is bool:
        lowered = value.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment variable {var}: expected true or false, got {value!r}")
    if setting.type in (int, float):
        try:
            return setting.type(value)
        except ValueError:
            raise ConfigError(f"environment variable {var}: expected a {setting.type.__name__}, got {value!r}") from None
    return value


def _json(value: str, var: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as e:
        raise ConfigError(f"environment variable {var}: expected JSON: {e}") from None


def _check_type(value: Any, setting: Setting, where: str) -> Any:
    expected = setting.type
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is int and isinstance(value, bool):
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if expected is list:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        return value
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: expected {expected.__name__}, got {value!r}")
    return value
