"""MariaDB capture against a real server: prerequisites, values, DDL, crashes, restarts, purged binlogs, failover.

The session's server (fixture ``mariadb``) is shared; each test works in a
database of its own.  A second server is started only to show a
prerequisite refused, and as the GTID replica a failover promotes.
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import date, datetime, timezone
from datetime import time as clock
from decimal import Decimal
from typing import Any

import pymysql
import pytest

import adapters
from adapters.mysql import bookkeeping
from exchange.contracts import changes as ch
from exchange.contracts.changes import PositionLost, SourceNotReady

DEADLINE = 90.0


class Agency:
    """A database of the session's server, written as an application would, and capture sources of it."""

    def __init__(self, server: Any, name: str):
        self.server = server
        self.database = server.create_database(name)
        self.url = server.url(self.database)
        self.conn = pymysql.connect(host="127.0.0.1", port=server.port, user="root", database=self.database,
                                    charset="utf8mb4", autocommit=True, init_command="SET time_zone = '+00:00'")
        self.sources: list[Any] = []

    def sql(self, *statements: str, params: Any = None) -> list[tuple]:
        for attempt in range(600):
            try:
                with self.conn.cursor() as cur:
                    rows: list[tuple] = []
                    for statement in statements:
                        cur.execute(statement, params)
                        rows = list(cur.fetchall()) if cur.description else []
                    return rows
            except pymysql.err.OperationalError:  # the server is restarting
                if attempt == 599:
                    raise
                time.sleep(0.1)
                self.conn = pymysql.connect(host="127.0.0.1", port=self.server.port, user="root",
                                            database=self.database, charset="utf8mb4", autocommit=True,
                                            init_command="SET time_zone = '+00:00'")
        return []

    def source(self, tables: list[str], keys: dict | None = None, **options: Any) -> Any:
        source = adapters.open_source(self.url, tables, keys, **options)
        self.sources.append(source)
        return source

    def close(self) -> None:
        for source in self.sources:
            source.close()
        self.conn.close()
        self.server.execute(f"DROP DATABASE IF EXISTS `{self.database}`")


@pytest.fixture
def agency(mariadb, request):
    digest = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:8]
    found = Agency(mariadb, f"mc_{re.sub(r'[^a-z0-9_]', '_', request.node.name.lower())[:40]}_{digest}")
    yield found
    found.close()


def drain(source: Any, after: int = 0, until: Any = None) -> list[ch.Change]:
    """Read until a read returns nothing (and ``until(changes)`` holds, if given)."""
    found: list[ch.Change] = []
    deadline = time.monotonic() + DEADLINE
    while True:
        batch = source.read(after, 500)
        if batch:
            found += batch
            after = batch[-1].position
        elif until is None or until(found):
            return found
        assert time.monotonic() < deadline, f"capture did not deliver in {DEADLINE:.0f}s: {found[-5:]}"


def fold(changes: list[ch.Change], key: str = "id") -> dict[Any, dict[str, Any]]:
    """The rows a consumer holds after ``changes`` (renames applied)."""
    held: dict[Any, dict[str, Any]] = {}
    for c in changes:
        if c.op == ch.SCHEMA and c.renames:
            held = {k: {c.renames.get(n, n): v for n, v in row.items()} for k, row in held.items()}
        elif c.op == ch.TRUNCATE:
            held = {}
        elif c.before is not None and (c.after is None or c.before[key] != c.after[key]):
            held.pop(c.before[key], None)
        if c.after is not None:
            held[c.after[key]] = {**held.get(c.after[key], {}), **c.after}
    return held


def increasing(changes: list[ch.Change]) -> bool:
    return all(a.position < b.position for a, b in zip(changes, changes[1:]))


# -- prerequisites ------------------------------------------------------------------

def test_a_statement_binlog_is_refused_naming_the_setting():
    from support.mariadb import start_server

    server = start_server(binlog_format="STATEMENT")
    try:
        server.create_database("app")
        server.execute("CREATE TABLE app.people (id int primary key)")
        source = adapters.open_source(server.url("app"), ["people"])
        with pytest.raises(SourceNotReady, match=r"binlog_format is STATEMENT.*SET GLOBAL binlog_format = 'ROW'"):
            source.prepare()
        source.close()
    finally:
        server.stop()


