"""A sample agency database and a workload of changes, for the demo,
tests and benchmarks.

Three tables as a market-regulation agency keeps them: persons keyed by
resident ID number, legal persons keyed by unified social credit code, and
licences referencing both; names and addresses in Chinese.
"""

from __future__ import annotations

import random
import sqlite3
from datetime import date, timedelta

from exchange.contracts.identifiers import USCC_CHARSET, resident_id_check_char, uscc_check_char

TABLES = ["persons", "legal_persons", "licences"]

SCHEMA = """
CREATE TABLE persons (
    id_number TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    gender TEXT NOT NULL,
    birth_date TEXT NOT NULL,
    address TEXT,
    phone TEXT
);
CREATE TABLE legal_persons (
    uscc TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    legal_representative TEXT REFERENCES persons(id_number),
    registered_capital REAL,
    established TEXT,
    address TEXT
);
CREATE TABLE licences (
    licence_no TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    holder_uscc TEXT REFERENCES legal_persons(uscc),
    responsible_person TEXT REFERENCES persons(id_number),
    issued TEXT NOT NULL,
    expires TEXT,
    status TEXT NOT NULL,
    seal BLOB
);
"""

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
_GIVEN = ["伟", "芳", "娜", "敏", "静", "强", "磊", "洋", "艳", "勇", "军", "杰", "娟", "涛", "明", "超", "秀英", "桂英", "建华", "志强"]
_DISTRICTS = ["黄浦区", "徐汇区", "长宁区", "静安区", "普陀区", "虹口区", "杨浦区", "浦东新区", "闵行区", "宝山区"]
_ROADS = ["南京东路", "淮海中路", "延安西路", "世纪大道", "四川北路", "长寿路", "中山北路", "张杨路"]
_TRADES = ["贸易", "科技", "餐饮管理", "建筑工程", "物流", "文化传媒", "医药", "信息技术"]
_LICENCE_KINDS = ["食品经营许可证", "药品经营许可证", "营业执照", "卫生许可证", "道路运输经营许可证"]
_STATUSES = ["有效", "注销", "吊销", "暂停"]


