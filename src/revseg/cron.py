"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Supports ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, and lists ``a,b``.
As in cron, when both day fields are restricted a day matches if either does.
"""

from __future__ import annotations

from datetime import datetime, timedelta

_BOUNDS = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]  # day of week: 0 and 7 are Sunday
_NAMES = ["minute", "hour", "day of month", "month", "day of week"]


def _field(text: str, low: int, high: int, name: str) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        body, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if body == "*":
            start, end = low, high
        elif "-" in body:
            start, end = (int(x) for x in body.split("-", 1))
        else:
            start = end = int(body)
        if step < 1:
            raise ValueError(f"{name} field {text!r} has a step below 1")
        if not low <= start <= end <= high:
            raise ValueError(f"{name} field {text!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return {0 if v == 7 and high == 7 else v for v in values}  # 7 is Sunday too


class Cron:
    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 5:
            raise ValueError(f"cron expression {expression!r} needs five fields")
        self.minutes, self.hours, self.days, self.months, self.weekdays = (
            _field(text, *bounds, name) for text, bounds, name in zip(fields, _BOUNDS, _NAMES, strict=True)
        )
        self._any_day = fields[2] == "*"
        self._any_weekday = fields[4] == "*"

    def matches(self, moment: datetime) -> bool:
        weekday = (moment.weekday() + 1) % 7  # cron counts Sunday as 0
        day_ok = moment.day in self.days
        weekday_ok = weekday in self.weekdays
        if self._any_day or self._any_weekday:
            days = day_ok and weekday_ok
        else:
            days = day_ok or weekday_ok
        return moment.minute in self.minutes and moment.hour in self.hours and moment.month in self.months and days

    def next_after(self, moment: datetime) -> datetime:
        """The first matching minute strictly after ``moment``."""
        probe = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
        for _ in range(366 * 24 * 60):
            if self.matches(probe):
                return probe
            probe += timedelta(minutes=1)
        raise ValueError("cron expression never fires")
