"""Schema changes flag entries with a 2-working-day clock; yearly reviews; overdue, one-source and evaluation reports."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from eventsourcing.persistence import Tracking
from test_catalog import AGENCY, OTHER, entry, publish, store_url  # noqa: F401 (store_url: a fixture)

from exchange.common.config import from_values
from exchange.contracts.changes import Column, TableSchema
from exchange.contracts.events import SchemaChanged, make_mapper, schema_id
from exchange.store import EventStore
from hub import config as hub_config
from hub.catalog import Catalog, reports
from hub.catalog.schema_watch import SchemaWatch
from hub.catalog.serve import CatalogRuntime
from hub.ingest import Ingest
from hub.workdays import SHANGHAI, WorkingCalendar

UTC = timezone.utc


def shanghai(*args) -> datetime:
    return datetime(*args, tzinfo=SHANGHAI)


class Clock:
    def __init__(self, moment: datetime):
        self.moment = moment

    def __call__(self) -> datetime:
        return self.moment


class Hub:
    """A hub store with agency logs, its Ingest, a Catalog over it and the schema watch."""

    def __init__(self, url: str, clock: Clock):
        self.store = EventStore(url)
        self.ingest = Ingest(self.store)
        self.catalog = Catalog(url, WorkingCalendar(), now=clock)
        self.watch = SchemaWatch(self.catalog, self.ingest)
        self.mapper = make_mapper()
        self.node_ids: dict[str, int] = {}
        self.versions: dict[tuple[str, str], int] = {}

    def ship_schema(self, agency: str, table: str, version: int, columns: list[str], at: datetime) -> None:
        """Store a schema event as if the agency's node had published it."""
        record = self.versions[(agency, table)] = self.versions.get((agency, table), 0) + 1
        event = SchemaChanged(
            originator_id=schema_id(agency, table), originator_version=record, timestamp=at, agency=agency,
            resource=table, key={}, position=version, commit_time=at, txid="", schema_version=version,
            event_schema_version=1,
            table=TableSchema(table, tuple(Column(c, "TEXT") for c in columns), (columns[0],)).to_dict())
        node_id = self.node_ids[agency] = self.node_ids.get(agency, 0) + 1
        self.store.recorder(agency).insert_events([self.mapper.to_stored_event(event)],
                                                  tracking=Tracking("node:" + agency, node_id))

    def close(self) -> None:
        self.catalog.close()
        self.store.close()


@pytest.fixture
def clock():
    return Clock(shanghai(2026, 9, 1, 10))


@pytest.fixture
def hub(store_url, clock):
    h = Hub(store_url, clock)
    yield h
    h.close()


COLUMNS = ["id_number", "name", "born"]


def test_a_schema_change_flags_the_published_entry_once(hub, clock):
    hub.ship_schema(AGENCY, "persons", 1, COLUMNS, shanghai(2026, 9, 1, 9))
    assert hub.watch.sync(AGENCY) == 1
    assert hub.catalog.sources()[(AGENCY, "persons")].columns == COLUMNS
    publish(hub.catalog, entry())
    assert hub.catalog.get("101001/0001").flag is None  # the first schema is not a change

    hub.ship_schema(AGENCY, "persons", 2, COLUMNS + ["address"], shanghai(2026, 9, 30, 16))
    assert hub.watch.sync(AGENCY) == 1
    assert hub.watch.sync(AGENCY) == 0  # recorded exactly once
    flagged = hub.catalog.get("101001/0001")
    assert flagged.flag.columns == COLUMNS + ["address"] and flagged.flag.schema_version == 2
    # A second watch (a restarted hub) starts where the first stopped.
    restarted = Catalog(hub.catalog.store.url, WorkingCalendar())
    try:
        assert SchemaWatch(restarted, hub.ingest).sync_all() == 0
    finally:
        restarted.close()
    assert [type(e).__name__ for e in hub.catalog.history("101001/0001")][-1] == "SchemaFlagged"


def test_a_schema_event_that_describes_no_table_is_skipped_and_the_next_one_recorded(hub):
    record = hub.versions[(AGENCY, "persons")] = 1
    broken = SchemaChanged(
        originator_id=schema_id(AGENCY, "persons"), originator_version=record, timestamp=shanghai(2026, 9, 1, 9),
        agency=AGENCY, resource="persons", key={}, position=1, commit_time=None, txid="", schema_version=1,
        event_schema_version=1, table={"name": "persons"})  # no columns: what a hostile publisher could send
    hub.node_ids[AGENCY] = 1
    hub.store.recorder(AGENCY).insert_events([hub.mapper.to_stored_event(broken)], tracking=Tracking("node:" + AGENCY, 1))
    assert hub.watch.sync(AGENCY) == 0
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 9, 2, 9))
    assert hub.watch.sync(AGENCY) == 1  # not held up by the one before
    assert hub.catalog.sources()[(AGENCY, "persons")].columns == COLUMNS