def test_settings_and_privileges_are_checked_naming_the_fix(agency, mariadb):
    agency.sql("CREATE TABLE people (id int primary key)")
    mariadb.execute("SET GLOBAL binlog_row_image = 'MINIMAL'")
    try:
        with pytest.raises(SourceNotReady, match="binlog_row_image is MINIMAL.*binlog_row_image = 'FULL'"):
            agency.source(["people"]).prepare()
    finally:
        mariadb.execute("SET GLOBAL binlog_row_image = 'FULL'")
    mariadb.execute("CREATE USER IF NOT EXISTS 'reader'@'%' IDENTIFIED BY 'pw'")
    mariadb.execute(f"GRANT SELECT ON `{agency.database}`.* TO 'reader'@'%'")
    try:
        url = mariadb.url(agency.database, user="reader", password="pw")
        with pytest.raises(SourceNotReady, match=r"lacks REPLICATION SLAVE, REPLICATION CLIENT: run GRANT "
                                                 r"REPLICATION SLAVE, REPLICATION CLIENT ON \*\.\* TO 'reader'"):
            adapters.open_source(url, ["people"]).prepare()
        mariadb.execute("GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'reader'@'%'")
        with pytest.raises(SourceNotReady, match=r"GRANT ALL ON `exchange_capture`\.\* TO 'reader'"):
            adapters.open_source(url, ["people"]).prepare()
    finally:
        mariadb.execute("DROP USER 'reader'@'%'")
    with pytest.raises(SourceNotReady, match=r"server_id 1, the server's own: set \[source\] server_id"):
        agency.source(["people"], server_id=1).prepare()


def test_a_table_without_key_is_refused_and_a_unique_key_may_stand_in(agency):
    agency.sql("CREATE TABLE visits (person int NOT NULL, day date NOT NULL, note text)")
    with pytest.raises(SourceNotReady, match=r"'visits' has no primary key.*\[source\] keys"):
        agency.source(["visits"]).prepare()
    with pytest.raises(SourceNotReady, match=r"not unique: create a UNIQUE index"):
        agency.source(["visits"], {"visits": ["person", "day"]}).prepare()
    agency.sql("CREATE UNIQUE INDEX visit ON visits (person, day)",
               "INSERT INTO visits VALUES (1, '2024-01-02', 'a'), (1, '2024-01-03', 'b')")
    source = agency.source(["visits"], {"visits": ["person", "day"]})
    source.prepare()
    first = drain(source)
    agency.sql("UPDATE visits SET note = 'c' WHERE day = '2024-01-02'")
    update, = [c for c in drain(source, first[-1].position) if c.op != ch.SCHEMA]
    assert first[0].schema.primary_key == ("person", "day")
    assert update.before == {"person": 1, "day": date(2024, 1, 2), "note": "a"} and update.after["note"] == "c"


# -- values -------------------------------------------------------------------------

TYPES = (
    ("d", "decimal(65,30)", "-12345678901234567890123456789012345.123456789012345678901234567891",
     Decimal("-12345678901234567890123456789012345.123456789012345678901234567891")),
    ("dt", "datetime(6)", "2024-01-02 03:04:05.123456", datetime(2024, 1, 2, 3, 4, 5, 123456)),
    ("ts", "timestamp(6) NULL", "2024-01-02 03:04:05.654321",
     datetime(2024, 1, 2, 3, 4, 5, 654321, tzinfo=timezone.utc)),
    ("da", "date", "2024-02-29", date(2024, 2, 29)),
    ("ti", "time(3)", "13:14:15.250", clock(13, 14, 15, 250000)),
    ("tl", "time", "-838:59:59", "-838:59:59"),
    ("y", "year", "2155", 2155),
    ("j", "json", '{"b": 1, "a": [1, 2.5, "张"]}', '{"b": 1, "a": [1, 2.5, "张"]}'),
    ("bl", "blob", b"\x00\xff\x10", b"\x00\xff\x10"),
    ("vb", "varbinary(10)", b"\x00\x01", b"\x00\x01"),
    ("bi", "bit(10)", 0b1010101010, 0b1010101010),
    ("e", "enum('a','b','中')", "中", "中"),
    ("s", "set('x','y','z')", "z,x", "x,z"),
    ("se", "set('x','y')", "", ""),
    ("u", "bigint unsigned", 18446744073709551615, 18446744073709551615),
    ("t", "varchar(40)", "张三 🐉 \"q\" \\ end", "张三 🐉 \"q\" \\ end"),
    ("f", "float", 0.1, 0.1),
    ("db", "double", 0.1 + 0.2, 0.1 + 0.2),
    ("b", "tinyint(1)", True, 1),
    ("zd", "date", "0000-00-00", None),
    ("n", "int", None, None),
)


