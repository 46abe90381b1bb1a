"""COPY text output split into columns (adapters/postgres/copytext.py)."""

from __future__ import annotations

import pytest

from adapters.postgres import copytext


def test_rows_are_split_into_columns():
    assert copytext.columns("1\ta\n2\tb\n", 2) == [["1", "2"], ["a", "b"]]
    assert copytext.columns("", 3) == [[], [], []]


def test_nulls_and_escaped_characters_are_read_back():
    data = "1\t\\N\n2\ttab\\there\\nline \\\\ back\\\\N\n3\t\\\\N\n4\t\\b\\f\\r\\v\n5\t\n"
    assert copytext.columns(data, 2) == [["1", "2", "3", "4", "5"],
                                         [None, "tab\there\nline \\ back\\N", "\\N", "\b\f\r\v", ""]]


def test_output_that_is_not_whole_rows_is_refused():
    with pytest.raises(ValueError):
        copytext.columns("1\ta\n2\n", 2)