def test_the_update_deadline_skips_the_national_day_holiday(hub):
    publish(hub.catalog, entry())
    # Changed on Wednesday 30 September 2026; 1-7 October are holidays: due by the end of Friday 9 October.
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 9, 30, 16))
    hub.watch.sync(AGENCY)
    assert reports.update_due(hub.catalog.get("101001/0001"), hub.catalog.calendar) == shanghai(2026, 10, 10)
    assert reports.overdue(hub.catalog, shanghai(2026, 10, 7, 23)) == []
    assert reports.overdue(hub.catalog, shanghai(2026, 10, 9, 23, 59)) == []
    [late] = reports.overdue(hub.catalog, shanghai(2026, 10, 10, 0, 1))
    assert (late["code"], late["kind"], late["agency"]) == ("101001/0001", "update", AGENCY)
    assert reports.overdue_by_agency(hub.catalog, shanghai(2026, 10, 12, 9)) == {AGENCY: 1}


def test_a_make_up_working_day_counts_toward_the_deadline(hub):
    publish(hub.catalog, entry())
    # Changed on Thursday 8 October; Saturday 10 October is a make-up working day: due by its end.
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 10, 8, 11))
    hub.watch.sync(AGENCY)
    assert reports.overdue(hub.catalog, shanghai(2026, 10, 10, 23)) == []
    assert [o["kind"] for o in reports.overdue(hub.catalog, shanghai(2026, 10, 11, 9))] == ["update"]


def test_submitting_the_update_clears_the_flag(hub):
    publish(hub.catalog, entry())
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 10, 8, 11))
    hub.watch.sync(AGENCY)
    hub.catalog.edit(AGENCY, entry(items=entry()["items"] + [{"name": "address", "type": "C", "length": 200}]),
                     submit=True)
    assert hub.catalog.get("101001/0001").flag is None
    assert reports.overdue(hub.catalog, shanghai(2026, 10, 20)) == []


def test_drafts_are_not_flagged_and_unknown_tables_are_ignored(hub):
    hub.catalog.edit(AGENCY, entry())
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 9, 2))
    hub.ship_schema(AGENCY, "licences", 2, ["no"], shanghai(2026, 9, 2))
    assert hub.watch.sync(AGENCY) == 2
    assert hub.catalog.get("101001/0001").flag is None
    assert reports.overdue(hub.catalog, shanghai(2026, 12, 1)) == []


def test_the_yearly_full_review_is_tracked(hub, clock):
    clock.moment = shanghai(2026, 3, 2, 10)
    publish(hub.catalog, entry())
    assert reports.review_due(hub.catalog.get("101001/0001")) == shanghai(2027, 3, 3)
    assert reports.overdue(hub.catalog, shanghai(2027, 3, 2, 23)) == []
    assert [o["kind"] for o in reports.overdue(hub.catalog, shanghai(2027, 3, 3, 1))] == ["yearly_review"]
    clock.moment = shanghai(2027, 3, 2, 9)
    hub.catalog.record_full_review("101001/0001", "reviewer", "still accurate")
    assert reports.overdue(hub.catalog, shanghai(2027, 3, 3, 1)) == []
    assert reports.review_due(hub.catalog.get("101001/0001")) == shanghai(2028, 3, 3)


def test_data_items_published_by_two_agencies_are_reported(hub):
    publish(hub.catalog, entry())
    publish(hub.catalog, entry(code="101002/0001", agency=OTHER, provider="Public security", provider_uscc=OTHER,
                               resource="residents", related=[],
                               items=[{"name": "ID_Number", "type": "C", "length": 18},
                                      {"name": "photo", "type": "B", "length": 0}]))
    hub.catalog.edit(AGENCY, entry(code="101003/0001", resource="other", related=[],
                                   items=[{"name": "photo", "type": "B", "length": 0}]))  # a draft does not count
    [shared] = reports.one_datum_one_source(hub.catalog)
    assert (shared["item"], shared["datum"], shared["conflict"], shared["suggested_source"]) == (
        "id_number", "name:id_number/C", "no_authority", "")
    assert [(p["agency"], p["codes"], p["items"]) for p in shared["providers"]] == [
        (OTHER, ["101002/0001"], ["ID_Number"]), (AGENCY, ["101001/0001"], ["id_number"])]


