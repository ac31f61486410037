"""Time bounds of the transfer-audit report: ``--since``, ``--until`` and ``--period``.

A bound is one of:

- an instant: an ISO 8601 timestamp (``2026-11-01T12:00:00Z``, ``2026-11-01T12:00+01:00``,
  ``2026-11-01 12:00``; naive means UTC), or a period back from now (``30d``, ``12h``,
  ``90m``, ``2w``, ``30 days``, ``2 weeks``): the same instant for since and until;
- a calendar period: a day (``2026-11-01``), a month (``2026-11``), a quarter
  (``2026-Q3``), a year (``2026``), an ISO week (``2026-W45``), ``today`` or
  ``yesterday``. As a since bound it is the period's first instant; as an until bound
  it is the first instant of the NEXT period, because the report's window is half-open
  (``[since, until)``): ``--until 2026-11-30`` then includes all of 30 November, which is
  what a person typing it means.

Everything is UTC: the audit log stores UTC times, so no local zone or daylight-saving
rule can shift a window. :func:`format_bound` writes a bound in the log's stored form,
whose string order is time order (the report compares the stored strings directly).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal

from residency_sdk.errors import AuditFormatError

__all__ = ["ACCEPTED_FORMS", "PERIOD_FORMS", "format_bound", "parse_bound", "parse_period"]

ACCEPTED_FORMS = (
    "a date (2026-11-01), a timestamp (2026-11-01T12:00:00Z), a month (2026-11), "
    "a quarter (2026-Q3), a year (2026), an ISO week (2026-W45) or a period back from "
    "now (30d, 12h, 2w)"
)
"""The forms a ``--since``/``--until`` error lists, with an example of each."""
PERIOD_FORMS = (
    "a date (2026-11-01), a month (2026-11), a quarter (2026-Q3), a year (2026), an ISO "
    "week (2026-W45), today, yesterday or a period back from now (30d, 12h, 2w)"
)
"""The forms a ``--period`` error lists (a single timestamp is not a period)."""

_YEAR = re.compile(r"(\d{4})")
_MONTH = re.compile(r"(\d{4})-(\d{1,2})")
_QUARTER = re.compile(r"(\d{4})-?q(\d+)")
_WEEK = re.compile(r"(\d{4})-?w(\d{1,2})")
# A signed amount is matched so that "-3d" and "0d" get a message about the amount rather
# than the generic one; "ago" is allowed because "30 days ago" is what people type.
_RELATIVE = re.compile(r"([+-]?\d+)\s*([a-z]+)(?:\s+ago)?")
_UNITS: dict[str, str] = {
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), "minutes"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "hours"),
    **dict.fromkeys(("d", "day", "days"), "days"),
    **dict.fromkeys(("w", "wk", "wks", "week", "weeks"), "weeks"),
}
_MAX_DIGITS = 15  # beyond any representable span; also keeps int() far from its limit
_TIME_SEPARATORS = re.compile(r"[T ]", re.IGNORECASE)

Kind = Literal["instant", "calendar", "relative"]


@dataclass(frozen=True, slots=True)
class _Parsed:
    """What a value means: its ``start`` and, for a period, how to compute its end.

    ``instant``: a point in time (``end`` is None). ``calendar``: a calendar period
    ``[start, end())``. ``relative``: a span back from now, ``[now - amount, now)``; as a
    bound it is the instant ``start``. The end is computed only when asked for, so that
    ``--since 9999`` works although the year after 9999 cannot be represented.
    """

    kind: Kind
    start: datetime
    end: Callable[[], datetime] | None = None


class _Invalid(Exception):
    """Raised inside the parser with the specific reason; turned into an
    :class:`AuditFormatError` naming the option by the public functions."""


def parse_bound(value: str | datetime | date | None, *, name: str, end: bool = False,
                now: datetime | None = None) -> datetime | None:
    """``value`` as a timezone-aware UTC bound of a report window, or None for None.

    ``name`` is the option shown in error messages (``--since``). ``end=False`` makes a
    since bound (a calendar period's first instant), ``end=True`` an until bound (the
    first instant of the next period, the window being half-open). Timestamps and
    periods back from ``now`` (default: the current time) are instants, the same either
    way. A ``date`` object is its calendar day; a naive ``datetime`` is UTC.

    Raises :class:`AuditFormatError` naming ``name`` and the value, listing the accepted
    forms, for anything else (including a bound outside the representable range).
    """
    if value is None:
        return None
    kind, start, stop = _resolve(value, name=name, now=now, want_end=end)
    return stop if kind == "calendar" and end else start


def parse_period(value: str, *, name: str = "--period",
                 now: datetime | None = None) -> tuple[datetime, datetime]:
    """The window ``[since, until)`` that ``value`` names, as timezone-aware UTC datetimes.

    A calendar period (``2026-11-01``, ``2026-11``, ``2026-Q3``, ``2026``, ``2026-W45``,
    ``today``, ``yesterday``) gives its first instant and the first instant of the next
    period; a period back from now (``30d``) gives ``(now - 30 days, now)``. A single
    timestamp is not a period and is refused, like anything else that does not parse,
    with an :class:`AuditFormatError` naming ``name``.
    """
    kind, start, stop = _resolve(value, name=name, now=now, want_end=True,
                                 forms=PERIOD_FORMS)
    if kind == "instant" or stop is None:
        raise _error(name, value, "a timestamp is an instant, not a period "
                     "(give it as a --since or --until bound instead)", PERIOD_FORMS)
    return start, stop


def format_bound(when: datetime) -> str:
    """``when`` in UTC as ``YYYY-MM-DDTHH:MM:SS.ffffffZ`` (naive means UTC).

    This is the audit log's stored time form, so the report compares a bound with stored
    times as strings. Formatted field by field rather than with ``strftime``, whose
    ``%Y`` does not zero-pad years before 1000 on every platform: the padding is what
    makes string order equal time order.
    """
    when = _utc(when)
    return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:"
            f"{when.minute:02d}:{when.second:02d}.{when.microsecond:06d}Z")


# --- parsing ------------------------------------------------------------------------


def _resolve(value: object, *, name: str, now: datetime | None, want_end: bool,
             forms: str = ACCEPTED_FORMS) -> tuple[Kind, datetime, datetime | None]:
    """``(kind, start, end)`` of ``value`` (``end`` only when wanted and there is one).

    Every failure, including arithmetic past year 9999 or before year 1, becomes one
    :class:`AuditFormatError`: callers (the CLI) catch that type, never OverflowError.
    """
    try:
        parsed = _parse(value, now)
        stop = parsed.end() if want_end and parsed.end is not None else None
    except _Invalid as exc:
        raise _error(name, value, str(exc), forms) from None
    except (OverflowError, ValueError):
        raise _error(name, value, "it lies outside the representable time range "
                     "(years 1 to 9999)", forms) from None
    return parsed.kind, parsed.start, stop


def _parse(value: object, now: datetime | None) -> _Parsed:
    """What ``value`` (any object a caller may pass) means, or :class:`_Invalid`."""
    if isinstance(value, datetime):  # before date: a datetime is also a date
        return _Parsed("instant", _utc(value))
    if isinstance(value, date):
        return _day(value)
    if isinstance(value, str):
        return _parse_text(value, now)
    raise _Invalid(f"expected text, a date or a datetime, not {type(value).__name__}")


def _parse_text(value: str, now: datetime | None) -> _Parsed:
    """Parse one string form (calendar forms first: ``date.fromisoformat`` would read an
    ISO week ``2026-W45`` as its Monday, a day, not the week)."""
    text = value.strip()
    if not text:
        raise _Invalid("it is empty")
    low = text.lower()
    if low in ("today", "yesterday"):
        today = _utc(now if now is not None else datetime.now(UTC)).date()
        return _day(today if low == "today" else today - timedelta(days=1))
    if m := _YEAR.fullmatch(low):
        year = int(m[1])
        return _Parsed("calendar", _midnight(date(year, 1, 1)),
                       lambda: _midnight(date(year + 1, 1, 1)))
    if m := _MONTH.fullmatch(low):
        year, month = int(m[1]), int(m[2])
        if not 1 <= month <= 12:
            raise _Invalid(f"there is no month {month}")
        return _months(year, month, 1)
    if m := _QUARTER.fullmatch(low):
        year, quarter = int(m[1]), int(m[2])
        if not 1 <= quarter <= 4:
            raise _Invalid(f"there is no quarter {quarter} (Q1 to Q4)")
        return _months(year, 3 * quarter - 2, 3)
    if m := _WEEK.fullmatch(low):
        year, week = int(m[1]), int(m[2])
        try:
            monday = date.fromisocalendar(year, week, 1)
        except ValueError:
            raise _Invalid(f"{year} has no ISO week {week}") from None
        return _Parsed("calendar", _midnight(monday),
                       lambda: _midnight(monday + timedelta(weeks=1)))
    if m := _RELATIVE.fullmatch(low):
        return _relative(text, m[1], m[2], now)
    if not _TIME_SEPARATORS.search(text):
        # No time part: a calendar day (2026-11-01, 20261101, 2026-W45-3) or nothing.
        try:
            return _day(date.fromisoformat(text))
        except ValueError:
            raise _Invalid("it is not a date, timestamp or period") from None
    try:
        # Upper-cased so that a lower-case "t" or "z" is read like "T" and "Z".
        return _Parsed("instant", _utc(datetime.fromisoformat(text.upper())))
    except ValueError:
        looks_iso = _YEAR.match(text) is not None
        raise _Invalid("it is not a valid ISO 8601 timestamp" if looks_iso
                       else "it is not a date, timestamp or period") from None


def _relative(text: str, digits: str, unit: str, now: datetime | None) -> _Parsed:
    """A span back from ``now``: ``[now - amount, now)``."""
    if unit not in _UNITS:
        raise _Invalid(f"unknown unit {unit!r} (use m, h, d or w)")
    if unit == "m" and "M" in text:
        # An upper-case M reads as "months" to many people; minutes would silently give
        # an almost empty report, so make them say which they mean.
        raise _Invalid("M is ambiguous: write m or minutes for minutes, or name the "
                       "month (2026-11)")
    if len(digits.lstrip("+-")) > _MAX_DIGITS:
        raise OverflowError(digits)  # reported as out of range, like any other overflow
    amount = int(digits)
    if amount <= 0:
        raise _Invalid("the amount back from now must be at least 1")
    current = _utc(now if now is not None else datetime.now(UTC))
    return _Parsed("relative", current - timedelta(**{_UNITS[unit]: amount}),
                   lambda: current)


def _months(year: int, month: int, count: int) -> _Parsed:
    """The calendar period of ``count`` months from ``year``-``month``."""
    after = month - 1 + count
    return _Parsed("calendar", _midnight(date(year, month, 1)),
                   lambda: _midnight(date(year + after // 12, after % 12 + 1, 1)))


def _day(day: date) -> _Parsed:
    """The calendar day ``day``, midnight to midnight UTC."""
    return _Parsed("calendar", _midnight(day), lambda: _midnight(day + timedelta(days=1)))


def _midnight(day: date) -> datetime:
    """The first instant of ``day`` in UTC."""
    return datetime.combine(day, time(), tzinfo=UTC)


def _utc(when: datetime) -> datetime:
    """``when`` as an aware UTC datetime (naive means UTC: the log's own zone)."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _error(name: str, value: object, reason: str,
           forms: str = ACCEPTED_FORMS) -> AuditFormatError:
    """The one error every bad value gets: option, value, why, and what would do."""
    shown = repr(value)
    if len(shown) > 60:  # junk can be long; the start is enough to recognise it
        shown = shown[:57] + "..."
    return AuditFormatError(f"invalid {name} {shown}: {reason}; use {forms}")