def test_values_are_the_same_from_the_snapshot_and_the_binlog(agency):
    agency.sql("SET SESSION sql_mode = ''")
    agency.sql(f"CREATE TABLE kinds (id int primary key, {', '.join(f'{n} {t}' for n, t, _, _ in TYPES)})")
    insert = (f"INSERT INTO kinds (id, {', '.join(n for n, *_ in TYPES)}) "
              f"VALUES (%s, {', '.join(['%s'] * len(TYPES))})")
    agency.sql(insert, params=(1, *(value for _, _, value, _ in TYPES)))
    source = agency.source(["kinds"])
    source.prepare()
    snapshot = drain(source)
    agency.sql(insert, params=(2, *(value for _, _, value, _ in TYPES)))
    agency.sql("UPDATE kinds SET n = 5 WHERE id = 1")

    streamed = drain(source, snapshot[-1].position)

    (read,), (inserted, update) = ([c.after for c in changes if c.op != ch.SCHEMA] for changes in (snapshot, streamed))
    expected = {name: value for name, _, _, value in TYPES}
    assert {k: v for k, v in read.items() if k != "id"} == expected
    assert {k: v for k, v in inserted.items() if k != "id"} == expected
    assert all(type(read[k]) is type(inserted[k]) for k in expected)
    assert {**update, "n": None} == read and update["n"] == 5
    assert snapshot[0].schema.column_names[-1] == "n" and dict(
        (c.name, c.type) for c in snapshot[0].schema.columns)["d"] == "decimal(65,30)"


# -- DDL ----------------------------------------------------------------------------

def test_ddl_becomes_schema_changes_renames_truncates_and_new_tables(agency):
    agency.sql("CREATE TABLE people (id int primary key, name varchar(20), score int)",
               "INSERT INTO people VALUES (1, 'a', 10), (2, 'b', 20)")
    source = agency.source(["people", "new_*"])
    source.prepare()
    first = drain(source)
    agency.sql("ALTER TABLE people RENAME COLUMN name TO full_name",
               "ALTER TABLE people CHANGE score points int, ADD COLUMN district varchar(10)",
               "INSERT INTO people VALUES (3, 'c', 30, '西城')",
               "ALTER TABLE people DROP COLUMN district",
               "CREATE TABLE new_cases (id int primary key, title text)",
               "INSERT INTO new_cases VALUES (1, 'x')",
               "TRUNCATE TABLE people",
               "INSERT INTO people VALUES (4, 'd', 40)")

    changes = first + drain(source, first[-1].position,
                            until=lambda found: any(c.table == "new_cases" and c.after for c in found))

    assert increasing(changes)
    schemas = [c for c in changes if c.op == ch.SCHEMA and c.table == "people"]
    assert [s.renames for s in schemas[1:]] == [{"name": "full_name"}, {"score": "points"}, None]
    assert schemas[2].schema.column_names == ("id", "full_name", "points", "district")
    assert schemas[-1].schema.column_names == ("id", "full_name", "points")
    truncate = next(c for c in changes if c.op == ch.TRUNCATE)
    assert truncate.table == "people" and truncate.position > schemas[-1].position
    assert fold([c for c in changes if c.table == "people"]) == {4: {"id": 4, "full_name": "d", "points": 40}}
    assert [(c.op, c.after) for c in changes if c.table == "new_cases" and c.op != ch.SCHEMA] == [
        (ch.SNAPSHOT, {"id": 1, "title": "x"})]
    agency.sql("RENAME TABLE new_cases TO old_cases", "INSERT INTO old_cases VALUES (2, 'y')",
               "DROP TABLE people")
    later = drain(source, changes[-1].position)
    assert [c for c in later if c.table in ("new_cases", "people")] == []
    with pytest.raises(SourceNotReady, match="'people' does not exist"):
        source.schemas()  # a table named in the settings: the node refuses to start without it


