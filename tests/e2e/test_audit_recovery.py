"""A hub that died between storing a decision and auditing it audits the decision when it starts again."""

from __future__ import annotations

import json
import subprocess
import sys

from test_catalog import AGENCY, entry

from hub.catalog.catalog import Catalog
from hub.workdays import WorkingCalendar


def test_the_hub_audits_at_start_what_a_crash_left_unaudited(launch, tmp_path):
    store = tmp_path / "hub-store.db"
    catalog = Catalog(f"sqlite:///{store}", WorkingCalendar(), audit=None)  # stored, and then the crash
    try:
        catalog.edit(AGENCY, entry())
    finally:
        catalog.close()
    hub = launch.hub(config={"store": {"url": f"sqlite:///{store}"}})
    hub.terminate()
    actions = [json.loads(line) for line in (tmp_path / "audit.log").read_text().splitlines()]
    recovered = [a for a in actions if a["action"] == "audit.recovered"]
    assert [(r["details"]["log"], r["details"]["decision"], r["details"]["version"]) for r in recovered] == [
        ("catalog", "Edited", 1)]
    assert recovered[0]["actor"] == AGENCY


def test_audit_reconcile_names_what_is_not_audited_and_repairs_it(tmp_path):
    store = tmp_path / "hub-store.db"
    catalog = Catalog(f"sqlite:///{store}", WorkingCalendar(), audit=None)
    try:
        catalog.edit(AGENCY, entry())
    finally:
        catalog.close()
    config = tmp_path / "hub.toml"
    config.write_text(f'[store]\nurl = "sqlite:///{store}"\n')

    def reconcile(*flags: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "exchange", "audit", "reconcile", "--config", str(config), *flags],
                              capture_output=True, text=True, timeout=120)

    found = reconcile()
    assert found.returncode == 1 and "not audited: catalog" in found.stdout and "Edited by " + AGENCY in found.stdout
    assert reconcile("--repair").returncode == 0
    again = reconcile("--json")
    assert again.returncode == 0 and json.loads(again.stdout)["agree"] is True
