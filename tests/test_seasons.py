from datetime import UTC, datetime

import pytest

from eowatch.seasons import SeasonStartError, check_season_start, season_begin, season_of


def test_season_of_respects_the_season_start():
    assert season_of(datetime(2026, 3, 1, tzinfo=UTC), "01-01") == (2026, 59.0)
    season, day = season_of(datetime(2026, 3, 1, tzinfo=UTC), "09-01")
    assert season == 2025 and day == 181.0


@pytest.mark.parametrize("text", ["13-01", "2024-03-01", "02-30", "04-31", "1-1", "", "00-10",
                                  "03-00", "0x-01", " 03-01x"])
def test_a_season_start_that_is_no_calendar_day_is_refused(text):
    with pytest.raises(SeasonStartError, match="season start"):
        check_season_start(text)


def test_february_29_starts_on_march_1_in_other_years():
    assert check_season_start("02-29") == "02-29"
    assert season_begin(2028, "02-29") == datetime(2028, 2, 29, tzinfo=UTC)
    assert season_begin(2026, "02-29") == datetime(2026, 3, 1, tzinfo=UTC)
    assert season_of(datetime(2026, 2, 28, 12, tzinfo=UTC), "02-29") == (2025, 364.5)
    assert season_of(datetime(2026, 3, 1, tzinfo=UTC), "02-29") == (2026, 0.0)