def test_a_type_change_reads_the_table_again_and_an_unknown_statement_stops_capture(agency):
    agency.sql("CREATE TABLE people (id int primary key, score int)", "INSERT INTO people VALUES (1, 10), (2, 20)")
    source = agency.source(["people"])
    source.prepare()
    first = drain(source)
    agency.sql("ALTER TABLE people MODIFY score decimal(10,2)")

    changes = drain(source, first[-1].position, until=lambda found: any(c.op == ch.SNAPSHOT_END for c in found))

    ops = [c.op for c in changes]
    assert ops[:2] == [ch.SCHEMA, ch.SNAPSHOT_BEGIN] and ops[-1] == ch.SNAPSHOT_END
    assert [c.after for c in changes if c.op == ch.SNAPSHOT] == [{"id": 1, "score": Decimal("10.00")},
                                                                {"id": 2, "score": Decimal("20.00")}]
    agency.sql("ALTER TABLE people ADD COLUMN district varchar(10) NOT NULL DEFAULT 'west'")
    added = drain(source, changes[-1].position, until=lambda found: any(c.op == ch.SNAPSHOT_END for c in found))
    assert [c.op for c in added][:2] == [ch.SCHEMA, ch.SNAPSHOT_BEGIN]  # existing rows hold the default
    assert [c.after["district"] for c in added if c.op == ch.SNAPSHOT] == ["west", "west"]
    changes = added
    agency.sql("ALTER TABLE people CONVERT TO CHARACTER SET latin1")
    with pytest.raises(Exception, match=r"cannot interpret a statement on captured table 'people'.*\[source\] exclude"):
        drain(source, changes[-1].position)


# -- crashes, restarts, lost positions ---------------------------------------------

def test_a_node_killed_between_reads_resumes_without_gap_or_duplicate(agency):
    agency.sql("CREATE TABLE people (id int primary key, n int)")
    agency.sql("INSERT INTO people VALUES " + ", ".join(f"({i}, 0)" for i in range(1, 41)))
    stored: list[ch.Change] = []
    source = agency.source(["people"], snapshot_chunk=7)
    source.prepare()
    writes = reads = 0
    deadline = time.monotonic() + DEADLINE
    while True:
        batch = source.read(stored[-1].position if stored else 0, 9)
        reads += 1
        if writes < 30:
            agency.sql(f"UPDATE people SET n = n + 1 WHERE id = {writes % 40 + 1}",
                       f"INSERT INTO people VALUES ({100 + writes}, {writes})" if writes % 3 else
                       f"DELETE FROM people WHERE id = {writes + 1}")
            writes += 1
        if reads % 3 == 0 and batch:  # the node dies before storing this batch
            source.close()
            source = agency.source(["people"], snapshot_chunk=7)
            continue
        stored += batch
        if not batch and writes >= 30:
            break
        assert time.monotonic() < deadline

    assert increasing(stored)
    snapshot = [c.after["id"] for c in stored if c.op == ch.SNAPSHOT]
    assert len(snapshot) == len(set(snapshot))
    assert fold(stored) == {row[0]: {"id": row[0], "n": row[1]} for row in agency.sql("SELECT id, n FROM people")}


def test_a_server_restart_mid_stream_loses_and_repeats_nothing(agency, mariadb):
    agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0)")
    source = agency.source(["people"])
    source.prepare()
    stored = drain(source)
    agency.sql("INSERT INTO people VALUES (2, 0)", "UPDATE people SET n = 1 WHERE id = 1")
    stored += source.read(stored[-1].position, 1)
    mariadb.restart()
    agency.sql("INSERT INTO people VALUES (3, 0)", "DELETE FROM people WHERE id = 2")
    deadline = time.monotonic() + DEADLINE
    while True:
        try:
            batch = source.read(stored[-1].position, 100)
        except Exception:  # noqa: BLE001 - the connection the restart broke; the node retries
            assert time.monotonic() < deadline
            continue
        if not batch and fold(stored) == {1: {"id": 1, "n": 1}, 3: {"id": 3, "n": 0}}:
            break
        stored += batch
        assert time.monotonic() < deadline, stored

    assert increasing(stored)
    assert [c.op for c in stored if c.op != ch.SCHEMA].count(ch.INSERT) == 2


