"""The routing fields of a record event's state, read without decoding the row image.

A record event's state (JSON) names its ``resource``, its source ``commit_time``
(``{"_type_": "datetime_iso", "_data_": ISO}`` or null) and its source
``position``.  ``header`` reads just these: msgspec decodes the state into a
three-field struct, skipping everything else without building it, several
times faster than ``json.loads``.  A state msgspec refuses but the json module
reads (``NaN``, ``Infinity``) is read by the json module, so both always agree.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, NamedTuple

import msgspec


class _Fields(msgspec.Struct):
    resource: Any = None
    commit_time: Any = None
    position: Any = None


_decoder = msgspec.json.Decoder(_Fields)


class Header(NamedTuple):
    """What receivers route by: None for what the state does not name (or names with the wrong type)."""

    resource: str | None
    commit_time: float | None  # Unix seconds
    position: int | None


NONE = Header(None, None, None)


def header(state: bytes) -> Header:
    """The header of a serialised event state (NONE for a state that is not a JSON object)."""
    try:
        fields = _decoder.decode(state)
        resource, commit_time, position = fields.resource, fields.commit_time, fields.position
    except (msgspec.DecodeError, msgspec.ValidationError):
        try:
            whole = json.loads(state)
        except (ValueError, RecursionError):  # ValueError includes bytes that are not UTF-8
            return NONE
        if not isinstance(whole, dict):
            return NONE
        resource, commit_time, position = whole.get("resource"), whole.get("commit_time"), whole.get("position")
    return Header(resource if isinstance(resource, str) else None, _moment(commit_time),
                  position if type(position) is int else None)


def _moment(value: Any) -> float | None:
    try:
        moment = datetime.fromisoformat(value["_data_"])
    except (ValueError, TypeError, KeyError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def operation(topic: str) -> str:
    """The kind of change an event topic names (``exchange.record:Updated`` -> ``Updated``)."""
    return topic.rpartition(":")[2]
