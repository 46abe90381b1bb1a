"""Agency ids and store URLs: what is accepted, and errors that name the input."""

from __future__ import annotations

import pytest

from exchange.common.urls import redact_url, sqlite_path
from exchange.contracts.agency import InvalidAgency, check_agency
from exchange.store import StoreError, open_store


def test_an_agency_id_is_letters_digits_or_underscores():
    assert check_agency("91310000MB2F31887X") == "91310000MB2F31887X"
    for bad in ("", "a-b", "x" * 65, "events; DROP", None):
        with pytest.raises(InvalidAgency, match="invalid agency id"):
            check_agency(bad)


def test_urls_are_read_and_redacted():
    assert sqlite_path("sqlite:////var/lib/x.db") == "/var/lib/x.db"
    assert redact_url("postgresql://hub:s3cret@db:5432/hub") == "postgresql://hub:***@db:5432/hub"
    with pytest.raises(ValueError, match="expected sqlite:///PATH"):
        sqlite_path("sqlite:///")


@pytest.mark.parametrize("url", ["sqlite:///", "mysql://x/y"])
def test_a_bad_store_url_is_a_store_error_naming_it(url):
    with pytest.raises(StoreError, match=f"unsupported (store )?URL {url!r}"):
        open_store(url)


def test_an_agency_id_with_a_final_newline_is_refused():
    with pytest.raises(InvalidAgency):
        check_agency("91310000MB2F31887X\n")


def test_agency_ids_that_differ_only_in_case_never_share_a_log(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        store.recorder("AGENCY_A")
        with pytest.raises(StoreError, match="only in letter case"):
            store.recorder("agency_a")
    finally:
        store.close()


def test_mysql_urls_parse_and_incomplete_ones_are_refused_without_the_password():
    from adapters.mysql.connection import MySQLAddress
    from exchange.contracts.errors import InvalidInput

    address = MySQLAddress.parse("mysql://rep%40l:s%3Acret@db.example:3307/agency")
    assert (address.host, address.port, address.user, address.password, address.database) == (
        "db.example", 3307, "rep@l", "s:cret", "agency")
    assert MySQLAddress.parse("mysql://root@127.0.0.1/test").port == 3306
    for bad in ("mysql://root@127.0.0.1/", "mysql://127.0.0.1/db", "mysql://u:topsecret@h:99999/db"):
        with pytest.raises(InvalidInput) as caught:
            MySQLAddress.parse(bad)
        assert "topsecret" not in str(caught.value)
