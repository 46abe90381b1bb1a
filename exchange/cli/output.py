"""What commands write: JSON on standard output for scripts, logs on standard error."""

from __future__ import annotations

import json
from typing import Any

from exchange.common.config import Config


def print_json(value: Any) -> None:
    """``value`` as one line of JSON, non-ASCII characters kept."""
    print(json.dumps(value, ensure_ascii=False))


def print_report(report: Any, render: Any, as_json: bool) -> None:
    """``report`` as JSON for scripts, or as ``render(report)`` says for people."""
    if as_json:
        print_json(report)
    else:
        print(render(report))


def message_json(message: Any) -> dict[str, Any]:
    """A protobuf message as JSON-ready values, field names as in the .proto, 64-bit integers as numbers
    (protobuf's JSON mapping writes them as strings)."""
    from google.protobuf.json_format import MessageToDict

    data = MessageToDict(message, always_print_fields_with_no_presence=True, preserving_proto_field_name=True)
    return _numbers(message.DESCRIPTOR, data)


def _numbers(descriptor: Any, data: dict[str, Any]) -> dict[str, Any]:
    from google.protobuf.descriptor import FieldDescriptor

    wide = {FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT64,
            FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED64}

    def convert(field: Any, value: Any) -> Any:
        if field.message_type is not None:
            return _numbers(field.message_type, value)
        return int(value) if field.type in wide else value

    for field in descriptor.fields:
        if field.name not in data:
            continue
        value = data[field.name]
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            inner = field.message_type.fields_by_name["value"]
            data[field.name] = {k: convert(inner, v) for k, v in value.items()}
        elif field.is_repeated:
            data[field.name] = [convert(field, v) for v in value]
        else:
            data[field.name] = convert(field, value)
    return data


def logging_as_configured(cfg: Config) -> None:
    """Log to standard error at the ``[log]`` level and in the format ``cfg`` sets."""
    from exchange.common.logs import setup_logging

    setup_logging(cfg.log.level, cfg.log.format)