def test_a_purged_binlog_raises_position_lost_and_resnapshot_all_repairs(agency, mariadb):
    agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0), (2, 0)")
    source = agency.source(["people"])
    source.prepare()
    stored = drain(source)
    agency.sql("UPDATE people SET n = 1 WHERE id = 1", "DELETE FROM people WHERE id = 2",
               "INSERT INTO people VALUES (3, 3)")
    source.close()
    mariadb.execute("FLUSH BINARY LOGS")
    current = mariadb.execute("SHOW MASTER STATUS")[0][0]
    deadline = time.monotonic() + DEADLINE
    while mariadb.execute("SHOW BINARY LOGS")[0][0] != current:  # a file a closed reader's thread holds stays
        assert time.monotonic() < deadline, mariadb.execute("SHOW BINARY LOGS")
        mariadb.execute(f"PURGE BINARY LOGS TO '{current}'")
        time.sleep(0.1)

    reopened = agency.source(["people"])
    with pytest.raises(PositionLost, match=r"purged.*exchange node resnapshot --config NODE.toml --all"):
        reopened.read(stored[-1].position, 100)
    with pytest.raises(PositionLost, match="every captured table"):
        reopened.request_resnapshot([])
    reopened.request_resnapshot(["people"])
    repaired = drain(reopened, stored[-1].position, until=lambda found: any(c.op == ch.SNAPSHOT_END for c in found))

    ops = [c.op for c in repaired]
    assert ops[0] == ch.SNAPSHOT_BEGIN and ops[-1] == ch.SNAPSHOT_END and increasing(stored + repaired)
    assert [c.after for c in repaired if c.op == ch.SNAPSHOT] == [{"id": 1, "n": 1}, {"id": 3, "n": 3}]


def follow(replica: Any, primary: Any, database: str) -> None:
    """Make ``replica`` a GTID replica of ``primary``, from now, for ``database`` and capture's bookkeeping."""
    primary.execute("CREATE USER IF NOT EXISTS 'replication'@'127.0.0.1' IDENTIFIED BY 'replication'")
    primary.execute("GRANT REPLICATION SLAVE ON *.* TO 'replication'@'127.0.0.1'")
    conn = replica.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
            cur.execute(f"CREATE DATABASE {bookkeeping.BOOKKEEPING}")
            bookkeeping.install(cur)
            cur.execute("SET GLOBAL replicate_wild_do_table = %s", (f"{database}.%,{bookkeeping.BOOKKEEPING}.%",))
            cur.execute("SET GLOBAL gtid_slave_pos = %s", (primary.execute("SELECT @@gtid_binlog_pos")[0][0],))
            cur.execute(f"CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = {primary.port}, "
                        "MASTER_USER = 'replication', MASTER_PASSWORD = 'replication', MASTER_USE_GTID = slave_pos")
            cur.execute("START SLAVE")
    finally:
        conn.close()


def promote(replica: Any, primary: Any) -> None:
    """Wait until ``replica`` applied all ``primary`` wrote, then make it a primary of its own."""
    wanted = primary.execute("SELECT @@gtid_binlog_pos")[0][0]
    assert replica.execute("SELECT MASTER_GTID_WAIT(%s, 60)", (wanted,)) == [(0,)], replica.execute("SHOW SLAVE STATUS")
    replica.execute("STOP SLAVE")
    replica.execute("RESET SLAVE ALL")


