"""Seasons: a season starts every year on a calendar day, written MM-DD.

Shared by training (the artifact records the season its model was trained on), the settings, the
parcel import and the daemon, so that every place accepts the same days and counts the same way.
02-29 is a valid start: in a year without it the season starts on 03-01, the day after 02-28.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import EowatchError

PATTERN = re.compile(r"(\d{2})-(\d{2})")
DAYS_IN_MONTH = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)  # a leap year's


class SeasonStartError(EowatchError, ValueError):
    """A season start that is not a calendar day written MM-DD."""


def parse_season_start(text: str) -> tuple[int, int]:
    """"MM-DD" -> (month, day); raises SeasonStartError naming what is wrong."""
    found = PATTERN.fullmatch(text.strip()) if isinstance(text, str) else None
    if found is None:
        raise SeasonStartError(f"season start {text!r} is not MM-DD (e.g. 01-01, 09-15)")
    month, day = int(found[1]), int(found[2])
    if not 1 <= month <= 12:
        raise SeasonStartError(f"season start {text!r}: month {month} is not 01-12")
    if not 1 <= day <= DAYS_IN_MONTH[month - 1]:
        raise SeasonStartError(f"season start {text!r}: month {month:02d} has no day {day}")
    return month, day


def check_season_start(text: str | None) -> str | None:
    """The season start in its canonical form (None stays None); raises SeasonStartError."""
    if text is None:
        return None
    month, day = parse_season_start(text)
    return f"{month:02d}-{day:02d}"


def season_begin(season: int, start: str) -> datetime:
    """UTC midnight of the season that begins in calendar year ``season`` on ``start``."""
    month, day = parse_season_start(start)
    if (month, day) == (2, 29) and not _leap(season):
        month, day = 3, 1
    return datetime(season, month, day, tzinfo=UTC)


def season_of(acquired_at: datetime, start: str) -> tuple[int, float]:
    """(season label = calendar year the season starts in, day of season as float)."""
    season = acquired_at.year
    begin = season_begin(season, start)
    if acquired_at < begin:
        season -= 1
        begin = season_begin(season, start)
    return season, (acquired_at - begin) / timedelta(days=1)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
