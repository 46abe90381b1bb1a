"""File-drop capture: state size and rows per second, this tree beside a baseline.

    .venv/bin/python bench/file_drops.py [--rows N] [--baseline GIT_REF]

Generates a CSV export of N rows (about 80 bytes each, in random key order), then a second
export of the same table with 5% of the rows updated, 1% deleted and 1%
added.  Each file is taken by a FileDropSource as the node would (take the
file, read its changes, acknowledge them); after each it prints the rows
per second of taking the file and the adapter's state bytes (state
database, WAL and shared-memory file) per input byte.  With ``--baseline``
the same measurement runs, in the same invocation, on the adapter as it
was at GIT_REF (extracted with ``git archive``); prints JSON.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CITIES = ["上海", "北京", "广州", "深圳", "杭州", "南京", "成都", "武汉"]


def write_exports(directory: Path, rows: int) -> tuple[Path, Path]:
    """(first export, second export) in ``directory`` (outside the drop directory)."""
    rng = random.Random(7)
    ids = list(range(rows))
    rng.shuffle(ids)  # exports are seldom in key order: the worst case for the state's B-trees
    records = {i: [f"{110105190000000000 + i}", f"姓名{i}", rng.choice(CITIES),
                   f"19{rng.randint(40, 99)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                   f"138{rng.randint(0, 99999999):08d}", f"note {rng.random():.12f}"] for i in ids}
    first = directory / "persons-1.csv"
    _write_csv(first, records.values())
    for i in rng.sample(sorted(records), rows // 20):
        records[i][2] = rng.choice(CITIES) + "区"
    for i in rng.sample(sorted(records), rows // 100):
        del records[i]
    for i in range(rows, rows + rows // 100):
        records[i] = [f"{110105190000000000 + i}", f"新{i}", rng.choice(CITIES), "2000-01-01", "13900000000", ""]
    second = directory / "persons-2.csv"
    _write_csv(second, records.values())
    return first, second


def _write_csv(path: Path, records) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write("id,name,city,birth,phone,note\n")
        for record in records:
            f.write(",".join(record) + "\n")


def measure(exports: list[Path], work: Path) -> list[dict]:
    """Take each export in turn as the node does; per file: rows/s and state bytes per input byte."""
    from adapters.files.source import FileDropSource

    drops = work / "drops"
    drops.mkdir()
    source = FileDropSource(f"files://{drops}", ["persons"], {"persons": ["id"]}, settle_seconds=0)
    source.prepare()
    results, position = [], 0
    for export in exports:
        target = drops / export.name
        target.write_bytes(export.read_bytes())
        rows = sum(1 for _ in open(target, "rb")) - 1
        started = time.perf_counter()
        batch = source.read(position, 1000)  # takes the file
        took = time.perf_counter() - started
        changes = 0
        while batch:
            changes += len(batch)
            position = batch[-1].position
            source.acknowledge(position)
            batch = source.read(position, 1000)
        state = sum(p.stat().st_size for p in (drops / ".exchange").iterdir())
        results.append({"file": export.name, "rows": rows, "changes": changes, "rows_per_s": round(rows / took),
                        "state_bytes": state, "state_bytes_per_input_byte": round(state / export.stat().st_size, 2)})
    source.close()
    return results


def run_tree(tree: Path, exports: list[Path]) -> list[dict]:
    """``measure`` in a subprocess importing the adapter from ``tree``."""
    with tempfile.TemporaryDirectory() as work:
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
                "from file_drops import measure; from pathlib import Path; "
                "print(json.dumps(measure([Path(p) for p in sys.argv[4:]], Path(sys.argv[3]))))")
        done = subprocess.run([sys.executable, "-c", code, str(tree), str(ROOT / "bench"), work,
                               *map(str, exports)], capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--baseline", default="", help="git ref of the adapter to compare with (e.g. relayout)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        exports = list(write_exports(Path(directory), args.rows))
        report: dict = {"rows": args.rows, "input_bytes": [p.stat().st_size for p in exports]}
        if args.baseline:
            baseline = Path(directory) / "baseline"
            baseline.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.baseline, "adapters", "exchange"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(baseline)], input=archive, check=True)
            report[f"baseline {args.baseline}"] = run_tree(baseline, exports)
        report["this tree"] = run_tree(ROOT, exports)
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