def test_a_failover_raises_position_lost_and_resnapshot_all_repairs_into_the_same_store(agency, mariadb):
    from support.mariadb import start_server

    replica = start_server(server_id=2, log_slave_updates="ON")
    try:
        follow(replica, mariadb, agency.database)
        agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0), (2, 0)")
        for _ in range(2):  # the primary's binlog files are numbered beyond the replica's
            mariadb.execute("FLUSH BINARY LOGS")
        source = agency.source(["people"])
        source.prepare()
        stored = drain(source)
        agency.sql("UPDATE people SET n = 1 WHERE id = 1")
        stored += drain(source, stored[-1].position)
        source.close()
        promote(replica, mariadb)
        replica.execute("INSERT INTO people VALUES (3, 3)", dbname=agency.database)
        replica.execute("DELETE FROM people WHERE id = 2", dbname=agency.database)

        def moved() -> Any:
            found = adapters.open_source(replica.url(agency.database), ["people"])
            agency.sources.append(found)
            return found

        changed = r"source server changed \(server_id 1 -> server_id 2.*exchange node resnapshot --config NODE.toml --all"
        with pytest.raises(PositionLost, match=changed):
            moved().read(stored[-1].position, 100)
        with pytest.raises(PositionLost, match=changed):
            moved().pending(stored[-1].position)
        with pytest.raises(PositionLost, match="every captured table"):
            moved().request_resnapshot([])
        moved().request_resnapshot(["people"])  # the repair; the node is killed before it reads
        lost = moved().read(stored[-1].position, 2)  # the node is killed before it stores this
        repaired = moved().read(stored[-1].position, 2)  # stored, then the node is killed
        resumed = moved()
        repaired += drain(resumed, repaired[-1].position,
                          until=lambda found: any(c.op == ch.SNAPSHOT_END for c in found))
        replica.execute("UPDATE people SET n = 4 WHERE id = 3", dbname=agency.database)
        later = drain(resumed, repaired[-1].position, until=lambda found: bool(found))

        assert lost[0].position > stored[-1].position
        assert [(c.op, c.after) for c in lost] == [(c.op, c.after) for c in repaired[:len(lost)]]
        ops = [c.op for c in repaired]
        assert ops[0] == ch.SNAPSHOT_BEGIN and ops[-1] == ch.SNAPSHOT_END
        assert repaired[0].position > stored[-1].position and increasing(stored + repaired + later)
        assert [c.after for c in repaired if c.op == ch.SNAPSHOT] == [{"id": 1, "n": 1}, {"id": 3, "n": 3}]
        assert [(c.op, c.after) for c in later] == [(ch.UPDATE, {"id": 3, "n": 4})]
        moved().prepare()  # a source opened again on the same server finds its own origin
    finally:
        replica.stop()


def test_a_server_without_the_streams_bookkeeping_raises_position_lost_and_resnapshot_all_repairs(agency):
    from support.mariadb import start_server

    agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0), (2, 0)")
    source = agency.source(["people"])
    source.prepare()
    stored = drain(source)
    source.close()
    other = start_server(server_id=2)  # the same data, copied without capture's bookkeeping
    try:
        other.create_database(agency.database)
        other.execute("CREATE TABLE people (id int primary key, n int)", dbname=agency.database)
        other.execute("INSERT INTO people VALUES (1, 0), (3, 3)", dbname=agency.database)

        def opened() -> Any:
            found = adapters.open_source(other.url(agency.database), ["people"])
            agency.sources.append(found)
            return found

        unknown = r"no record of the node's stream.*resnapshot --config NODE.toml --all"
        with pytest.raises(PositionLost, match=unknown):
            opened().read(stored[-1].position, 100)
        with pytest.raises(PositionLost, match=unknown):
            opened().pending(stored[-1].position)
        opened().request_resnapshot(["people"])
        repaired = drain(opened(), stored[-1].position, until=lambda found: any(c.op == ch.SNAPSHOT_END for c in found))

        ops = [c.op for c in repaired]
        assert ops[0] == ch.SNAPSHOT_BEGIN and ops[-1] == ch.SNAPSHOT_END and increasing(stored + repaired)
        assert [c.after for c in repaired if c.op == ch.SNAPSHOT] == [{"id": 1, "n": 0}, {"id": 3, "n": 3}]
    finally:
        other.stop()


def test_origins_recorded_without_server_and_base_are_upgraded_and_read_on(agency, mariadb):
    agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0)")
    source = agency.source(["people"])
    source.prepare()
    stored = drain(source)
    source.close()
    mariadb.execute(f"ALTER TABLE {bookkeeping.BOOKKEEPING}.origins DROP COLUMN server, DROP COLUMN base, "
                    "DROP COLUMN fresh")
    agency.sql("INSERT INTO people VALUES (2, 0)")

    assert agency.source(["people"]).pending(stored[-1].position) in (0, 1)  # as `exchange node status` asks
    later = drain(agency.source(["people"]), stored[-1].position)
    assert [(c.op, c.after) for c in later] == [(ch.INSERT, {"id": 2, "n": 0})] and increasing(stored + later)
    assert mariadb.execute(f"SELECT server, base FROM {bookkeeping.BOOKKEEPING}.origins WHERE source = %s",
                           (source.name,)) == [("1", 0)]


