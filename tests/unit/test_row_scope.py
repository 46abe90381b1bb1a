"""Row scope (Art. 15): the filter language, approvals that narrow it, and subscriptions cut to it
(in-process hub with a real SQLite store and real gRPC)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from test_sharing import CONSUMER, PROVIDER
from test_sharing_stream import Hub, decoded, read_until

from exchange.contracts.events import RecordCreated, RecordDeleted, RecordUpdated
from hub.sharing.requests import WorkflowError
from hub.sharing.scope import BadFilter, both, check_items, either, parse
from protos.exchange.v1 import exchange_pb2 as pb


@pytest.mark.parametrize("text, canonical", [
    ("district IN ('静安区')", "district IN ('静安区')"),
    ("a = 1 and not (b = 'x' or c between 1 and 2) or ordered > 3",
     "(a = 1 AND NOT (b = 'x' OR c BETWEEN 1 AND 2)) OR ordered > 3"),
    ('"my col" not in (\'a\', \'b\'\'c\')', '"my col" NOT IN (\'a\', \'b\'\'c\')'),
    ("x <> TRUE", "x != TRUE"),
    ("orchard = 'y'", "orchard = 'y'"),  # a name starting with a keyword is a name
])
def test_filters_parse_to_a_canonical_text_that_parses_to_itself(text, canonical):
    parsed = parse(text)
    assert parsed.text == canonical
    assert parse(parsed.text).text == canonical


@pytest.mark.parametrize("text, position", [
    ("district = ", "at its end"),
    ("district == 'x'", "position 11"),
    ("a = 1 b = 2", "position 7"),
    ("= 3", "position 1"),
    ("a = 'open", "position 5"),
    ("a = 1)", "position 6"),
])
def test_a_bad_filter_is_refused_naming_where_it_goes_wrong(text, position):
    with pytest.raises(BadFilter, match=position):
        parse(text)


def test_rows_match_with_sqls_three_values():
    flt = parse("district IN ('静安区', '黄浦区') AND age >= 18")
    assert flt.matches({"district": "静安区", "age": 20})
    assert not flt.matches({"district": "徐汇区", "age": 20})
    assert not flt.matches({"district": "静安区", "age": None})  # unknown is not in scope
    assert not parse("NOT (age < 18)").matches({"age": None})  # NOT unknown stays unknown
    assert parse("age < 18 OR district = '静安区'").matches({"age": None, "district": "静安区"})
    assert not flt.matches({"district": "静安区", "age": "20"})  # text against a number: unknown
    assert parse("fee BETWEEN 1.5 AND 2").matches({"fee": {"_type_": "decimal_str", "_data_": "1.75"}})
    assert parse("fee > 1").matches({"fee": 1.25})
    assert parse("issued >= '2020-01-01'").matches({"issued": {"_type_": "date_iso", "_data_": "2021-05-01"}})
    assert parse("x NOT IN (1, 2)").matches({"x": 3}) and not parse("x NOT IN (1, 2)").matches({"x": 2})
    assert not flt.matches(None)


def test_filters_combine_and_name_their_items():
    a, b = parse("district = 'P'"), parse("born < '1990'")
    assert both(a, b).text == "district = 'P' AND born < '1990'"
    assert both(a, None) is a and both(a, parse("district = 'P'")).text == a.text
    assert either([a, b]).text == "district = 'P' OR born < '1990'"
    assert either([a, None]) is None
    assert both(a, b).items == {"district", "born"}
    check_items(a, ["district", "name"], "the items")
    with pytest.raises(BadFilter, match="names district, not among the items requested"):
        check_items(a, ["name"], "the items requested")
    assert parse("x = " + "'" + "y" * 10 + "'").matches({"x": "y" * 10})
    with pytest.raises(BadFilter, match="at most"):
        parse("x = '" + "y" * 5000 + "'")
    assert parse("n = 12.50").tree[3] == Decimal("12.50")


@pytest.fixture
def hub(tmp_path, free_port):
    h = Hub(tmp_path, free_port())
    h.publish(h.schema("licences"))
    h.publish(*[h.event(RecordCreated, "licences", k, row={"id": k, "name": f"n{k}", "born": "1990",
                                                           "district": "P" if k % 2 else "Q"}) for k in range(1, 9)])
    yield h
    h.close()


def request(hub, rows="", items=("name", "district")):
    return hub.ledger.request(CONSUMER, PROVIDER, "licences", scope="district P", purpose="permits",
                              items=list(items), rows=rows)


def test_the_request_filter_names_only_requested_items_and_the_approval_narrows_it(hub):
    with pytest.raises(BadFilter, match="born, not among the data items requested"):
        request(hub, rows="born < '2000'")
    with pytest.raises(BadFilter, match="position"):
        request(hub, rows="district IN ('P'")
    asked = request(hub, rows="district IN ('P', 'Q')")
    assert asked.rows == "district IN ('P', 'Q')"
    with pytest.raises(BadFilter, match="district, not among the granted data items"):
        hub.ledger.approve(str(asked.id), PROVIDER, items=["name"])
    with pytest.raises(BadFilter, match="born"):
        hub.ledger.approve(str(asked.id), PROVIDER, rows="born = '1990'")
    approved = hub.ledger.approve(str(asked.id), PROVIDER, rows="district = 'P'")
    assert approved.approved_rows == "district IN ('P', 'Q') AND district = 'P'"
    granted = hub.ledger.entitlement(CONSUMER, PROVIDER, "licences")
    assert granted.rows_text == approved.approved_rows
    with pytest.raises(WorkflowError):
        hub.ledger.approve(str(asked.id), PROVIDER)
    # Decisions survive a restart of the ledger (folded from the stored events).
    again = type(hub.ledger)(hub.store, hub.catalog, hub.ledger.calendar, clock=hub.clock)
    assert again.entitlement(CONSUMER, PROVIDER, "licences").rows_text == approved.approved_rows
    unscoped = request(hub)
    hub.ledger.approve(str(unscoped.id), PROVIDER)
    assert hub.ledger.entitlement(CONSUMER, PROVIDER, "licences").rows is None  # one approval of every row


def fold(replica, events):
    for e in events:
        if isinstance(e, RecordCreated):
            replica[e.key["id"]] = dict(e.row)
        elif isinstance(e, RecordUpdated):
            assert e.key["id"] in replica, f"update of {e.key} the replica does not hold"
            replica[e.key["id"]].update(e.changed)
        elif isinstance(e, RecordDeleted):
            assert replica.pop(e.key["id"], None) is not None, f"delete of {e.key} the replica does not hold"
    return replica


def moves(hub):
    """Updates that move rows in and out of district P, an update inside it, creates and deletes on both sides."""
    up = lambda k, **changed: hub.event(RecordUpdated, "licences", k, changed=changed)  # noqa: E731
    hub.publish(up(1, district="Q"), up(3, name="renamed"), up(2, district="P"), up(4, born="1980"))
    hub.publish(hub.event(RecordCreated, "licences", 20, row={"id": 20, "name": "new", "born": "2000",
                                                              "district": "Q"}),
                up(20, district="P", name="moved in"), up(2, name="again"), up(5, district="Q"), up(5, district="P"))
    hub.publish(hub.event(RecordDeleted, "licences", 7), hub.event(RecordDeleted, "licences", 6), up(1, name="out"))


def source(hub):
    rows = {k: {"id": k, "name": f"n{k}", "born": "1990", "district": "P" if k % 2 else "Q"} for k in range(1, 9)}
    rows[1].update(district="Q", name="out")
    rows[3]["name"] = "renamed"
    rows[2].update(district="P", name="again")
    rows[4]["born"] = "1980"
    rows[20] = {"id": 20, "name": "moved in", "born": "2000", "district": "P"}
    del rows[7], rows[6]
    return {k: {"id": k, "name": r["name"], "district": r["district"]} for k, r in rows.items() if r["district"] == "P"}


def test_a_scoped_subscription_keeps_the_replica_equal_to_the_filtered_source(hub):
    hub.ledger.approve(str(request(hub).id), PROVIDER, rows="district = 'P'")
    middle = hub.ingest.hub_position(PROVIDER)
    moves(hub)
    head = hub.ingest.hub_position(PROVIDER)
    batches = read_until(hub.subscribe("licences"), head)
    assert {b.rows for b in batches} == {"district = 'P'"}
    events = decoded(batches)
    assert fold({}, events) == source(hub)
    kinds = [(type(e).__name__, e.key["id"]) for e in events if e.key["id"] in (1, 2, 4, 20)]
    assert ("RecordDeleted", 1) in kinds and ("RecordCreated", 2) in kinds  # left, entered
    assert ("RecordCreated", 20) in kinds and not any(k == 4 for _, k in kinds)  # entered; never in scope
    # Resuming after a position the stream never folded gives the same events (states read from the log).
    early = [pb.EventBatch(events=[e for e in b.events if e.notification_id <= middle]) for b in batches]
    before = fold({}, decoded(early))
    resumed = decoded(read_until(hub.subscribe("licences", after=middle), head))
    assert fold(before, resumed) == source(hub)
    assert [(type(e).__name__, e.key["id"]) for e in resumed] == \
        [(type(e).__name__, e.key["id"]) for e in events if e.originator_version > 1 or e.key["id"] == 20]


def test_a_changed_row_filter_ends_the_stream_with_aborted(hub):
    import grpc

    first = request(hub)
    hub.ledger.approve(str(first.id), PROVIDER, rows="district = 'P'")
    stream = hub.subscribe("licences")
    read_until(stream, hub.ingest.hub_position(PROVIDER))
    hub.ledger.approve(str(request(hub, rows="district = 'Q'").id), PROVIDER)
    hub.publish(hub.event(RecordUpdated, "licences", 3, changed={"name": "x"}))
    with pytest.raises(grpc.RpcError) as ended:
        for _ in stream:
            pass
    assert ended.value.code() == grpc.StatusCode.ABORTED
    assert "district = 'P' OR district = 'Q'" in ended.value.details()


def test_the_office_deciding_a_dispute_may_narrow_the_rows_too(hub):
    asked = request(hub, rows="district IN ('P', 'Q')")
    hub.ledger.reject(str(asked.id), PROVIDER, reasons="too wide")
    hub.ledger.dispute(str(asked.id), CONSUMER, grounds="needed")
    with pytest.raises(BadFilter, match="born"):
        hub.ledger.decide(str(asked.id), "office", approve=True, rows="born = '1990'")
    decided = hub.ledger.decide(str(asked.id), "office", approve=True, rows="district = 'Q'")
    assert decided.approved_rows == "district IN ('P', 'Q') AND district = 'Q'"
    assert hub.ledger.entitlement(CONSUMER, PROVIDER, "licences").rows.matches({"district": "Q"})
    assert not hub.ledger.entitlement(CONSUMER, PROVIDER, "licences").rows.matches({"district": "P"})