class SampleAgency:
    """Creates the sample tables and drives a reproducible workload."""

    def __init__(self, path: str, seed: int = 2016):
        self.path = path
        self.rng = random.Random(seed)
        self.persons: list[str] = []
        self._person_set: set[str] = set()
        self.legal_persons: list[str] = []
        self.licences: list[str] = []
        self._serial = 0

    def connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def create(self, persons: int = 200, legal_persons: int = 80, licences: int = 120) -> int:
        """Create the tables with initial rows; returns the number of rows."""
        conn = self.connect()
        try:
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            for _ in range(persons):
                self._insert_person(conn)
            for _ in range(legal_persons):
                self._insert_legal_person(conn)
            for _ in range(licences):
                self._insert_licence(conn)
            conn.execute("COMMIT")
        finally:
            conn.close()
        return persons + legal_persons + licences

    def run(self, changes: int, per_transaction: int = 20, on_commit=None) -> int:
        """Make ``changes`` row changes (inserts, updates, deletes) in
        transactions of ``per_transaction``; returns the count made."""
        conn = self.connect()
        made = 0
        try:
            while made < changes:
                conn.execute("BEGIN IMMEDIATE")
                for _ in range(min(per_transaction, changes - made)):
                    self._random_change(conn)
                    made += 1
                conn.execute("COMMIT")
                if on_commit:
                    on_commit(made)
        finally:
            conn.close()
        return made

    def _random_change(self, conn: sqlite3.Connection) -> None:
        roll = self.rng.random()
        if roll < 0.3:
            self.rng.choice([self._insert_person, self._insert_legal_person, self._insert_licence])(conn)
        elif roll < 0.9:
            self.rng.choice([self._update_person, self._update_legal_person, self._update_licence])(conn)
        else:
            self._delete_licence(conn) if self.licences else self._insert_licence(conn)

    def _next(self) -> int:
        self._serial += 1
        return self._serial

    def _name(self) -> str:
        return self.rng.choice(_SURNAMES) + self.rng.choice(_GIVEN)

    def _address(self) -> str:
        return f"上海市{self.rng.choice(_DISTRICTS)}{self.rng.choice(_ROADS)}{self.rng.randint(1, 999)}号"

    def _insert_person(self, conn: sqlite3.Connection) -> None:
        while True:
            born = date(1950, 1, 1) + timedelta(days=self.rng.randint(0, 365 * 55))
            first17 = f"310{self.rng.randint(101, 120):03d}{born:%Y%m%d}{self.rng.randint(0, 999):03d}"
            id_number = first17 + resident_id_check_char(first17)
            if id_number not in self._person_set:
                break
        conn.execute(
            "INSERT INTO persons (id_number, name, gender, birth_date, address, phone) VALUES (?,?,?,?,?,?)",
            (id_number, self._name(), "男" if int(first17[16]) % 2 else "女", born.isoformat(), self._address(),
             f"139{self.rng.randint(0, 99_999_999):08d}"),
        )
        self._person_set.add(id_number)
        self.persons.append(id_number)

    def _insert_legal_person(self, conn: sqlite3.Connection) -> None:
        organisation = "".join(self.rng.choice(USCC_CHARSET) for _ in range(5)) + f"{self._next():04d}"[-4:]
        first17 = f"913101{self.rng.randint(1, 20):02d}{organisation}"
        uscc = first17 + uscc_check_char(first17)
        name = f"上海{self.rng.choice(_SURNAMES)}{self.rng.choice(_GIVEN)}{self.rng.choice(_TRADES)}有限公司"
        conn.execute(
            "INSERT INTO legal_persons (uscc, name, legal_representative, registered_capital, established, address) "
            "VALUES (?,?,?,?,?,?)",
            (uscc, name, self.rng.choice(self.persons) if self.persons else None,
             round(self.rng.uniform(10, 5000), 2) * 10000, f"{self.rng.randint(1995, 2016)}-0{self.rng.randint(1, 9)}-1{self.rng.randint(0, 9)}",
             self._address()),
        )
        self.legal_persons.append(uscc)

    def _insert_licence(self, conn: sqlite3.Connection) -> None:
        licence_no = f"沪{self.rng.choice('JYSWYL')}{self._next():010d}"
        issued = date(2010, 1, 1) + timedelta(days=self.rng.randint(0, 2500))
        conn.execute(
            "INSERT INTO licences (licence_no, kind, holder_uscc, responsible_person, issued, expires, status, seal) "
            "VALUES (?,?,?,?,?,?,?,?)",
            (licence_no, self.rng.choice(_LICENCE_KINDS),
             self.rng.choice(self.legal_persons) if self.legal_persons else None,
             self.rng.choice(self.persons) if self.persons else None,
             issued.isoformat(), (issued + timedelta(days=365 * 5)).isoformat(), "有效",
             self.rng.randbytes(16)),
        )
        self.licences.append(licence_no)

    def _update_person(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE persons SET address=?, phone=? WHERE id_number=?",
                     (self._address() + f"{self._next()}室", f"138{self._next():08d}", self.rng.choice(self.persons)))

    def _update_legal_person(self, conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE legal_persons SET registered_capital=registered_capital+?, address=? WHERE uscc=?",
                     (self._next(), self._address(), self.rng.choice(self.legal_persons)))

    def _update_licence(self, conn: sqlite3.Connection) -> None:
        if not self.licences:
            return self._insert_licence(conn)
        conn.execute("UPDATE licences SET status=?, expires=?, seal=? WHERE licence_no=?",
                     (self.rng.choice(_STATUSES), f"20{self._next() % 100:02d}-12-31", self.rng.randbytes(16),
                      self.rng.choice(self.licences)))

    def _delete_licence(self, conn: sqlite3.Connection) -> None:
        licence_no = self.licences.pop(self.rng.randrange(len(self.licences)))
        conn.execute("DELETE FROM licences WHERE licence_no=?", (licence_no,))
