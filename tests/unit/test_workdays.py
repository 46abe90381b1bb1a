"""The statutory working-day calendar: holidays, make-up working days, deadlines and the config override."""

from __future__ import annotations

from datetime import date, datetime, timezone

import pytest

from hub import config as hub_config
from hub.workdays import SHANGHAI, CalendarUnknown, WorkingCalendar

calendar = WorkingCalendar()


def test_national_day_holidays_are_skipped_and_the_make_up_saturday_counts():
    assert not calendar.is_working_day(date(2026, 10, 5))  # a Monday in the National Day holiday
    assert calendar.is_working_day(date(2026, 10, 10))  # a Saturday worked to make up
    assert calendar.add_working_days(date(2026, 9, 30), 2) == date(2026, 10, 9)
    assert calendar.add_working_days(date(2026, 9, 28), 5) == date(2026, 10, 10)
    assert calendar.add_working_days(date(2026, 10, 9), 2) == date(2026, 10, 12)


def test_the_start_day_never_counts_even_when_it_is_a_holiday():
    assert calendar.add_working_days(date(2026, 10, 3), 1) == date(2026, 10, 8)
    with pytest.raises(ValueError, match="at least 1"):
        calendar.add_working_days(date(2026, 10, 3), 0)


def test_a_deadline_ends_at_midnight_shanghai_time():
    started = datetime(2026, 9, 30, 20, 0, tzinfo=timezone.utc)  # already 1 October in Shanghai
    assert calendar.deadline(started, 2) == datetime(2026, 10, 10, tzinfo=SHANGHAI)
    assert calendar.working_days_between(date(2026, 9, 30), date(2026, 10, 12)) == 4
    assert calendar.working_days_between(date(2026, 10, 12), date(2026, 10, 1)) == 0


def test_a_year_the_library_does_not_know_needs_the_override():
    with pytest.raises(CalendarUnknown, match=r"2031.*\[calendar\] holidays/workdays"):
        calendar.is_working_day(date(2031, 1, 1))
    override = WorkingCalendar(holidays=["2031-01-01"], workdays=["2031-01-04"])
    assert not override.is_working_day(date(2031, 1, 1))  # a Wednesday off
    assert override.is_working_day(date(2031, 1, 4))  # a Saturday worked
    assert override.is_working_day(date(2031, 1, 6)) and not override.is_working_day(date(2031, 1, 5))


def test_the_override_comes_from_the_hub_config(tmp_path):
    path = tmp_path / "hub.toml"
    path.write_text('[store]\nurl = "sqlite:///s.db"\n[calendar]\nholidays = ["2031-01-01"]\nworkdays = ["2031-01-04"]\n')
    cal = WorkingCalendar.from_config(hub_config.load(path, environ={}))
    assert cal.add_working_days(date(2030, 12, 31), 3) == date(2031, 1, 4)
    env = {"EXCHANGE_HUB_CALENDAR_WORKDAYS": "2031-01-01,2031-01-04"}
    with pytest.raises(ValueError, match="2031-01-01 both as a holiday and as a working day"):
        WorkingCalendar.from_config(hub_config.load(path, environ=env))
    with pytest.raises(ValueError, match="ISO dates"):
        WorkingCalendar(holidays=["1 Jan 2031"])