def test_one_datum_one_source_compares_declared_data_elements_and_names_the_authoritative_source(hub):
    # Both publish "district", but as different data elements: no conflict.  Both hold the resident id
    # under different names and one declares itself its source: a redundant copy, obtained from it instead.
    publish(hub.catalog, entry(items=[{"name": "id_number", "type": "C", "length": 18, "element": "DE0001",
                                       "authoritative": True},
                                      {"name": "district", "type": "C", "length": 32, "element": "DE0102"}]))
    publish(hub.catalog, entry(code="101002/0001", agency=OTHER, provider="Public security", provider_uscc=OTHER,
                               resource="residents", related=[],
                               items=[{"name": "sfzh", "type": "C", "length": 18, "element": "DE0001"},
                                      {"name": "district", "type": "C", "length": 32, "element": "DE0233"}]))
    [shared] = reports.one_datum_one_source(hub.catalog)
    assert (shared["datum"], shared["conflict"], shared["suggested_source"]) == ("element:de0001", "redundant_copies",
                                                                                 AGENCY)
    assert {p["agency"]: (p["items"], p["authoritative"]) for p in shared["providers"]} == {
        AGENCY: (["id_number"], True), OTHER: (["sfzh"], False)}


def test_the_evaluation_reports_completeness_overdue_and_freshness(hub):
    hub.ship_schema(AGENCY, "persons", 1, COLUMNS, shanghai(2026, 9, 1, 9))
    hub.ship_schema(AGENCY, "licences", 1, ["no"], shanghai(2026, 9, 1, 9))
    hub.watch.sync_all()
    publish(hub.catalog, entry())
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 10, 8, 11))
    hub.watch.sync_all()
    at = shanghai(2026, 10, 12, 12)
    [row] = reports.evaluation(hub.catalog, at, sync=lambda agency: at.timestamp() - 42,
                               late_answers=lambda agency: 3)
    assert row == {"agency": AGENCY, "entries": 1, "published": 1, "resources_captured": 2,
                   "resources_published": 1, "uncatalogued_resources": ["licences"], "completeness": 0.5,
                   "overdue_entries": 1, "late_answers": 3, "sync_lag_seconds": 42.0}
    [row] = reports.evaluation(hub.catalog, at)
    assert row["late_answers"] is None and row["sync_lag_seconds"] is None


def test_a_year_the_calendar_does_not_know_is_refused_not_guessed(hub):
    publish(hub.catalog, entry())
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, datetime(2031, 5, 6, tzinfo=UTC))
    hub.watch.sync(AGENCY)
    with pytest.raises(ValueError, match="2031 is not known"):
        reports.overdue(hub.catalog, datetime(2031, 6, 1, tzinfo=UTC))
    hub.catalog.calendar = WorkingCalendar(holidays=["2031-05-07"])
    assert reports.update_due(hub.catalog.get("101001/0001"), hub.catalog.calendar) == shanghai(2031, 5, 10)


def test_the_running_hub_counts_overdue_entries_when_asked(hub, store_url):
    publish(hub.catalog, entry())
    hub.ship_schema(AGENCY, "persons", 2, COLUMNS, shanghai(2026, 9, 30, 16))  # due by 10 October 2026
    runtime = CatalogRuntime(from_values(hub_config.SETTINGS, {"store.url": store_url}), hub.ingest)
    try:
        runtime.watch.sync_all()
        assert runtime.overdue_counts() == {AGENCY: 1}
        hub.ship_schema(AGENCY, "persons", 3, COLUMNS, datetime(2031, 5, 6, tzinfo=UTC))
        runtime.watch.sync_all()
        assert runtime.overdue_counts() is None  # the calendar does not know 2031: logged, not raised
    finally:
        runtime.catalog.close()



def test_a_schema_event_the_watch_cannot_read_holds_up_only_its_own_agency(hub):
    """One node's unreadable schema event must not stop the Art. 10 clock of every other agency."""
    import uuid

    from eventsourcing.persistence import StoredEvent

    third = "91310115MA1H7GQ417"  # OTHER < AGENCY < third: healthy agencies on both sides of the broken one
    hub.store.recorder(AGENCY).insert_events([StoredEvent(uuid.uuid4(), 1, SchemaChanged.TOPIC,
                                                          b'{"resource": "persons"}')])
    for healthy in (OTHER, third):
        hub.ship_schema(healthy, "persons", 1, COLUMNS, shanghai(2026, 9, 1, 9))
    assert hub.watch.sync_all() == 2
    assert set(hub.catalog.sources()) == {(OTHER, "persons"), (third, "persons")}
