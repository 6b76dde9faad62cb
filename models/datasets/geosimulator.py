"""A seeded simulator of weather-satellite scenes over the floodplains of s1simulator: per coarse
cell (2 km) the water index of its clear pixels, the clear share and the solar zenith angle, with
the same floods.

Each 40 m cell's land cover has a water index ``(red − SWIR) / (red + SWIR)``: open water about
+0.6, crops from −0.2 (bare, winter) to −0.5 (full canopy, summer), grass −0.45, forest −0.55,
towns −0.15, sand −0.1 (typical values of the red/SWIR contrast of these covers). A flooded share
of a cell mixes its index with water's linearly; a coarse cell's index is the mean of the 40 m
cells under it, plus radiometric noise and a bias that grows as the sun gets low.

Clouds are what make optical sensors slow, so they are modelled with care:
- a daily cloudiness with the climate of Brittany (overcast about two days in three), correlated
  from day to day, varying from hour to hour; each coarse cell's clear share scatters around
  the area's;
- floods come with rain: from two days before a flood to two days into it, skies are mostly
  overcast, as in real river floods (the first clear scene often comes days after the onset);
- cloud edges contaminate the clear pixels of a partly cloudy cell (bright cloud raises a
  red/SWIR index), more the cloudier the cell;
- on some days, thin cirrus that the cloud mask misses raises the index of every cell for a few
  hours: the weather satellites' false alarm.
Scenes come every ``interval_minutes`` while the sun is above the horizon (solar zenith up to
85°; the feeds publish nothing at night). This is simulated data and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np

from eowatch.solar import solar_zenith

from .s1simulator import COVER_NAMES, AreaSimulator

COVER_INDEX = {"water": 0.6, "crops": -0.35, "grass": -0.45, "forest": -0.55, "urban": -0.15,
               "sand": -0.1}
CROPS_AMPLITUDE = 0.15   # crops: -0.2 in winter, -0.5 at the summer peak (day 200)
WATER = 0.6
NOISE = 0.015            # radiometric noise of a coarse cell's mean index
LOW_SUN_BIAS = 0.04      # bias of the index at 85° solar zenith (shading, BRDF)
CLOUDINESS = 0.65        # mean share of the sky overcast (Brittany)
RAIN_BEFORE, RAIN_INTO = 2.0, 1.0   # days of rain around a flood's onset
CIRRUS_DAYS = 0.04       # share of days with an undetected cirrus episode
CIRRUS_RISE = (0.05, 0.2)
NIGHT_ZENITH = 85.0


@dataclass(frozen=True)
class GeoScene:
    at: datetime
    index: np.ndarray         # [coarse cells] water index of the clear pixels (NaN: none)
    clear: np.ndarray         # [coarse cells] clear share
    solar_zenith: float
    flooded_share: np.ndarray  # [coarse cells] the truth: share of the cell's 40 m cells flooded


@dataclass
class GeoSimulator:
    """Scenes of one simulated area: its 40 m cells' coarse cell (``coarse``: flat index per 40 m
    cell, row by row) and where it lies (``lon``, ``lat``)."""

    area: AreaSimulator
    coarse: np.ndarray
    lon: float
    lat: float
    start: datetime           # day 0 of the area simulator
    interval_minutes: float = 60.0
    seed: int = 0
    cells: int = field(init=False)

    def __post_init__(self) -> None:
        self.cells = int(self.coarse.max()) + 1
        self._per_cell = np.bincount(self.coarse, minlength=self.cells).astype(float)

    def _mean(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.coarse, values, minlength=self.cells) / self._per_cell

    def times(self, since: datetime, until: datetime) -> list[datetime]:
        """Scene times from ``since`` (exclusive) to ``until`` with the sun up."""
        step = timedelta(minutes=self.interval_minutes)
        t = self.start + step * (int((since - self.start) / step) + 1)
        found = []
        while t <= until:
            if solar_zenith(self.lon, self.lat, t) <= NIGHT_ZENITH:
                found.append(t)
            t += step
        return found

    def cloudiness(self, day: float) -> float:
        """The area's overcast share on ``day`` (before the hour's variation)."""
        days = np.arange(int(day) - 3, int(day) + 1)
        draws = [np.random.default_rng([self.seed, 7, int(d) % 100_000]).beta(2.0, 1.1)
                 for d in days]
        mean = float(np.average(draws, weights=[0.1, 0.2, 0.3, 1.0]))  # yesterday's clouds
        for flood in self.area.floods:
            if flood.start_day - RAIN_BEFORE <= day <= flood.start_day + RAIN_INTO:
                mean = max(mean, 0.9)
        return min(1.0, mean * CLOUDINESS / 0.65)

    def scene(self, at: datetime) -> GeoScene:
        day = (at - self.start) / timedelta(days=1)
        rng = np.random.default_rng([self.seed, int(at.timestamp()) // 60])
        cover = self.area.cover
        index = np.array([COVER_INDEX[name] for name in COVER_NAMES])[cover]
        crops = cover == COVER_NAMES.index("crops")
        index[crops] -= CROPS_AMPLITUDE * np.cos(2 * np.pi * (day - 200) / 365)
        share = self.area.flood_fraction(day)
        index = share * WATER + (1 - share) * index
        zenith = float(solar_zenith(self.lon, self.lat, at))
        truth = self._mean(self.area.flooded(day).astype(float))
        observed = self._mean(index) + rng.normal(0, NOISE, self.cells)
        observed += LOW_SUN_BIAS * (zenith / NIGHT_ZENITH) ** 4
        hourly = np.clip(self.cloudiness(day) + rng.normal(0, 0.1), 0, 1)
        clear = np.clip(1 - hourly + rng.normal(0, 0.15, self.cells), 0, 1)
        observed += rng.uniform(0, 0.25, self.cells) * (1 - clear) * (clear > 0)
        weather = np.random.default_rng([self.seed, 11, int(day)])
        if weather.random() < CIRRUS_DAYS:   # an episode of a few hours, at a time of its own
            begins, hours = weather.uniform(6, 16), weather.uniform(1, 4)
            hour = at.hour + at.minute / 60
            if begins <= hour <= begins + hours:
                observed += weather.uniform(*CIRRUS_RISE)
        observed[clear <= 0] = np.nan
        return GeoScene(at, observed, clear, zenith, truth)


def start_of(year: int) -> datetime:
    return datetime(year, 1, 1, tzinfo=UTC)