def test_a_resnapshot_request_waits_in_the_binlog_and_is_read_in_order(agency):
    agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0)")
    source = agency.source(["people"])
    source.prepare()
    stored = drain(source)
    source.close()
    requester = agency.source(["people"])
    before = requester.resnapshot_progress(["people"])["people"]
    requester.request_resnapshot(["people"])
    agency.sql("INSERT INTO people VALUES (2, 0)")

    reopened = agency.source(["people"])
    changes = drain(reopened, stored[-1].position, until=lambda found: any(c.op == ch.SNAPSHOT_END for c in found))

    ops = [c.op for c in changes]
    assert ops.index(ch.INSERT) < ops.index(ch.SNAPSHOT_BEGIN) < ops.index(ch.SNAPSHOT_END)
    assert [c.after["id"] for c in changes if c.op == ch.SNAPSHOT] == [1, 2] and increasing(stored + changes)
    after = requester.resnapshot_progress(["people"])["people"]
    assert after.number == before.number + 1 and after.done
    assert reopened.pending(changes[-1].position) == 0


def test_a_small_change_read_soon_after_the_last_progress_record_is_recorded_as_read(agency, monkeypatch):
    from adapters.mysql import source as mysql_source

    monkeypatch.setattr(mysql_source, "PROGRESS_MOVED_EVERY", 0.0)
    agency.sql("CREATE TABLE people (id int primary key, n int)", "INSERT INTO people VALUES (1, 0)")
    source = agency.source(["people"])
    source.prepare()
    stored = drain(source)  # caught up: the source records how far it looked
    agency.sql("UPDATE people SET n = 1 WHERE id = 1")  # a few hundred binlog bytes, within seconds
    stored += drain(source, stored[-1].position)

    assert stored[-1].op == ch.UPDATE
    assert agency.source(["people"]).pending(stored[-1].position) == 0  # as `exchange node status` asks


def test_a_keyless_table_counts_identical_rows_as_copies(agency):
    agency.sql("CREATE TABLE visits (person int, note text)",
               "INSERT INTO visits VALUES (1, 'a'), (1, 'a'), (1, 'a'), (2, NULL), (3, 'b'), (3, 'b')")
    source = agency.source(["visits"], {"visits": []}, snapshot_chunk=2)
    source.prepare()
    stored = drain(source)
    agency.sql("INSERT INTO visits VALUES (1, 'a')", "DELETE FROM visits WHERE person = 3 LIMIT 1",
               "UPDATE visits SET note = 'c' WHERE person = 1 LIMIT 1")
    source.close()
    reopened = agency.source(["visits"], {"visits": []}, snapshot_chunk=2)
    stored += drain(reopened, stored[-1].position)

    def held(changes: list[ch.Change]) -> list[tuple]:
        rows: dict[tuple, dict] = {}
        for c in changes:
            if c.op == ch.TRUNCATE:
                rows = {}
            if c.before is not None:
                rows.pop(tuple(sorted(c.before.items(), key=str)), None)
            if c.after is not None:
                rows[tuple(sorted(c.after.items(), key=str))] = c.after
        return sorted(((r["person"], r["note"]) for r in rows.values()), key=str)

    assert stored[0].schema.primary_key == ("person", "note", "_exchange_copy")
    snapshot = [(c.after["person"], c.after["_exchange_copy"]) for c in stored if c.op == ch.SNAPSHOT]
    assert sorted(snapshot) == [(1, 0), (1, 1), (1, 2), (2, 0), (3, 0), (3, 1)]
    assert held(stored) == sorted(agency.sql("SELECT person, note FROM visits"), key=str)
    agency.sql("TRUNCATE visits", "INSERT INTO visits VALUES (1, 'a')")
    after = drain(reopened, stored[-1].position)
    assert [c.op for c in after] == [ch.TRUNCATE, ch.INSERT] and after[1].after["_exchange_copy"] == 0
