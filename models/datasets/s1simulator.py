"""A seeded simulator of Sentinel-1 backscatter per cell of an area, with floods of known extent.

An area is a grid of cells (40 m by default) holding a river, its floodplain of crops and
grassland, forest, a town and a patch of sand or tarmac. Each land cover has a mean VV and VH
backscatter in dB with a seasonal cycle (crops: growth raises VV by a few dB over the summer),
taken from the ranges the literature reports for C-band (open water −20 to −25 dB VV, crops and
grass −15 to −8, forest −8 to −6, urban above −5, sand and tarmac water-like all year).

Acquisitions come from several relative orbits, each every 12 days (one satellite), at its own
incidence angle, which shifts land backscatter by its own offset. Speckle: a cell's value is
the mean of its pixels' intensities, each gamma distributed with the equivalent number of looks
of IW GRDH (4.4), so the cell's is gamma with ENL = 4.4 × pixels per cell.

What makes it hard, as on real scenes: wind roughens water on some dates (its VV rises by up to
6 dB, towards that of bare fields); rain wets the soil, brightening fields by 1-3 dB on some
dates; wet snow in winter absorbs, darkening every land cover by 3-6 dB over the whole area
(the classic false alarm of SAR flood mapping); speckle is spatially correlated, so a cell has
half the looks its pixel count suggests; and cells at a flood's edge are partly flooded, their
power a mix of water and land (the truth calls a cell flooded when at least half of it is).

Floods: a flood covers the floodplain cells within a distance of the river that rises and
falls over its duration; flooded open land takes open water's backscatter. Flooded forest and
town are not changed (radar does not see water under canopy or between buildings, which is why
the flood model excludes such cells). This is simulated data and says so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

ENL_PIXEL = 4.4        # equivalent number of looks of an IW GRDH pixel (ESA, S-1 user guide)
SPECKLE_CORRELATION = 0.5  # neighbouring pixels' speckle is correlated: looks per pixel halve
WIND_DAYS = 0.2        # share of acquisitions with wind-roughened water
RAIN_DAYS = 0.15       # share of acquisitions after rain (wet soil)
SNOW_DAYS = 0.3        # share of winter acquisitions (mid-December to mid-February) with wet snow
REVISIT_DAYS = 12      # one satellite's repeat cycle
SEASON_DAYS = 365

# land cover -> (VV dB, VH dB, seasonal amplitude dB of VV, day of the seasonal peak)
COVERS: dict[str, tuple[float, float, float, float]] = {
    "water": (-22.0, -28.0, 1.0, 30.0),      # wind roughens it in winter
    "crops": (-12.5, -18.5, 3.0, 200.0),     # growth raises the volume scattering
    "grass": (-11.0, -17.5, 1.5, 150.0),
    "forest": (-7.0, -12.5, 0.5, 180.0),
    "urban": (-3.0, -10.0, 0.3, 180.0),
    "sand": (-21.0, -27.0, 0.5, 200.0),      # dry sand and tarmac: water-like all year
}
COVER_NAMES = tuple(COVERS)


@dataclass(frozen=True)
class Flood:
    start_day: float
    duration_days: float
    reach_cells: float        # the largest distance from the river it reaches, in cells


@dataclass(frozen=True)
class Acquisition:
    day: float
    orbit: int                # relative orbit
    vv_db: np.ndarray         # [cells]
    vh_db: np.ndarray         # [cells]
    incidence: float          # degrees
    flooded: np.ndarray       # [cells] bool: the truth


@dataclass
class AreaSimulator:
    """One area of ``rows`` × ``cols`` cells, observed from ``orbits`` relative orbits."""

    rows: int = 60
    cols: int = 80
    pixels_per_cell: int = 16          # 40 m cells of 10 m pixels
    orbits: tuple[int, ...] = (15, 88, 117)
    floods: tuple[Flood, ...] = ()
    seed: int = 0
    cover: np.ndarray = field(init=False)
    distance: np.ndarray = field(init=False)    # [cells] cells from the river

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        r, c = np.mgrid[0:self.rows, 0:self.cols]
        river = self.rows / 2 + 4 * np.sin(c / 9.0 + rng.uniform(0, 6))  # a meandering river
        self.distance = np.abs(r - river).ravel()
        cover = np.full(self.rows * self.cols, COVER_NAMES.index("crops"))
        grass = rng.random(cover.size) < 0.35
        cover[grass] = COVER_NAMES.index("grass")
        far = self.distance > self.rows * 0.35
        cover[far & (c.ravel() < self.cols * 0.3)] = COVER_NAMES.index("forest")
        town = (c.ravel() > self.cols * 0.75) & (r.ravel() < self.rows * 0.2)
        cover[town] = COVER_NAMES.index("urban")
        sand = (c.ravel() > self.cols * 0.4) & (c.ravel() < self.cols * 0.47) & (
            r.ravel() > self.rows * 0.85)
        cover[sand] = COVER_NAMES.index("sand")
        cover[self.distance < 1.5] = COVER_NAMES.index("water")
        self.cover = cover
        self._cell_offset = rng.normal(0, 1.0, cover.size)  # field-to-field differences
        self._orbit_offset = {o: rng.normal(0, 0.8) for o in self.orbits}
        self._incidence = {o: 31.0 + 12.0 * k / max(1, len(self.orbits) - 1)
                           for k, o in enumerate(self.orbits)}

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    def flood_fraction(self, day: float) -> np.ndarray:
        """Share of each cell under flood water on ``day`` (open land only: see the module's
        docstring); partial along the flood's edge."""
        out = np.zeros(self.cells)
        open_land = np.isin(self.cover, [COVER_NAMES.index("crops"), COVER_NAMES.index("grass")])
        for flood in self.floods:
            t = (day - flood.start_day) / flood.duration_days
            if 0 <= t <= 1:
                reach = flood.reach_cells * np.sin(np.pi * min(1.0, 0.15 + t)) ** 0.5
                share = np.clip(reach + 0.5 - self.distance, 0.0, 1.0)
                out = np.maximum(out, np.where(open_land, share, 0.0))
        return out

    def flooded(self, day: float) -> np.ndarray:
        """The truth: cells at least half under flood water on ``day``."""
        return self.flood_fraction(day) >= 0.5

    def schedule(self, days: float = SEASON_DAYS, start_day: float = 0.0
                 ) -> list[tuple[float, int]]:
        """(day, orbit) of every acquisition, in time order: each orbit every 12 days."""
        between = REVISIT_DAYS / len(self.orbits)  # the orbits' passes interleave
        passes = [(start_day + i * between + j * REVISIT_DAYS, orbit)
                  for i, orbit in enumerate(self.orbits)
                  for j in range(int(days // REVISIT_DAYS) + 1)]
        return sorted((d, o) for d, o in passes if d < start_day + days)

    def acquire(self, day: float, orbit: int) -> Acquisition:
        """One acquisition, drawn from its own generator: (seed, day, orbit) -> numbers."""
        rng = np.random.default_rng([self.seed, int(day * 10), orbit])
        vv_mean, vh_mean = np.empty(self.cells), np.empty(self.cells)
        for k, (vv, vh, amplitude, peak) in enumerate(COVERS.values()):
            mask = self.cover == k
            seasonal = amplitude * np.cos(2 * np.pi * (day - peak) / SEASON_DAYS)
            vv_mean[mask], vh_mean[mask] = vv + seasonal, vh + seasonal
        land = ~np.isin(self.cover, [COVER_NAMES.index("water"), COVER_NAMES.index("sand")])
        fields = np.isin(self.cover, [COVER_NAMES.index("crops"), COVER_NAMES.index("grass")])
        shift = np.where(land, self._orbit_offset[orbit] + self._cell_offset * 0.7, 0.0)
        weather = np.random.default_rng([self.seed, int(day * 10)])  # one weather per date
        wet = weather.random() < RAIN_DAYS
        shift = shift + np.where(fields & wet, weather.uniform(1.0, 3.0), 0.0)
        winter = min(day % SEASON_DAYS, SEASON_DAYS - day % SEASON_DAYS) < 45
        if winter and weather.random() < SNOW_DAYS:
            shift = shift - np.where(land, weather.uniform(3.0, 6.0), 0.0)
        wind = weather.uniform(2.0, 6.0) if weather.random() < WIND_DAYS else 0.0
        water_vv, water_vh = COVERS["water"][0] + wind, COVERS["water"][1] + wind * 0.6
        is_water = self.cover == COVER_NAMES.index("water")
        vv_mean = np.where(is_water, vv_mean + wind, vv_mean + shift)
        vh_mean = np.where(is_water, vh_mean + wind * 0.6, vh_mean + shift)
        share = self.flood_fraction(day)  # a cell's power mixes water and land, linearly
        vv_mean = 10 * np.log10(share * 10 ** (water_vv / 10) + (1 - share) * 10 ** (vv_mean / 10))
        vh_mean = 10 * np.log10(share * 10 ** (water_vh / 10) + (1 - share) * 10 ** (vh_mean / 10))
        flooded = share >= 0.5
        enl = ENL_PIXEL * self.pixels_per_cell * SPECKLE_CORRELATION
        speckle = rng.gamma(enl, 1.0 / enl, (2, self.cells))
        vv = 10 * np.log10(10 ** (vv_mean / 10) * speckle[0])
        vh = 10 * np.log10(10 ** (vh_mean / 10) * speckle[1])
        return Acquisition(day, orbit, vv.astype(np.float32), vh.astype(np.float32),
                           self._incidence[orbit], flooded)

    def season(self, days: float = SEASON_DAYS, start_day: float = 0.0) -> list[Acquisition]:
        return [self.acquire(d, o) for d, o in self.schedule(days, start_day)]
