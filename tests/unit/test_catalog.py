"""The catalog: metadata rules, the review workflow, history and resource terms (SQLite and PostgreSQL stores)."""

from __future__ import annotations

import copy
from datetime import datetime, timezone

import pytest

from hub.audit import AuditLog
from hub.catalog import Catalog, InvalidEntry, WorkflowError, metadata
from hub.catalog.entry import Edited, ItemsReviewed, Published, SecrecyReviewed, Submitted, entry_id
from hub.catalog.terms import CONDITIONAL, ResourceTerms, TermsSource
from hub.workdays import WorkingCalendar

AGENCY = "91310000MB2F31887X"  # the tests' default agency id (not a valid code)
USCC = "91310000MB2F31887X"
OTHER = "91110108551385082Q"


def entry(**changes) -> dict:
    """A valid entry describing the sample agency's persons table."""
    content = {
        "code": "101001/0001", "name": "Resident persons", "agency": AGENCY, "provider": "Municipal registry",
        "provider_uscc": USCC, "resource": "persons", "summary": "Persons registered in the municipality",
        "format": "database", "share_type": 2, "share_condition": "for administrative approvals only",
        "share_modes": ["platform:interface"], "open_to_public": False, "update_cycle": "realtime",
        "related": ["101002/0001"],
        "items": [{"name": "id_number", "type": "C", "length": 18}, {"name": "name", "type": "C", "length": 50},
                  {"name": "born", "type": "D", "length": 0}],
    }
    content.update(changes)
    return content


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub-store.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url(postgres.create_database(f"catalog_{abs(hash(request.node.name)) % 10**8}"))


@pytest.fixture
def catalog(store_url, tmp_path):
    c = Catalog(store_url, WorkingCalendar(), audit=AuditLog(tmp_path / "audit.log"))
    yield c
    c.close()


def publish(catalog: Catalog, content: dict, sensitivity=()) -> None:
    catalog.edit(content["agency"], content, submit=True)
    catalog.record_secrecy_review(content["code"], "reviewer", True, sensitivity)
    catalog.review_items(content["code"], "reviewer", {i["name"]: "" for i in content["items"]})
    catalog.publish(content["code"], "reviewer")


def test_a_valid_entry_has_no_problems():
    assert metadata.validate(entry()) == []


@pytest.mark.parametrize("changes, field, rule", [
    ({"code": "1001/0001"}, "code", "classification code"),
    ({"code": "101001/01"}, "code", "sequence number of at least 4 digits"),
    ({"code": "001001/0001"}, "code", "category 1 digit: 1 base, 2 subject or 3 department"),
    ({"code": "401001/0001"}, "code", "category 1 digit: 1 base"),
    ({"provider_uscc": "91110108551385082A"}, "provider_uscc", "valid check character"),
    ({"share_type": 2, "share_condition": ""}, "share_condition", "required when share_type is 2"),
    ({"share_type": 3, "share_condition": "", "not_shared_basis": ""}, "not_shared_basis",
     "required when share_type is 3"),
    ({"share_type": 1}, "share_condition", "only for share_type 2"),
    ({"share_type": 4}, "share_type", "must be 1"),
    ({"share_type": 3, "share_condition": "", "not_shared_basis": "State Secrets Law", "open_to_public": True},
     "open_to_public", "not shared cannot be open"),
    ({"share_modes": ["ftp"]}, "share_modes[0]", "platform:table"),
    ({"update_cycle": "hourly"}, "update_cycle", "realtime"),
    ({"format": "xml"}, "format", "spreadsheet"),
    ({"related": ["nonsense"]}, "related[0]", "resource code"),
    ({"related": ["101001/0001"]}, "related", "must not name the entry itself"),
    ({"items": [{"name": "a", "type": "X", "length": 1}]}, "items[0].type", "C (character)"),
    ({"items": [{"name": "a", "type": "C", "length": -1}]}, "items[0].length", "whole number"),
    ({"items": [{"name": "a", "type": "C"}, {"name": "a", "type": "N"}]}, "items[1].name", "listed twice"),
    ({"items": []}, "items", "required"),
    ({"name": ""}, "name", "required"),
    ({"colour": "red"}, "colour", "unknown field"),
    ({"open_condition": "registered users"}, "open_condition", "only for resources open to the public"),
])
def test_each_metadata_rule_names_the_field(changes, field, rule):
    problems = metadata.validate(entry(**changes))
    assert any(p.field == field and rule in p.rule for p in problems), problems


def test_the_workflow_from_draft_to_published_keeps_every_step(catalog, tmp_path):
    content = entry()
    drafted = catalog.edit(AGENCY, content)
    assert drafted.status == "draft"
    assert catalog.terms(AGENCY, "persons") is None
    assert catalog.submit(AGENCY, content["code"]).status == "submitted"
    with pytest.raises(WorkflowError, match="without a recorded secrecy review"):
        catalog.publish(content["code"], "reviewer")
    catalog.record_secrecy_review(content["code"], "reviewer", True, ["personal"], "identity numbers")
    catalog.review_items(content["code"], "reviewer", {"id_number": "", "name": ""})
    with pytest.raises(WorkflowError, match="not yet reviewed: born"):
        catalog.publish(content["code"], "reviewer")
    catalog.review_items(content["code"], "reviewer", {"born": ""})
    published = catalog.publish(content["code"], "reviewer")
    assert published.status == "published" and published.publish_date is not None

    terms = catalog.terms(AGENCY, "persons")
    assert terms == ResourceTerms(provider=AGENCY, resource="persons", code="101001/0001", share_type=CONDITIONAL,
                                  items=("id_number", "name", "born"), condition="for administrative approvals only",
                                  sensitivity=frozenset({"personal"}))
    assert catalog.terms(AGENCY, "licences") is None and catalog.terms(OTHER, "persons") is None
    history = catalog.history(content["code"])
    assert [type(e) for e in history] == [Edited, Submitted, SecrecyReviewed, ItemsReviewed, ItemsReviewed, Published]
    audit = (tmp_path / "audit.log").read_text()
    for action in ("catalog.edit", "catalog.submit", "catalog.secrecy_review", "catalog.review", "catalog.publish"):
        assert f'"action":"{action}"' in audit


