"""The ``--json PATH`` option of the benchmarks: their figures as one JSON object, for bench/report.py."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_json_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--json PATH`` (write the run's figures there)."""
    parser.add_argument("--json", metavar="PATH", help="also write the figures as a JSON object to PATH")


def save(args: argparse.Namespace, figures: dict[str, float | int | str]) -> None:
    """Write ``figures`` to the ``--json`` path, if one was given."""
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, sort_keys=True) + "\n")
