"""The weather-satellite change model of coarse cells, the prior it hands the radar, and flood
events that weather satellites open and radar or optical passes confirm or withdraw."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from eowatch.models import flood, flood_geo
from eowatch.solar import solar_zenith

HOUR = 3600.0


def scenes(packed, index, clear=1.0, zenith=40.0, at=0.0, sensor="goes-east"):
    n = len(packed)
    return flood_geo.step(packed, np.arange(n), np.full(n, flood_geo.sensor_code(sensor)),
                          np.full(n, index, float), np.full(n, clear, float),
                          np.full(n, zenith, float), np.full(n, at, float))


def warmed(n=1, seed=0):
    packed = flood_geo.GeoState.initial(n)
    rng = np.random.default_rng(seed)
    for k in range(flood_geo.WARMUP + 5):
        status, _ = scenes(packed, -0.4 + rng.normal(0, 0.01), at=k * HOUR)
    assert (status == flood.DRY).all()
    return packed


def test_a_rise_floods_a_coarse_cell_only_when_it_persists():
    packed = warmed()
    for hour in (100, 101, 102):                          # hours of it: maybe a cirrus
        status, share = scenes(packed, 0.0, at=hour * HOUR)
        assert status[0] == flood.DRY and share[0] == 0
    status, share = scenes(packed, 0.0, at=103 * HOUR)
    assert status[0] == flood.FLOODED
    # the index went 0.4 of the way from land (-0.4) to water (0.6): 40 % flooded
    assert abs(share[0] - 0.4) < 0.02
    status, _ = scenes(packed, -0.3, at=104 * HOUR)       # still 3 sigma above: stays
    assert status[0] == flood.FLOODED
    status, _ = scenes(packed, -0.4, at=105 * HOUR)
    assert status[0] == flood.DRY


def test_clouds_night_and_low_sun_change_nothing():
    packed = warmed()
    before = packed.copy()
    for kwargs in ({"clear": 0.3}, {"zenith": 84.0}, {"index": np.nan}):
        status, share = scenes(packed, **{"index": 0.5, **kwargs})
        assert status[0] == flood.UNSEEN and share[0] == 0
    np.testing.assert_array_equal(packed, before)


def test_each_sensor_learns_its_own_normal():
    packed = warmed()
    status, _ = scenes(packed, 0.2, sensor="dscovr-epic")  # a new sensor warms up on its own
    assert status[0] == flood.WARMING_UP
    state = flood_geo.GeoState.of(packed)
    assert sorted(state.sensor[0][state.sensor[0] > 0]) == [
        flood_geo.sensor_code("goes-east") + 1, flood_geo.sensor_code("dscovr-epic") + 1]


def test_a_flooded_coarse_cell_raises_the_radar_prior_for_a_while():
    packed = warmed(3)
    scenes(packed, 0.1, at=200 * HOUR)
    scenes(packed, 0.1, at=203 * HOUR)                    # all three flooded, share 0.5
    rows = np.vstack([packed[:2], np.full((1, flood.STATE_WIDTH), np.nan)])  # 3rd: no coarse
    prior = flood_geo.prior(rows[:, flood_geo.PRIOR_COLUMNS],
                            np.array([210 * HOUR, 400 * HOUR, 210 * HOUR]))
    assert abs(prior[0] - 0.5) < 1e-9 or prior[0] > 0.5
    assert prior[0] == max(0.5, packed[0, flood_geo.FRACTION])
    assert prior[1] == flood.PRIOR and prior[2] == flood.PRIOR  # too old; no coarse cell


def radar_cell(prior):
    """A variable field (VV -12 ± 2 dB) whose VV drops to -18.5 dB, its VH less: as likely
    water as land under the uninformed prior."""
    state = flood.FloodState.empty(1)
    for vv in (-10.0, -14.0, -10.0, -14.0, -10.0, -14.0, -12.0):
        flood.step(state, np.array([0]), 1, np.array([vv]), np.array([vv - 6]))
    return flood.step(state, np.array([0]), 1, np.array([-18.5]), np.array([-20.5]),
                      prior=np.array([prior]))


def test_the_prior_tips_a_marginal_radar_cell():
    plain, informed = radar_cell(flood.PRIOR), radar_cell(0.95)
    assert plain[0][0] == flood.DRY and informed[0][0] == flood.FLOODED
    assert informed[1][0] > plain[1][0]


def verdict(event, at, flooded, evidence, km2=1.0):
    status = np.array([flood.FLOODED if flooded else flood.DRY, flood.DRY])
    return flood.observe_area(event, "a", at, status, np.array([0.9, 0.1]),
                              np.array([km2, km2]), evidence=evidence,
                              share=np.array([0.5, 0.0])
                              if evidence == flood.GEOSTATIONARY else None)


def test_a_weather_satellite_event_waits_for_radar_to_confirm_it():
    event = np.zeros(flood.EVENT_WIDTH)
    opened = verdict(event, 10 * HOUR, True, flood.GEOSTATIONARY)
    assert opened["kind"] == "flood.opened" and not opened["confirmed"]
    assert opened["evidence"] == "geostationary" and opened["flooded_km2"] == 0.5
    assert verdict(event, 9 * HOUR, False, flood.RADAR) is None  # a pass older than the event
    confirmed = verdict(event, 30 * HOUR, True, flood.RADAR)
    assert confirmed["kind"] == "flood.confirmed" and confirmed["confirmed"]
    assert confirmed["event_id"] == opened["event_id"]
    assert confirmed["seen_by"] == ["radar", "geostationary"]
    # confirmed: weather satellites neither update nor close it any more
    assert verdict(event, 31 * HOUR, False, flood.GEOSTATIONARY) is None
    assert verdict(event, 32 * HOUR, False, flood.GEOSTATIONARY) is None
    assert event[flood.OPEN]
    assert verdict(event, 100 * HOUR, False, flood.RADAR) is None
    closed = verdict(event, 200 * HOUR, False, flood.RADAR)
    assert closed["kind"] == "flood.closed" and closed["event_id"] == opened["event_id"]


def test_a_radar_pass_that_sees_no_water_withdraws_it():
    event = np.zeros(flood.EVENT_WIDTH)
    opened = verdict(event, 10 * HOUR, True, flood.GEOSTATIONARY)
    withdrawn = verdict(event, 20 * HOUR, False, flood.OPTICAL)
    assert withdrawn["kind"] == "flood.withdrawn" and not withdrawn["confirmed"]
    assert withdrawn["event_id"] == opened["event_id"] and not event[flood.OPEN]


def test_weather_satellites_withdraw_what_they_opened_and_no_one_confirmed():
    event = np.zeros(flood.EVENT_WIDTH)
    verdict(event, 10 * HOUR, True, flood.GEOSTATIONARY)
    assert verdict(event, 11 * HOUR, False, flood.GEOSTATIONARY) is None
    assert verdict(event, 12 * HOUR, False, flood.GEOSTATIONARY)["kind"] == "flood.withdrawn"


def test_each_kind_of_evidence_counts_once_in_its_own_order():
    event = np.zeros(flood.EVENT_WIDTH)
    verdict(event, 50 * HOUR, False, flood.GEOSTATIONARY)
    # radar from before the last weather-satellite scene is still news: S1 arrives hours late
    assert not flood.already_seen(event, flood.RADAR, 40 * HOUR)
    assert flood.already_seen(event, flood.GEOSTATIONARY, 50 * HOUR)
    verdict(event, 40 * HOUR, False, flood.RADAR)
    assert flood.already_seen(event, flood.RADAR, 40 * HOUR)


def test_solar_zenith():
    # the June solstice: the sun overhead on the tropic of Cancer at about solar noon
    assert solar_zenith(0.0, 23.44, datetime(2025, 6, 21, 12, 2, tzinfo=UTC)) < 0.6
    # the equinox at noon on the equator, and midnight in Rennes in December
    assert solar_zenith(0.0, 0.0, datetime(2025, 3, 20, 12, 7, tzinfo=UTC)) < 0.6
    assert solar_zenith(-1.68, 48.11, datetime(2025, 12, 21, 0, 0, tzinfo=UTC)) > 150
    lat = np.array([0.0, 45.0, 89.0])
    noon = solar_zenith(0.0, lat, datetime(2025, 3, 20, 12, 7, tzinfo=UTC))
    np.testing.assert_allclose(noon, lat, atol=0.6)
