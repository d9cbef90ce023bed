"""Monthly game archives: parsing, ranges and when a month is final.

A month's archive keeps growing until the month is over, and Chess.com refreshes
published data at most every 12 hours, so a month only becomes final once it was
fetched at least `SETTLE` after it ended. Until then it is fetched again
(conditionally, so an unchanged month costs a 304 and no bytes).
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

MONTH_RE = re.compile(r"^(\d{4})/(\d{2})$")
ARCHIVE_URL_RE = re.compile(r"/games/(\d{4})/(\d{2})/?$")
SETTLE = timedelta(hours=12)


class InvalidMonthError(ValueError):
    """A month that is not `YYYY/MM`, or a range that ends before it starts."""


@dataclass(frozen=True, order=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, value: str) -> Month:
        """Parse `YYYY/MM` (`YYYY-MM` is accepted too)."""
        match = MONTH_RE.match(str(value).strip().replace("-", "/"))
        if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 2000:
            raise InvalidMonthError(f"invalid month {value!r}: expected YYYY/MM, e.g. 2024/05")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def from_archive_url(cls, url: object, latest: Month | None = None) -> Month:
        """The month of an archive URL `.../games/YYYY/MM`, a real month up to `latest`."""
        match = ARCHIVE_URL_RE.search(url) if isinstance(url, str) else None
        if not match:
            raise InvalidMonthError(f"not a monthly archive URL: {url!r}")
        try:
            month = cls.parse(f"{match.group(1)}/{match.group(2)}")
        except InvalidMonthError:
            raise InvalidMonthError(f"no such month in archive URL {url!r}") from None
        if latest is not None and month > latest:
            raise InvalidMonthError(f"archive URL {url!r} is for a month after {latest}")
        return month

    @classmethod
    def of(cls, moment: datetime) -> Month:
        moment = moment.astimezone(UTC)
        return cls(moment.year, moment.month)

    @property
    def index(self) -> int:
        """Months since year 0: consecutive months have consecutive indexes."""
        return self.year * 12 + self.month - 1

    @classmethod
    def at(cls, index: int) -> Month:
        return cls(index // 12, index % 12 + 1)

    def next(self) -> Month:
        return Month(self.year + self.month // 12, self.month % 12 + 1)

    def previous(self) -> Month:
        return Month(self.year - (self.month == 1), (self.month - 2) % 12 + 1)

    @property
    def start(self) -> datetime:
        return datetime(self.year, self.month, 1, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return self.next().start

    @property
    def path(self) -> str:
        return f"{self.year:04d}/{self.month:02d}"

    def __str__(self) -> str:
        return self.path


def parse_range(start: str | None, end: str | None, now: datetime) -> tuple[Month | None, Month]:
    """Validate an optional `start`..`end` window; `end` defaults to the current month."""
    current = Month.of(now)
    first = Month.parse(start) if start else None
    last = Month.parse(end) if end else current
    if last > current:
        last = current
    if first and first > last:
        raise InvalidMonthError(f"start month {first} is after end month {last}")
    return first, last


def format_ranges(months: Iterable[Month]) -> str:
    """Months as runs of consecutive months: `2016/12..2026/09,2026/11` ("" for none)."""
    runs: list[list[int]] = []
    for index in sorted({m.index for m in months}):
        if runs and runs[-1][1] + 1 == index:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    return ",".join(
        str(Month.at(lo)) if lo == hi else f"{Month.at(lo)}..{Month.at(hi)}" for lo, hi in runs
    )


def parse_ranges(text: str) -> list[Month]:
    """The months of `format_ranges` text, in order; raises `InvalidMonthError`."""
    months: list[Month] = []
    for run in filter(None, (part.strip() for part in text.split(","))):
        first, _, last = run.partition("..")
        lo, hi = Month.parse(first), Month.parse(last or first)
        if hi < lo:
            raise InvalidMonthError(f"invalid month range {run!r}: ends before it starts")
        months.extend(Month.at(i) for i in range(lo.index, hi.index + 1))
    return months


def is_final(month: Month, fetched_at: datetime) -> bool:
    """A month fetched long enough after it ended will not change any more."""
    return fetched_at >= month.end + SETTLE


@dataclass(frozen=True)
class MonthPlan:
    """What to do with one month of a player's archive on this run."""

    month: Month
    fetch: bool
    etag: str | None = None
    last_modified: str | None = None
    # Named by the archive list (so it has games), not just the current month planned anyway.
    listed: bool = True


def plan_months(
    listed: list[Month],
    final: Container[Month],
    open_months: dict[str, dict[str, Any]],
    first: Month | None,
    last: Month,
    now: datetime,
) -> list[MonthPlan]:
    """Decide, month by month, whether to fetch and with which validators.

    `listed` are the months the archive list names; the current month is always
    considered (a player's first game of the month may come after the list was read).
    `final` are the months settled and loaded (never fetched again); `open_months` the
    validators of months fetched before but not settled (`book.PlayerBook`).
    """
    current = Month.of(now)
    named = set(listed)
    months = set(named)
    if first is None or first <= current <= last:
        months.add(current)
    plans = []
    for month in sorted(m for m in months if (first is None or m >= first) and m <= last):
        entry = open_months.get(month.path)
        listed_here = month in named
        if month in final:
            plans.append(MonthPlan(month, fetch=False, listed=listed_here))
        elif entry:
            etag, modified = entry.get("etag"), entry.get("last_modified")
            plans.append(MonthPlan(month, True, etag, modified, listed=listed_here))
        else:
            plans.append(MonthPlan(month, fetch=True, listed=listed_here))
    return plans
