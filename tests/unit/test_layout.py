"""The layout stays readable: no hand-written module grows past 600 lines (docs/design.md §1)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("exchange", "adapters", "node", "hub", "consumer")
MAX_LINES = 600


def test_no_module_is_over_600_lines():
    long = {}
    for package in PACKAGES:
        for module in (ROOT / package).rglob("*.py"):
            lines = len(module.read_text(encoding="utf-8").splitlines())
            if lines > MAX_LINES:
                long[str(module.relative_to(ROOT))] = lines
    assert not long, f"split these modules by concern: {long}"


def test_every_package_says_what_it_is_for():
    silent = [str(init.relative_to(ROOT)) for package in PACKAGES for init in (ROOT / package).rglob("__init__.py")
              if not init.read_text(encoding="utf-8").lstrip().startswith('"""')]
    assert not silent, f"give these packages a docstring: {silent}"
