from datetime import UTC, datetime, timedelta

import pytest

from chess_com.archives import _listed_months
from chess_com.book import PlayerBook
from chess_com.months import (
    SETTLE,
    InvalidMonthError,
    Month,
    format_ranges,
    is_final,
    parse_range,
    parse_ranges,
    plan_months,
)
from chess_com.records import InvalidRecordError

NOW = datetime(2024, 3, 15, 12, tzinfo=UTC)


def m(text: str) -> Month:
    return Month.parse(text)


def test_parse_and_format() -> None:
    assert m("2024/05") == Month(2024, 5)
    assert m("2024-05").path == "2024/05"
    assert str(Month(2024, 1)) == "2024/01"


@pytest.mark.parametrize("bad", ["2024/13", "2024/00", "24/05", "2024/5", "may", "", "1999/12"])
def test_parse_rejects_naming_value(bad: str) -> None:
    with pytest.raises(InvalidMonthError, match=repr(bad)):
        Month.parse(bad)


def test_next_previous_cross_year() -> None:
    assert Month(2023, 12).next() == Month(2024, 1)
    assert Month(2024, 1).previous() == Month(2023, 12)
    assert Month(2024, 2).end == datetime(2024, 3, 1, tzinfo=UTC)


def test_from_archive_url() -> None:
    url = "https://api.chess.com/pub/player/hikaru/games/2020/05"
    assert Month.from_archive_url(url) == Month(2020, 5)
    with pytest.raises(InvalidMonthError):
        Month.from_archive_url("https://api.chess.com/pub/player/hikaru")


def test_range_defaults_and_clamps_to_current_month() -> None:
    assert parse_range(None, None, NOW) == (None, Month(2024, 3))
    assert parse_range("2023/11", "2030/01", NOW) == (Month(2023, 11), Month(2024, 3))
    with pytest.raises(InvalidMonthError, match="after end month"):
        parse_range("2024/02", "2024/01", NOW)


def test_month_is_final_only_once_settled_after_it_ended() -> None:
    feb = Month(2024, 2)
    assert not is_final(feb, datetime(2024, 2, 20, tzinfo=UTC))  # still growing
    assert not is_final(feb, feb.end + timedelta(hours=1))  # API may lag up to 12 h
    assert is_final(feb, feb.end + SETTLE)
    assert is_final(feb, NOW)


def test_plan_skips_final_refetches_open_months_conditionally() -> None:
    final = {m("2024/01")}
    open_months = {"2024/02": {"etag": 'W/"b"', "last_modified": "Thursday, 29-Feb-2024"}}
    listed = [m("2024/01"), m("2024/02")]
    plans = {
        p.month.path: p for p in plan_months(listed, final, open_months, None, m("2024/03"), NOW)
    }
    assert not plans["2024/01"].fetch
    assert plans["2024/02"].fetch
    assert (plans["2024/02"].etag, plans["2024/02"].last_modified) == (
        'W/"b"',
        "Thursday, 29-Feb-2024",
    )
    # The current month is planned even before the archive list names it.
    assert plans["2024/03"].fetch and plans["2024/03"].etag is None


def test_plan_respects_window() -> None:
    listed = [m("2023/10"), m("2023/11"), m("2023/12"), m("2024/01")]
    plans = plan_months(listed, set(), {}, m("2023/11"), m("2023/12"), NOW)
    assert [p.month.path for p in plans] == ["2023/11", "2023/12"]


def test_rollover_refetches_last_month_once_then_skips() -> None:
    """Fetched during February: not final. Fetched after the rollover: final, skipped."""
    feb = m("2024/02")
    book = PlayerBook({})
    during = datetime(2024, 2, 27, tzinfo=UTC)
    (plan,) = plan_months([feb], book.final, book.open, None, feb, during)
    assert plan.fetch and plan.etag is None
    book.record(feb, {"etag": "e1", "final": is_final(feb, during)})
    after = datetime(2024, 3, 2, tzinfo=UTC)
    plans = {
        p.month.path: p
        for p in plan_months([feb], book.final, book.open, None, m("2024/03"), after)
    }
    assert plans["2024/02"].fetch and plans["2024/02"].etag == "e1"
    book.record(feb, {"etag": "e1", "final": is_final(feb, after)})
    later = datetime(2024, 3, 3, tzinfo=UTC)
    plans = {
        p.month.path: p
        for p in plan_months([feb], book.final, book.open, None, m("2024/03"), later)
    }
    assert not plans["2024/02"].fetch


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://api.chess.com/pub/player/x/games/2024/13", "no such month"),
        ("https://api.chess.com/pub/player/x/games/2024/00", "no such month"),
        ("https://api.chess.com/pub/player/x/games/1999/05", "no such month"),
        ("https://api.chess.com/pub/player/x/games/2024/04", "after 2024/03"),
        (None, "not a monthly archive URL: None"),
        (2024, "not a monthly archive URL: 2024"),
    ],
)
def test_archive_url_must_name_a_real_month_up_to_the_latest(url: object, problem: str) -> None:
    with pytest.raises(InvalidMonthError, match=problem):
        Month.from_archive_url(url, latest=m("2024/03"))


