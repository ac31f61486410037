"""The report's time bounds (``--since``, ``--until``, ``--period``): every accepted form,
for since and for until, the errors, and properties over generated dates and times."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from residency_sdk.audit.period import format_bound, parse_bound, parse_period
from residency_sdk.errors import AuditFormatError, InputError

# A fixed "now" (with seconds and microseconds, so relative bounds keep them).
NOW = datetime(2026, 11, 15, 10, 30, 45, 123456, tzinfo=UTC)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=UTC)  # type: ignore[misc,arg-type]


def since(value: object, **kw: object) -> datetime | None:
    return parse_bound(value, name="--since", now=NOW, **kw)  # type: ignore[arg-type]


def until(value: object, **kw: object) -> datetime | None:
    return parse_bound(value, name="--until", end=True, now=NOW, **kw)  # type: ignore[arg-type]


# --- calendar periods: since = start, until = start of the next period ----------------

CALENDAR = [
    # days
    ("2026-11-01", utc(2026, 11, 1), utc(2026, 11, 2)),
    ("2026-11-30", utc(2026, 11, 30), utc(2026, 12, 1)),  # --until 30 Nov includes 30 Nov
    ("2026-12-31", utc(2026, 12, 31), utc(2027, 1, 1)),
    ("2024-02-29", utc(2024, 2, 29), utc(2024, 3, 1)),
    ("20261101", utc(2026, 11, 1), utc(2026, 11, 2)),
    ("2026-W45-3", utc(2026, 11, 4), utc(2026, 11, 5)),  # an ISO week date is a day
    ("  2026-11-01\n", utc(2026, 11, 1), utc(2026, 11, 2)),
    # months
    ("2026-11", utc(2026, 11, 1), utc(2026, 12, 1)),
    ("2026-12", utc(2026, 12, 1), utc(2027, 1, 1)),
    ("2026-02", utc(2026, 2, 1), utc(2026, 3, 1)),
    ("2026-1", utc(2026, 1, 1), utc(2026, 2, 1)),
    # quarters
    ("2026-Q1", utc(2026, 1, 1), utc(2026, 4, 1)),
    ("2026-Q2", utc(2026, 4, 1), utc(2026, 7, 1)),
    ("2026-Q3", utc(2026, 7, 1), utc(2026, 10, 1)),
    ("2026-q4", utc(2026, 10, 1), utc(2027, 1, 1)),
    # years
    ("2026", utc(2026, 1, 1), utc(2027, 1, 1)),
    # ISO weeks (Monday to Monday; week 1 may start in the previous year)
    ("2026-W45", utc(2026, 11, 2), utc(2026, 11, 9)),
    ("2026-w01", utc(2025, 12, 29), utc(2026, 1, 5)),
    ("2026-W53", utc(2026, 12, 28), utc(2027, 1, 4)),
    ("2026W45", utc(2026, 11, 2), utc(2026, 11, 9)),
    # relative calendar days (NOW is 2026-11-15 10:30 UTC)
    ("today", utc(2026, 11, 15), utc(2026, 11, 16)),
    (" Today ", utc(2026, 11, 15), utc(2026, 11, 16)),
    ("yesterday", utc(2026, 11, 14), utc(2026, 11, 15)),
    ("YESTERDAY", utc(2026, 11, 14), utc(2026, 11, 15)),
]


@pytest.mark.parametrize(("value", "start", "next_start"), CALENDAR)
def test_calendar_periods(value: str, start: datetime, next_start: datetime) -> None:
    assert since(value) == start
    assert until(value) == next_start
    assert parse_period(value, now=NOW) == (start, next_start)


# --- instants: the same for since and until ------------------------------------------

INSTANTS = [
    ("2026-11-01T12:00:00Z", utc(2026, 11, 1, 12)),
    ("2026-11-01T12:00:00+00:00", utc(2026, 11, 1, 12)),
    ("2026-11-01T12:00:00+01:00", utc(2026, 11, 1, 11)),
    ("2026-11-01T12:00:00-05:30", utc(2026, 11, 1, 17, 30)),
    ("2026-11-01T00:30:00+02:00", utc(2026, 10, 31, 22, 30)),  # the offset moves the date
    ("2026-11-01T12:00:00+0100", utc(2026, 11, 1, 11)),
    ("2026-11-01 12:00", utc(2026, 11, 1, 12)),  # naive = UTC
    ("2026-11-01T12:00:00", utc(2026, 11, 1, 12)),
    ("2026-11-01T00:00:00Z", utc(2026, 11, 1)),  # an instant, even at midnight
    ("2026-11-01T12:00:00.250000Z", utc(2026, 11, 1, 12, 0, 0, 250000)),
    ("2026-11-01t12:00z", utc(2026, 11, 1, 12)),
    # periods back from NOW
    ("30d", NOW - timedelta(days=30)),
    ("30D", NOW - timedelta(days=30)),
    ("12h", NOW - timedelta(hours=12)),
    ("90m", NOW - timedelta(minutes=90)),
    ("2w", NOW - timedelta(weeks=2)),
    ("30 days", NOW - timedelta(days=30)),
    ("1 day", NOW - timedelta(days=1)),
    ("2 weeks", NOW - timedelta(weeks=2)),
    ("12 hours", NOW - timedelta(hours=12)),
    ("90 minutes", NOW - timedelta(minutes=90)),
    ("90 min", NOW - timedelta(minutes=90)),
    ("3 days ago", NOW - timedelta(days=3)),
    ("+5h", NOW - timedelta(hours=5)),
]


@pytest.mark.parametrize(("value", "expected"), INSTANTS)
def test_instants_are_the_same_for_since_and_until(value: str, expected: datetime) -> None:
    assert since(value) == expected
    assert until(value) == expected


@pytest.mark.parametrize("value", [v for v, _, _ in CALENDAR] + [v for v, _ in INSTANTS])
def test_results_are_aware_utc(value: str) -> None:
    for bound in (since(value), until(value)):
        assert bound is not None
        assert bound.tzinfo is UTC


def test_relative_period() -> None:
    assert parse_period("30d", now=NOW) == (NOW - timedelta(days=30), NOW)
    assert parse_period("12 hours", now=NOW) == (NOW - timedelta(hours=12), NOW)


def test_now_defaults_to_the_current_time() -> None:
    before = datetime.now(UTC)
    got = parse_bound("1h", name="--since")
    after = datetime.now(UTC)
    assert got is not None
    assert before - timedelta(hours=1) <= got <= after - timedelta(hours=1)
    start, end = parse_period("today")
    assert start.date() in (before.date(), after.date())
    assert end - start == timedelta(days=1)


def test_a_naive_now_is_utc_and_an_aware_one_is_converted() -> None:
    naive = datetime(2026, 11, 15, 0, 30)
    assert parse_bound("today", name="--since", now=naive) == utc(2026, 11, 15)
    # 00:30 in Berlin (+01:00) is still 14 November in UTC
    berlin = datetime(2026, 11, 15, 0, 30, tzinfo=timezone(timedelta(hours=1)))
    assert parse_bound("today", name="--since", now=berlin) == utc(2026, 11, 14)
    assert parse_bound("1h", name="--since", now=berlin) == utc(2026, 11, 14, 22, 30)


# --- objects -------------------------------------------------------------------------


def test_datetime_and_date_objects() -> None:
    naive = datetime(2026, 11, 1, 12, 0)
    assert since(naive) == until(naive) == utc(2026, 11, 1, 12)
    aware = datetime(2026, 11, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    assert since(aware) == until(aware) == utc(2026, 11, 1, 10)
    assert since(aware).tzinfo is UTC  # type: ignore[union-attr]
    assert since(date(2026, 11, 30)) == utc(2026, 11, 30)
    assert until(date(2026, 11, 30)) == utc(2026, 12, 1)
    assert since(None) is None
    assert until(None) is None


# --- all UTC: the process's zone and daylight saving change nothing --------------------


@pytest.fixture
def berlin_local_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX only")
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("berlin_local_zone")
def test_dst_change_days_are_24_hours_whatever_the_local_zone() -> None:
    # 25 October 2026 and 29 March 2026 are Berlin's daylight-saving changes.
    for day in ("2026-10-25", "2026-03-29"):
        start, end = parse_period(day)
        assert end - start == timedelta(hours=24)
        assert start.tzinfo is UTC
    assert since("2026-10-25 02:30") == utc(2026, 10, 25, 2, 30)  # naive is UTC, not local
    assert since(datetime(2026, 3, 29, 2, 30)) == utc(2026, 3, 29, 2, 30)


# --- format_bound --------------------------------------------------------------------


def test_format_bound() -> None:
    assert format_bound(utc(2026, 11, 1, 12)) == "2026-11-01T12:00:00.000000Z"
    assert format_bound(datetime(2026, 11, 1, 12)) == "2026-11-01T12:00:00.000000Z"
    plus_one = datetime(2026, 11, 1, 0, 30, 0, 7, tzinfo=timezone(timedelta(hours=1)))
    assert format_bound(plus_one) == "2026-10-31T23:30:00.000007Z"
    assert format_bound(utc(5, 1, 1)) == "0005-01-01T00:00:00.000000Z"  # zero-padded year


# --- errors --------------------------------------------------------------------------

BAD_TEXT = [
    "2026-13", "2026-00", "2026-Q5", "2026-Q0", "2026-W54", "2026-W00", "2025-W53",
    "2026-11-31", "2026-02-29", "2026-11-01T25:00", "2026-11-01T12:00:00+25:00",
    "0d", "-3d", "0 days", "-1 week", "99999999d", "99999999999w", "9" * 40 + "d",
    "6M", "30 fortnights", "3y", "", "   ", "next week", "not a date", "0000", "2026-",
    "Q3", "d", "30", "2026-11-01T", "🕐",
]


@pytest.mark.parametrize("value", BAD_TEXT)
@pytest.mark.parametrize(("name", "end"), [("--since", False), ("--until", True)])
def test_bad_text_is_an_audit_format_error_naming_the_option(
        value: str, name: str, end: bool) -> None:
    with pytest.raises(AuditFormatError) as err:
        parse_bound(value, name=name, end=end, now=NOW)
    message = str(err.value)
    assert message.startswith(f"invalid {name} {value!r}: ")
    assert "a quarter (2026-Q3)" in message and "(30d, 12h, 2w)" in message
    assert isinstance(err.value, InputError) and isinstance(err.value, ValueError)
    assert err.value.__cause__ is None  # no OverflowError/ValueError chained behind it


def test_spec_message() -> None:
    with pytest.raises(AuditFormatError, match=(
            r"^invalid --since '2026-13': there is no month 13; use a date \(2026-11-01\), "
            r"a timestamp \(2026-11-01T12:00:00Z\), a month \(2026-11\), a quarter "
            r"\(2026-Q3\), a year \(2026\), an ISO week \(2026-W45\) or a period back from "
            r"now \(30d, 12h, 2w\)$")):
        parse_bound("2026-13", name="--since")


@pytest.mark.parametrize(("value", "why"), [
    ("2026-Q5", "no quarter 5"), ("2026-13", "no month 13"), ("0d", "at least 1"),
    ("-3d", "at least 1"), ("99999999d", "outside the representable time range"),
    ("", "empty"), ("6M", "ambiguous"), ("2025-W53", "no ISO week 53"),
])
def test_errors_say_why(value: str, why: str) -> None:
    with pytest.raises(AuditFormatError, match=why):
        since(value)


@pytest.mark.parametrize("junk", [42, 3.5, b"2026", ["2026"], {"since": "2026"}, object(), True])
def test_non_text_is_an_audit_format_error(junk: object) -> None:
    with pytest.raises(AuditFormatError, match=r"^invalid --since .*not "):
        since(junk)
    with pytest.raises(AuditFormatError, match=r"^invalid --period "):
        parse_period(junk)  # type: ignore[arg-type]


def test_bounds_past_the_representable_range() -> None:
    # The since bound of the last year exists; the start of the year after it does not.
    assert since("9999") == utc(9999, 1, 1)
    assert since("9999-12-31") == utc(9999, 12, 31)
    for value in ("9999", "9999-12", "9999-Q4", "9999-12-31", "9999-W52", date(9999, 12, 31)):
        with pytest.raises(AuditFormatError, match=r"^invalid --until .*representable"):
            until(value)
        with pytest.raises(AuditFormatError, match="representable"):
            parse_period(value, now=NOW)  # type: ignore[arg-type]
    early = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))  # before year 1 in UTC
    with pytest.raises(AuditFormatError, match="representable"):
        since(early)


def test_a_timestamp_is_not_a_period() -> None:
    with pytest.raises(AuditFormatError, match=r"^invalid --period '2026-11-01T12:00Z': .*"
                       r"instant") as err:
        parse_period("2026-11-01T12:00Z")
    assert "a timestamp (" not in str(err.value)  # not offered as a period form
    with pytest.raises(AuditFormatError, match=r"^invalid --window "):
        parse_period("2026-Q9", name="--window")


# --- properties ----------------------------------------------------------------------

OPTIONS = st.sampled_from(["--since", "--until", "--period", "--from"])


@given(st.dates(max_value=date(9999, 12, 30)))
def test_any_date_is_midnight_to_midnight(d: date) -> None:
    midnight = datetime(d.year, d.month, d.day, tzinfo=UTC)
    assert parse_bound(d.isoformat(), name="--since") == midnight
    assert parse_bound(d.isoformat(), name="--until", end=True) == midnight + timedelta(days=1)
    assert parse_bound(d, name="--until", end=True) == midnight + timedelta(days=1)


@given(st.integers(1, 9999), st.integers(1, 4), st.sampled_from(["Q", "q"]))
def test_any_quarter_is_three_months(year: int, quarter: int, q: str) -> None:
    assume((year, quarter) != (9999, 4))  # its end, 10000-01-01, is not representable
    text = f"{year:04d}-{q}{quarter}"
    start = parse_bound(text, name="--since")
    end = parse_bound(text, name="--until", end=True)
    assert start is not None and end is not None
    assert start < end
    assert (end.year * 12 + end.month) - (start.year * 12 + start.month) == 3
    assert start.day == end.day == 1 and start.time() == end.time() == datetime.min.time()
    assert start.month == 3 * quarter - 2
    assert parse_period(text) == (start, end)


@given(st.integers(1, 9998), st.integers(1, 53))
def test_any_iso_week_is_seven_days_from_a_monday(year: int, week: int) -> None:
    try:
        monday = date.fromisocalendar(year, week, 1)
    except ValueError:
        with pytest.raises(AuditFormatError, match=f"no ISO week {week}"):
            parse_period(f"{year:04d}-W{week:02d}")
        return
    start, end = parse_period(f"{year:04d}-W{week:02d}")
    assert start == datetime(monday.year, monday.month, monday.day, tzinfo=UTC)
    assert end - start == timedelta(days=7) and start.weekday() == 0


OFFSETS = st.builds(lambda m: timezone(timedelta(minutes=m)), st.integers(-23 * 60, 23 * 60))
AWARE = st.datetimes(min_value=datetime(2, 1, 1), max_value=datetime(9998, 12, 31),
                     timezones=OFFSETS)


@given(st.lists(st.one_of(AWARE, st.datetimes(min_value=datetime(2, 1, 1),
                                              max_value=datetime(9998, 12, 31))),
                min_size=2, max_size=20))
def test_format_bound_sorts_like_the_datetimes(values: list[datetime]) -> None:
    as_utc = [v.replace(tzinfo=UTC) if v.tzinfo is None else v for v in values]
    by_time = sorted(as_utc)
    by_text = sorted(as_utc, key=format_bound)
    assert [format_bound(v) for v in by_time] == [format_bound(v) for v in by_text]
    for v in as_utc:
        assert len(format_bound(v)) == len("2026-11-01T12:00:00.000000Z")


@given(AWARE)
def test_timestamps_round_trip(when: datetime) -> None:
    for text in (when.isoformat(), format_bound(when)):
        assert parse_bound(text, name="--since") == when
        assert parse_bound(text, name="--until", end=True) == when


@given(st.integers(1, 100_000), st.sampled_from([
    ("m", "minutes"), ("min", "minutes"), ("minutes", "minutes"), ("h", "hours"),
    ("hours", "hours"), ("d", "days"), ("days", "days"), ("w", "weeks"), ("weeks", "weeks")]),
    st.sampled_from(["", " "]))
def test_any_amount_back_from_now(amount: int, unit: tuple[str, str], space: str) -> None:
    text = f"{amount}{space}{unit[0]}"
    expected = NOW - timedelta(**{unit[1]: amount})
    assert since(text) == until(text) == expected
    assert parse_period(text, now=NOW) == (expected, NOW)


@given(st.one_of(st.text(max_size=40), st.from_regex(r"-?\d{1,20}\s?[a-zA-Z]{1,8}",
                                                     fullmatch=True),
                 st.from_regex(r"\d{4}-[qQwW]?\d{1,3}", fullmatch=True)),
       OPTIONS, st.booleans())
def test_any_text_gives_an_aware_utc_bound_or_an_error_naming_the_option(
        text: str, name: str, end: bool) -> None:
    try:
        got = parse_bound(text, name=name, end=end, now=NOW)
    except AuditFormatError as err:
        assert str(err).startswith(f"invalid {name} ")
    else:
        assert got is not None and got.tzinfo is UTC
    try:
        start, stop = parse_period(text, name=name, now=NOW)
    except AuditFormatError as err:
        assert str(err).startswith(f"invalid {name} ")
    else:
        assert start.tzinfo is UTC and stop.tzinfo is UTC and start < stop


@given(st.one_of(st.integers(), st.floats(), st.binary(), st.lists(st.text(max_size=3)),
                 st.booleans(), st.tuples(st.integers())), OPTIONS)
def test_any_junk_type_is_an_audit_format_error(junk: object, name: str) -> None:
    with pytest.raises(AuditFormatError, match=f"^invalid {name} "):
        parse_bound(junk, name=name)  # type: ignore[arg-type]
