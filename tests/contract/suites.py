"""Binding the contract suites to the database drivers, one test class per driver.

The way the eventsourcing library's recorder test cases are subclassed once
per storage backend: each contract module defines a ``Contract`` subclass
holding its tests and ends with ``globals().update(suites(...))``, which
gives it ``Test<backend>`` classes for every driver in ``BACKENDS`` that
takes part in that contract.
"""

from __future__ import annotations

from typing import ClassVar, Iterator

import pytest
from backends import BACKENDS, Backend


class Contract:
    """Base of the contract suites: their tests take ``backend``, the bound backend's driver."""

    backend_class: ClassVar[type[Backend]]

    @pytest.fixture
    def backend(self, request: pytest.FixtureRequest) -> Iterator[Backend]:
        """A fresh database of the bound kind; a case the kind is known to fail is a strict xfail."""
        reason = self.backend_class.known_failures.get(request.node.name)
        if reason:
            request.applymarker(pytest.mark.xfail(strict=True, reason=reason))
        driver = self.backend_class(request)
        yield driver
        driver.close()


def suites(contract: type[Contract], kind: str) -> dict[str, type]:
    """``contract``'s tests bound to each backend of ``kind``, as test classes ``Test<backend>``
    for a test module's namespace."""
    classes = {}
    for backend in BACKENDS:
        if kind in backend.kinds:
            name = f"Test{backend.name}"
            marks = [pytest.mark.usefixtures(*backend.fixtures)] if backend.fixtures else []
            classes[name] = type(name, (contract,), {"backend_class": backend, "pytestmark": marks,
                                                     "__module__": contract.__module__})
    return classes
