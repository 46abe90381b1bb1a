"""Typed configuration objects built from a settings spec.

A spec maps dotted names (``hub.batch_size``) to ``Setting``s.  From it,
``config_class`` builds one frozen dataclass per section and a top-level
frozen dataclass holding those sections and the top-level settings, so a
loaded config reads ``cfg.hub.batch_size`` and ``cfg.agency``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import fields, make_dataclass
from typing import TYPE_CHECKING, Any, ClassVar


class Config(Mapping):
    """Base of every loaded configuration.

    Compatibility for one release: ``cfg["hub.batch_size"]``, ``in``,
    ``get`` and iteration over the dotted keys still work."""

    __slots__ = ()
    _spec: ClassVar[Mapping[str, Any]]

    def __getitem__(self, key: str) -> Any:
        if key not in self._spec:
            raise KeyError(key)
        section, _, name = key.rpartition(".")
        return getattr(getattr(self, section) if section else self, name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._spec)

    def __len__(self) -> int:
        return len(self._spec)

    if TYPE_CHECKING:  # the sections and settings are fields of the class built for each spec
        def __getattr__(self, name: str) -> Any: ...


_classes: dict[int, tuple[Mapping[str, Any], type[Config]]] = {}


def config_class(spec: Mapping[str, Any]) -> type[Config]:
    """The frozen dataclass for ``spec`` (built once per spec)."""
    cached = _classes.get(id(spec))
    if cached is not None and cached[0] is spec:
        return cached[1]
    top: list[tuple[str, type]] = []
    sections: dict[str, list[tuple[str, type]]] = {}
    for key, setting in spec.items():
        section, _, name = key.rpartition(".")
        if "." in section:
            raise TypeError(f"setting {key!r}: sections do not nest")
        if hasattr(Config, section or name):
            raise TypeError(f"setting {key!r}: {section or name!r} is taken by the Config interface")
        (sections.setdefault(section, []) if section else top).append((name, setting.type))
    fields: list[tuple[str, Any]] = list(top)
    for section, names in sections.items():
        class_name = "".join(part.title() for part in section.split("_")) + "Settings"
        fields.append((section, make_dataclass(class_name, names, frozen=True)))
    cls = make_dataclass("Settings", fields, bases=(Config,), frozen=True, namespace={"_spec": spec})
    _classes[id(spec)] = (spec, cls)
    return cls


def build(spec: Mapping[str, Any], values: Mapping[str, Any]) -> Config:
    """The config object for ``spec`` holding ``values`` (every dotted key of the spec, already checked)."""
    cls = config_class(spec)
    grouped: dict[str, dict[str, Any]] = {}
    top: dict[str, Any] = {}
    for key, value in values.items():
        section, _, name = key.rpartition(".")
        (grouped.setdefault(section, {}) if section else top)[name] = value
    section_types = {f.name: f.type for f in fields(cls)}
    return cls(**top, **{section: section_types[section](**named) for section, named in grouped.items()})
