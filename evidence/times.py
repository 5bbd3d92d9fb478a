"""Times given by people, feeds and devices: read without ever overflowing, and judged for plausibility.

Python's ``datetime`` holds the years 1 to 9999. A time at either end with an offset has a UTC
equivalent outside that range (``0001-01-01T00:00:00+01:00`` is an hour before the year 1 began), and
``astimezone`` or adding a tolerance then raises ``OverflowError``, which once turned a single hostile
feed row or a ``--since`` into a traceback. So:

- ``in_utc`` converts to UTC and pins a time whose UTC equivalent is past either end to that end. The
  difference is at most a day, at the edges of the calendar, where no evidence can be. For a query
  bound it is what the person meant: ``--since 0001-01-01T00:00:00+01:00`` is "from the beginning".
- ``earlier`` and ``later`` shift a time and stop at the ends, so a matching window that would reach
  past the end of the calendar simply includes everything up to it: the membership test is exact.
- Anything recorded as a fact about evidence (a feed's incident window, a case's closure) must first
  pass ``require_plausible``: not before ``DEVICE_ERA_START`` and not after now plus ``CLOCK_SKEW``.
  A pinned time fails that test, so pinning never puts a wrong date into a chain.

Times without an offset are taken as UTC everywhere (devices and records systems often give none;
``docs/retention.md``).
"""

from __future__ import annotations

from datetime import MINYEAR, UTC, datetime, timedelta
from typing import Any

from evidence.errors import InvalidInput

EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)

DEVICE_ERA_START = datetime(2000, 1, 1, tzinfo=UTC)
"""No evidence this system holds was recorded before this, nor was a case it serves closed: digital
body-worn video and scene photography came later. An earlier date is a typing mistake (a wrong year)
or a reset clock (``0001-01-01``), and would make retention count from a date decades gone, so that
evidence closed "in 1926" would come up for disposal at once."""

CLOCK_SKEW = timedelta(days=1)
"""How far after this machine's clock a recorded time may be. Times without an offset are taken as
UTC, so a records system or a person east of UTC that gives local time without one reads up to 14
hours ahead; a day covers every zone and a drifting clock. It still refuses the mistakes that matter
(a wrong year or month), and a closure up to a day late only keeps evidence longer, never shorter."""

MAX_TIME_TEXT = 40
"""Longer text is not a time a person or an export gives; refused before it is parsed."""


def in_utc(moment: datetime) -> datetime:
    """``moment`` in UTC (no zone: taken as UTC); past either end of the calendar: that end."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        # only a time within a day of year 1 or year 9999 can overflow, towards its own end
        return EARLIEST if moment.year == MINYEAR else LATEST


def earlier(moment: datetime, by: timedelta) -> datetime:
    """``moment - by``, stopping at the ends of the calendar (``moment`` is aware)."""
    try:
        return moment - by
    except OverflowError:
        return EARLIEST if by > timedelta(0) else LATEST


def later(moment: datetime, by: timedelta) -> datetime:
    """``moment + by``, stopping at the ends of the calendar (``moment`` is aware)."""
    try:
        return moment + by
    except OverflowError:
        return LATEST if by > timedelta(0) else EARLIEST


def parse_time(value: Any, what: str) -> datetime:
    """ISO 8601 text as an aware UTC time (no offset: UTC; past the calendar's ends: pinned, see
    ``in_utc``). ``what`` names the field or option in the one-line refusal."""
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be text, not {type(value).__name__}")
    text = value.strip()
    if len(text) > MAX_TIME_TEXT:
        raise InvalidInput(f"{what} is not an ISO 8601 time")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidInput(f"{what} {text!r} is not an ISO 8601 time (e.g. 2026-03-14T20:05:00Z)") from None
    return in_utc(parsed)


def require_plausible(moment: datetime, what: str, *, now: datetime | None = None) -> datetime:
    """``moment`` in UTC if it can be a time at which evidence was recorded or a case closed: not before
    ``DEVICE_ERA_START``, not after ``now`` (default: this machine's clock) plus ``CLOCK_SKEW``.
    Otherwise ``InvalidInput`` naming ``what`` and the time."""
    moment = in_utc(moment)
    shown = moment.isoformat(timespec="seconds")
    if moment < DEVICE_ERA_START:
        raise InvalidInput(
            f"{what} {shown} is before {DEVICE_ERA_START:%Y-%m-%d}, earlier than any evidence this "
            "system holds: check the year"
        )
    clock = in_utc(now or datetime.now(UTC))
    if moment > later(clock, CLOCK_SKEW):
        raise InvalidInput(
            f"{what} {shown} is in the future (this machine's clock says "
            f"{clock.isoformat(timespec='seconds')}): check the date; a time without an offset is UTC"
        )
    return moment