def test_plan_tells_listed_months_from_the_current_month_planned_anyway() -> None:
    plans = {
        p.month.path: p for p in plan_months([m("2024/02")], set(), {}, None, m("2024/03"), NOW)
    }
    assert plans["2024/02"].listed and not plans["2024/03"].listed
    listed_now = plan_months([m("2024/03")], set(), {}, None, m("2024/03"), NOW)
    assert [p.listed for p in listed_now] == [True]


def test_month_ranges_round_trip_across_years_and_gaps() -> None:
    months = [m("2016/12"), m("2017/01"), m("2017/02"), m("2017/04"), m("2026/11")]
    text = format_ranges(reversed(months))
    assert text == "2016/12..2017/02,2017/04,2026/11"
    assert parse_ranges(text) == months
    assert format_ranges([]) == "" and parse_ranges("") == []


@pytest.mark.parametrize(
    ("text", "problem"),
    [("2024/05..2024/01", "ends before it starts"), ("2024/13", "invalid month '2024/13'")],
)
def test_month_ranges_name_a_bad_range(text: str, problem: str) -> None:
    with pytest.raises(InvalidMonthError, match=problem):
        parse_ranges(text)


def test_book_keeps_settled_months_as_ranges_and_open_months_in_full() -> None:
    state: dict = {}
    book = PlayerBook.of(state, "alice")
    for month in ("2024/01", "2024/02", "2024/04"):
        book.record(m(month), {"etag": "e", "last_modified": "x", "games": 3, "final": True})
    book.record(m("2024/05"), {"etag": "e5", "last_modified": "y", "games": 7, "final": False})
    assert state["alice"]["final"] == "2024/01..2024/02,2024/04"
    assert state["alice"]["open"] == {"2024/05": {"etag": "e5", "last_modified": "y", "games": 7}}
    # The open month settles: it leaves "open" and joins the ranges.
    book.record(m("2024/05"), {"etag": "e5", "last_modified": "y", "games": 7, "final": True})
    assert state["alice"] == {"final": "2024/01..2024/02,2024/04..2024/05", "open": {}}
    again = PlayerBook.of(state, "alice")
    assert again.final == {m("2024/01"), m("2024/02"), m("2024/04"), m("2024/05")}


def test_book_reads_and_rewrites_the_state_written_before_ranges() -> None:
    state = {
        "alice": {
            "months": {
                "2024/01": {"etag": "a", "last_modified": "x", "games": 2, "final": True},
                "2024/02": {"etag": "b", "last_modified": "y", "games": 4, "final": True},
                "2024/03": {"etag": "c", "last_modified": "z", "games": 1, "final": False},
            },
            "archives": {"listed_in": "2024/03", "months": ["2024/01", "2024/02", "2024/03"]},
        }
    }
    book = PlayerBook.of(state, "alice")
    assert book.final == {m("2024/01"), m("2024/02")}
    assert book.open == {"2024/03": {"etag": "c", "last_modified": "z", "games": 1}}
    assert book.listed_months() == [m("2024/01"), m("2024/02"), m("2024/03")]
    assert "months" not in state["alice"] and state["alice"]["final"] == "2024/01..2024/02"
    plans = plan_months(book.listed_months(), book.final, book.open, None, m("2024/03"), NOW)
    assert [(p.month.path, p.fetch, p.etag) for p in plans] == [
        ("2024/01", False, None),
        ("2024/02", False, None),
        ("2024/03", True, "c"),
    ]
    book.keep_listing(m("2024/03"), book.listed_months(), {"etag": "l", "last_modified": None})
    assert state["alice"]["archives"]["months"] == "2024/01..2024/03"
    assert book.known() == 3


# -- the turn of the month (issue 19 item 6) -------------------------------------------
def archive_list(*months: str) -> dict:
    return {"archives": [f"https://api.chess.com/pub/player/x/games/{m}" for m in months]}


def test_next_month_in_the_archive_list_is_skipped_not_a_bad_list() -> None:
    # Chess.com's clock a few seconds ahead at midnight UTC names 2024/04 on 2024/03/31.
    listed, ahead = _listed_months(archive_list("2024/02", "2024/03", "2024/04"), m("2024/03"), 2)
    assert listed == [m("2024/02"), m("2024/03")] and ahead == m("2024/04")
    assert _listed_months(archive_list("2024/02"), m("2024/03"), 1) == ([m("2024/02")], None)
    # A player whose first game is in the new month: nothing listed this run, no failure.
    assert _listed_months(archive_list("2024/04"), m("2024/03"), 0) == ([], m("2024/04"))
    # Across the year.
    assert _listed_months(archive_list("2025/01"), m("2024/12"), 0) == ([], m("2025/01"))


@pytest.mark.parametrize(
    ("months", "known", "problem"),
    [
        # Two months ahead is no clock skew: a bad list (or a runner clock far off).
        (("2024/03", "2024/05"), 1, "2024/05' is for a month after 2024/04"),
        # Only next month, but past months were known: they cannot have vanished.
        (("2024/04",), 3, "archive list is empty, but 3 months were known"),
    ],
)
def test_months_further_ahead_still_make_a_bad_archive_list(
    months: tuple[str, ...], known: int, problem: str
) -> None:
    with pytest.raises(InvalidRecordError, match=problem):
        _listed_months(archive_list(*months), m("2024/03"), known)