def test_a_returned_entry_is_corrected_and_resubmitted(catalog):
    content = entry()
    catalog.edit(AGENCY, content, submit=True)
    catalog.record_secrecy_review(content["code"], "reviewer", True)
    catalog.review_items(content["code"], "reviewer", {"id_number": "", "name": "", "born": "say date of birth"})
    with pytest.raises(WorkflowError, match=r"not accepted: born \(say date of birth\)"):
        catalog.publish(content["code"], "reviewer")
    with pytest.raises(WorkflowError, match="under review"):
        catalog.edit(AGENCY, entry(name="changed"))
    returned = catalog.return_entry(content["code"], "reviewer", ["summary too short"])
    assert returned.status == "returned"
    assert returned.return_reasons == ["summary too short", "data item born: say date of birth"]

    fixed = entry(items=[*content["items"][:2], {"name": "date_of_birth", "type": "D", "length": 0}])
    resubmitted = catalog.edit(AGENCY, fixed, submit=True)
    assert resubmitted.status == "submitted" and resubmitted.decisions == {} and resubmitted.secrecy is None
    with pytest.raises(WorkflowError, match="has no data item born"):
        catalog.review_items(content["code"], "reviewer", {"born": ""})


def test_a_secrecy_review_that_does_not_clear_blocks_publication(catalog):
    content = entry()
    catalog.edit(AGENCY, content, submit=True)
    with pytest.raises(WorkflowError, match="needs a note"):
        catalog.record_secrecy_review(content["code"], "reviewer", False)
    catalog.record_secrecy_review(content["code"], "reviewer", False, note="contains state secrets")
    catalog.review_items(content["code"], "reviewer", {i["name"]: "" for i in content["items"]})
    with pytest.raises(WorkflowError, match="did not clear"):
        catalog.publish(content["code"], "reviewer")
    returned = catalog.return_entry(content["code"], "reviewer", [])
    assert returned.return_reasons == ["secrecy review: contains state secrets"]


def test_a_revision_keeps_the_published_terms_until_it_is_published(catalog):
    publish(catalog, entry())
    revised = catalog.edit(AGENCY, entry(share_type=1, share_condition=""), submit=True)
    assert revised.status == "submitted"
    assert catalog.terms(AGENCY, "persons").share_type == CONDITIONAL
    catalog.record_secrecy_review("101001/0001", "reviewer", True)
    catalog.review_items("101001/0001", "reviewer", {i["name"]: "" for i in entry()["items"]})
    catalog.publish("101001/0001", "reviewer")
    assert catalog.terms(AGENCY, "persons").share_type == 1
    assert catalog.terms(AGENCY, "persons").sensitivity == frozenset()


def test_ownership_codes_and_resources_are_guarded(catalog):
    catalog.edit(AGENCY, entry())
    with pytest.raises(WorkflowError, match="submitted by " + OTHER):
        catalog.edit(OTHER, entry())
    with pytest.raises(WorkflowError, match="belongs to agency " + AGENCY):
        catalog.edit(OTHER, entry(agency=OTHER, provider_uscc=OTHER))
    with pytest.raises(WorkflowError, match="already described by entry 101001/0001"):
        catalog.edit(AGENCY, entry(code="101001/0002"))
    with pytest.raises(InvalidEntry, match="provider_uscc"):
        catalog.edit(AGENCY, entry(provider_uscc="123"))
    with pytest.raises(WorkflowError, match="no catalog entry has code 101001/0009"):
        catalog.submit(AGENCY, "101001/0009")
    with pytest.raises(WorkflowError, match="not submitted"):
        catalog.publish("101001/0001", "reviewer")


def test_a_second_catalog_on_the_same_store_sees_every_change_and_conflicts_cleanly(catalog, store_url):
    other = Catalog(store_url, WorkingCalendar())
    try:
        publish(catalog, entry())
        assert other.terms(AGENCY, "persons").code == "101001/0001"
        stale = copy.deepcopy(other.get("101001/0001"))
        catalog.edit(AGENCY, entry(name="renamed"))
        # A command that checked the state just before the other catalog wrote:
        late = Edited(originator_id=entry_id("101001/0001"), originator_version=stale.version + 1,
                      timestamp=datetime.now(timezone.utc), actor=AGENCY, content=entry(name="renamed again"))
        with pytest.raises(WorkflowError, match="changed at the same time"):
            other._save(stale, [late], "catalog.edit", AGENCY)
        assert other.get("101001/0001").content["name"] == "renamed"
    finally:
        other.close()


def test_the_catalog_is_a_terms_source(catalog):
    source: TermsSource = catalog
    assert source.terms(AGENCY, "persons") is None


def test_timestamps_are_aware(catalog):
    catalog.edit(AGENCY, entry())
    assert catalog.get("101001/0001").updated_at.tzinfo is not None
    assert catalog.get("101001/0001").updated_at <= datetime.now(timezone.utc)
