"""The codes users copy from the README, the docs, the example configs and the demos pass the project's own checks."""

from __future__ import annotations

import re
from pathlib import Path

from exchange.contracts.identifiers import is_valid_resident_id, is_valid_uscc

ROOT = Path(__file__).resolve().parents[2]
SHOWN = ["README.md", "docs/*.md", "deploy/config/*.toml", "deploy/prometheus/**/*.yml", "exchange/demos/*.py"]
CODE = re.compile(r"\b[159Y][1239]\d{6}[0-9A-HJ-NP-RTUW-Y]{10}\b")  # the shape of a unified social credit code


def test_every_code_shown_to_users_has_a_valid_check_character():
    wrong = {}
    for pattern in SHOWN:
        for path in ROOT.glob(pattern):
            for code in set(CODE.findall(path.read_text(encoding="utf-8"))):
                if not (is_valid_uscc(code) or is_valid_resident_id(code)):
                    wrong.setdefault(code, []).append(str(path.relative_to(ROOT)))
    assert not wrong, f"codes failing GB 32100 / GB 11643: {wrong}"
