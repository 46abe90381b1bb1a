"""The catalog at the 2016 work plan's scale: 11,000 entries with 145,800 data items from 48 agencies.

Compiles, submits, reviews and publishes N entries through the Catalog
(four commands, four transactions each), side by side with the baseline of
writing the same events straight to the recorder in as many transactions;
then measures a cold start (folding the whole log), terms look-ups, the
reports and the DCAT export.

    .venv/bin/python bench/catalog.py [N] [sqlite|postgresql://...]   (default: 11000 on a temp SQLite file)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from exchange.contracts.identifiers import uscc_check_char  # noqa: E402
from hub.catalog import Catalog, dcat, reports  # noqa: E402
from hub.workdays import WorkingCalendar  # noqa: E402

AGENCIES = 48
ITEMS_PER_ENTRY = 145_800 / 11_000


def agency_code(i: int) -> str:
    first17 = f"1131000000{i:07d}"
    return first17 + uscc_check_char(first17)


def content(n: int) -> dict:
    agency = agency_code(n % AGENCIES)
    items = int(ITEMS_PER_ENTRY) + (1 if n % 4 == 0 else 0)  # about 13.25 items per entry
    return {
        "code": f"{1 + n % 3}{n % 100:02d}{n % 1000:03d}/{n:06d}", "name": f"resource {n}", "agency": agency,
        "provider": f"agency {n % AGENCIES}", "provider_uscc": agency, "resource": f"table_{n}",
        "summary": "benchmark resource", "format": "database", "share_type": 1,
        "share_modes": ["platform:interface"], "update_cycle": "daily",
        "items": [{"name": f"item_{n % 50}_{k}", "type": "C", "length": 32} for k in range(items)],
    }


def timed(label: str, results: dict, fn):
    started = time.perf_counter()
    value = fn()
    results[label] = round(time.perf_counter() - started, 3)
    return value


def main(count: int, url: str | None) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        url = url or f"sqlite:///{Path(tmp) / 'hub-store.db'}"
        baseline_url = f"sqlite:///{Path(tmp) / 'baseline.db'}" if url.startswith("sqlite") else url
        results: dict = {"entries": count, "items": sum(len(content(n)["items"]) for n in range(count)),
                         "store": url.split(":")[0]}
        catalog = Catalog(url, WorkingCalendar())

        def compile_and_publish():
            for n in range(count):
                c = content(n)
                catalog.edit(c["agency"], c, submit=True)
                catalog.record_secrecy_review(c["code"], "reviewer", True)
                catalog.review_items(c["code"], "reviewer", {i["name"]: "" for i in c["items"]})
                catalog.publish(c["code"], "reviewer")

        timed("publish_seconds", results, compile_and_publish)
        results["publish_entries_per_second"] = round(count / results["publish_seconds"], 1)

        # Baseline: the same stored events, written straight to a recorder, one transaction per command.
        stored = [catalog.recorder.select_events(e) for e in list(catalog._entries)]
        baseline = Catalog(baseline_url, WorkingCalendar()) if baseline_url != url else None
        if baseline is not None:
            def raw_writes():
                for events in stored:
                    for event in events:
                        baseline.recorder.insert_events([event])
            timed("baseline_raw_insert_seconds", results, raw_writes)
            results["overhead_ratio"] = round(results["publish_seconds"] / results["baseline_raw_insert_seconds"], 2)
            baseline.close()

        cold = Catalog(url, WorkingCalendar())
        timed("cold_start_fold_seconds", results, lambda: cold.entries())
        probes = [content(n) for n in range(0, count, max(1, count // 1000))]
        timed("terms_1000_lookups_seconds", results,
              lambda: [cold.terms(c["agency"], c["resource"]) for c in probes])
        timed("overdue_seconds", results, lambda: reports.overdue(cold))
        shared = timed("one_datum_one_source_seconds", results, lambda: reports.one_datum_one_source(cold))
        results["shared_items"] = len(shared)
        timed("evaluation_seconds", results, lambda: reports.evaluation(cold))
        document = timed("dcat_seconds", results, lambda: json.dumps(dcat.export(cold)))
        results["dcat_mib"] = round(len(document.encode()) / 2**20, 1)
        cold.close()
        catalog.close()
        return results


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 11_000
    print(json.dumps(main(n, sys.argv[2] if len(sys.argv) > 2 else None)))
