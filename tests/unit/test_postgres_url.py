"""PostgreSQL store URLs: one server or several (libpq tries them in turn), and libpq options."""

from __future__ import annotations

import pytest

from exchange.store import StoreError
from exchange.store.postgres import connection_options, connection_settings


def test_one_server_with_defaults():
    assert connection_settings("postgresql://hub@db.example.gov.cn/exchange") == {
        "dbname": "exchange", "host": "db.example.gov.cn", "port": 5432, "user": "hub", "password": ""}
    assert connection_options("postgresql://hub@db.example.gov.cn/exchange") == {}


def test_several_servers_and_target_session_attrs():
    url = "postgresql://hub:s%40cret@pg1:5432,pg2:5433/exchange?target_session_attrs=read-write&sslmode=require"
    settings = connection_settings(url)
    assert (settings["host"], settings["port"], settings["password"]) == ("pg1,pg2", "5432,5433", "s@cret")
    assert connection_options(url) == {"target_session_attrs": "read-write", "sslmode": "require"}


@pytest.mark.parametrize("url, message", [
    ("mysql://hub@db/exchange", "expected postgresql://"),
    ("postgresql://hub@db", "no database named"),
    ("postgresql://hub:secret@db/x?nonsense=1", "nonsense"),
])
def test_a_bad_url_is_refused_without_its_password(url, message):
    with pytest.raises(StoreError, match=message) as caught:
        connection_settings(url)
    assert "secret" not in str(caught.value)
