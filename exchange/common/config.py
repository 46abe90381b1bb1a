"""TOML configuration with environment overrides.

Every setting has a dotted name (``source.url``) that is a key in the TOML
file (``[source] url = ...``) and an environment variable
(``EXCHANGE_NODE_SOURCE_URL`` for a node, ``EXCHANGE_HUB_...`` for the hub).
The environment wins over the file.  Unknown keys, in the file or under the
component's environment prefix, are refused with an error naming them, and
so are values of the wrong type or outside a setting's allowed range.
The result is a frozen object: ``cfg.hub.batch_size``, ``cfg.agency``
(exchange.common.settings).
"""

from __future__ import annotations

import copy
import json
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from exchange.common.settings import Config, build
from exchange.contracts.errors import ExchangeError

REQUIRED = object()


class ConfigError(ExchangeError):
    """A configuration problem; the message names the file, key and expectation."""

    prefix = "configuration error: "


@dataclass(frozen=True)
class Setting:
    """One setting: its type, default (REQUIRED: none) and meaning, and the values allowed.

    ``minimum``/``maximum`` bound a number inclusively, ``above`` exclusively
    (intervals that must be positive); ``choices`` enumerate a string's values."""

    type: type  # str, int, float, bool, list (of str) or dict
    default: Any = REQUIRED
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    choices: tuple[str, ...] = ()

    def allowed(self) -> str:
        """The allowed values in words, as in "must be ...": "at least 1", "between 0 and 65535",
        "one of text, json"; "" when any value of the type goes."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        lower = (f"greater than {_number(self.above)}" if self.above is not None
                 else f"at least {_number(self.minimum)}" if self.minimum is not None else "")
        if self.maximum is None:
            return lower
        if self.minimum is not None:
            return f"between {_number(self.minimum)} and {_number(self.maximum)}"
        return f"{lower} and at most {_number(self.maximum)}" if lower else f"at most {_number(self.maximum)}"

    def problem(self, value: Any) -> str | None:
        """Why ``value`` (already of the right type) is not allowed; None when it is."""
        if self.choices:
            return None if value in self.choices else f"must be {self.allowed()}"
        if self.type not in (int, float):
            return None
        if not math.isfinite(value):
            return "must be a finite number"
        within = ((self.minimum is None or value >= self.minimum) and (self.above is None or value > self.above)
                  and (self.maximum is None or value <= self.maximum))
        return None if within else f"must be {self.allowed()}"


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def env_name(prefix: str, key: str) -> str:
    return f"{prefix}_{key.replace('.', '_').upper()}"


def load_config(
    path: str | Path | None,
    spec: Mapping[str, Setting],
    env_prefix: str,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read ``path`` (may be None) and the environment into a frozen config
    object checked against ``spec``; ConfigError names what is wrong."""
    environ = os.environ if environ is None else environ
    where = str(path) if path else "environment"
    raw: dict[str, tuple[Any, str]] = {}  # dotted key: (value, where it came from)
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config file") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        raw = {key: (value, f"{path}: {_display(key)}") for key, value in _flatten(data, spec, path).items()}

    known_env = {env_name(env_prefix, k): k for k in spec}
    for var, value in environ.items():
        if not var.startswith(env_prefix + "_"):
            continue
        if var not in known_env:
            raise ConfigError(
                f"environment variable {var} is not a setting; known: {', '.join(sorted(known_env))}"
            )
        raw[known_env[var]] = (_from_env(value, spec[known_env[var]], var), f"environment variable {var}")

    return _checked(spec, raw, lambda key: f"{where}: missing required setting {_display(key)} "
                                           f"(or environment variable {env_name(env_prefix, key)})")


def from_values(spec: Mapping[str, Setting], values: Mapping[str, Any], source: str = "settings") -> Config:
    """A config for ``spec`` from dotted keys (``{"tls.ca": ...}``), defaults for the rest,
    checked as a file's would be; for tools and tests that build settings in code."""
    unknown = sorted(set(values) - set(spec))
    if unknown:
        raise ConfigError(f"{source}: unknown settings {', '.join(unknown)}; known: {', '.join(spec)}")
    return _checked(spec, {key: (value, f"{source}: {_display(key)}") for key, value in values.items()},
                    lambda key: f"{source}: missing required setting {_display(key)}")


def _checked(spec: Mapping[str, Setting], raw: Mapping[str, tuple[Any, str]], missing) -> Config:
    values: dict[str, Any] = {}
    for key, setting in spec.items():
        if key in raw:
            value, label = raw[key]
            value = _check_type(value, setting, label)
            problem = setting.problem(value)
            if problem:
                raise ConfigError(f"{label} = {_shown(value)}: {problem}")
            values[key] = value
        elif setting.default is REQUIRED:
            raise ConfigError(missing(key))
        else:
            values[key] = copy.deepcopy(setting.default)  # a list or table of one config is not another's
    return build(spec, values)


def _shown(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


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
