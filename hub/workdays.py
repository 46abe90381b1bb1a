"""Working days on the Chinese statutory calendar, make-up working days included.

Deadlines in the regulation are counted in working days (2 for a catalog
update, 10 for answering a share request).  The State Council publishes each
year's holiday schedule late in the year before; ``chinesecalendar`` knows
the years up to its release, and the hub's ``[calendar]`` settings add or
correct days for years it does not know yet:

    [calendar]
    holidays = ["2027-01-01", "2027-02-16"]   # days off that would be weekdays
    workdays = ["2027-02-20"]                  # make-up working days on weekends

A year named in the override but unknown to the library follows the
override plus the weekday rule; a year known to neither is refused rather
than guessed.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Iterable
from zoneinfo import ZoneInfo

import chinese_calendar

from exchange.common.config import Config
from exchange.contracts.errors import ExchangeError, InvalidInput

SHANGHAI = ZoneInfo("Asia/Shanghai")


class CalendarUnknown(ValueError, ExchangeError):
    """The holiday schedule of a year is known neither to the library nor to the config."""


class WorkingCalendar:
    """Answers "is this a working day" and counts working days."""

    def __init__(self, holidays: Iterable[date | str] = (), workdays: Iterable[date | str] = ()):
        self.holidays = {_day(d) for d in holidays}
        self.workdays = {_day(d) for d in workdays}
        overlap = self.holidays & self.workdays
        if overlap:
            raise InvalidInput(f"[calendar] lists {min(overlap)} both as a holiday and as a working day")
        self.override_years = {d.year for d in self.holidays | self.workdays}

    @classmethod
    def from_config(cls, cfg: Config) -> "WorkingCalendar":
        """The calendar with the ``calendar.holidays``/``calendar.workdays`` overrides of a config."""
        return cls(cfg.calendar.holidays, cfg.calendar.workdays)

    def is_working_day(self, day: date) -> bool:
        if day in self.workdays:
            return True
        if day in self.holidays:
            return False
        try:
            return chinese_calendar.is_workday(day)
        except NotImplementedError:
            if day.year in self.override_years:
                return day.weekday() < 5
            raise CalendarUnknown(
                f"the statutory holiday schedule of {day.year} is not known to chinesecalendar "
                f"{getattr(chinese_calendar, '__version__', '')}: list that year's holidays and make-up working "
                f"days under [calendar] holidays/workdays"
            ) from None

    def add_working_days(self, start: date, count: int) -> date:
        """The ``count``-th working day after ``start`` (``start`` itself never counts)."""
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        day = start
        while count:
            day += timedelta(days=1)
            if self.is_working_day(day):
                count -= 1
        return day

    def deadline(self, started: datetime, count: int) -> datetime:
        """End (midnight, Shanghai time) of the ``count``-th working day after the day ``started`` falls on."""
        last = self.add_working_days(started.astimezone(SHANGHAI).date(), count)
        return datetime.combine(last + timedelta(days=1), time(), SHANGHAI)

    def working_days_between(self, start: date, end: date) -> int:
        """Working days after ``start`` up to and including ``end`` (0 when ``end <= start``)."""
        count, day = 0, start
        while day < end:
            day += timedelta(days=1)
            count += self.is_working_day(day)
        return count


def _day(value: date | str) -> date:
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"[calendar] expects ISO dates like 2027-01-01, got {value!r}") from None
