"""A seeded simulator of Sentinel-2 parcel time series (13 bands, reflectance 0-1).

Each parcel has a crop with a phenology from western-European crop calendars (double-logistic
vegetation cover, per-parcel jitter in sowing and harvest dates, mowing for grassland, yellow
flowering for rapeseed), mixed linearly with soil and water endmembers (winter flooding of some
low parcels). Parcels lie on tiles; each tile has its own 5-day revisit with missing
acquisitions, and clouds (opaque, thin and undetected, shadows) contaminate observations.

Every acquisition is drawn from its own generator seeded by (seed, tile, day), so the stream the
demo feed publishes and the batch the default model trains on are the same numbers.
This is simulated data: models trained on it say so in their metadata.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .base import SeriesSet, pad_ragged
from .breizhcrops import S2_BANDS

# Endmember spectra, reflectance in S2_BANDS order (B01 ... B12, with the B10 cirrus band).
SOIL = np.array([0.09, 0.11, 0.14, 0.18, 0.20, 0.22, 0.23, 0.25, 0.26, 0.26, 0.01, 0.33, 0.29])
VEGETATION = np.array([0.03, 0.04, 0.07, 0.04, 0.10, 0.28, 0.36, 0.40, 0.42, 0.42, 0.005,
                       0.21, 0.10])
WATER = np.array([0.07, 0.06, 0.05, 0.03, 0.02, 0.015, 0.012, 0.01, 0.01, 0.008, 0.002, 0.005,
                  0.003])
FLOWER = np.array([0.0, 0.0, 0.08, 0.07, 0.06, 0.02, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
CLOUD = np.array([0.45, 0.46, 0.45, 0.46, 0.47, 0.48, 0.48, 0.49, 0.48, 0.40, 0.15, 0.35, 0.25])


@dataclass(frozen=True)
class Crop:
    """A crop's calendar: vegetation cover
    v(t) = start + (peak − start)·s(t; sos, rise) − (peak − end)·s(t; eos, fall), s logistic."""

    name: str
    share: float        # fraction of parcels
    start: float        # cover before green-up (winter crops are already up)
    peak: float
    end: float          # cover after harvest or senescence
    sos: float          # day of year of green-up (inflection)
    eos: float          # day of year of senescence / harvest (inflection)
    rise: float = 10.0  # days
    fall: float = 7.0
    flowering: float | None = None  # day of year of peak flowering (rapeseed)
    mowing: tuple[float, ...] = ()  # days of year (grassland)
    flood_prone: float = 0.0        # share of parcels flooded in winter


CROPS = (
    Crop("winter_wheat", 0.28, 0.25, 0.85, 0.06, sos=80, eos=188),
    Crop("winter_barley", 0.12, 0.28, 0.80, 0.06, sos=68, eos=172),
    Crop("rapeseed", 0.10, 0.45, 0.85, 0.08, sos=60, eos=178, flowering=108),
    Crop("maize", 0.25, 0.05, 0.90, 0.12, sos=165, eos=268, rise=9, flood_prone=0.15),
    Crop("sunflower", 0.08, 0.05, 0.75, 0.10, sos=140, eos=236),
    Crop("grassland", 0.17, 0.55, 0.82, 0.60, sos=75, eos=330, fall=20,
         mowing=(145, 205), flood_prone=0.3),
)
CLASS_NAMES = tuple(c.name for c in CROPS)
REVISIT_DAYS = 5
SEASON_DAYS = 365


def _logistic(t: float | np.ndarray, centre: np.ndarray, width: float | np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(t - centre) / width))


@dataclass(frozen=True)
class Acquisition:
    """One simulated acquisition of one tile.

    parcels: [n] parcel indices; values: [n, 13] reflectance; valid_fraction: [n] 0-1 (the
    share of the parcel's pixels the cloud mask keeps).
    """

    tile: int
    day: int
    parcels: np.ndarray
    values: np.ndarray
    valid_fraction: np.ndarray

    @property
    def acquisition_id(self) -> str:
        return f"SIM_T{self.tile:03d}_D{self.day:03d}"


class ParcelSimulator:
    """A season of ``n_parcels`` parcels on ``n_tiles`` tiles; deterministic in ``seed``."""

    def __init__(self, n_parcels: int, seed: int = 0, n_tiles: int = 4,
                 cloud_cover: float = 0.35, missing_rate: float = 0.1) -> None:
        rng = np.random.default_rng([seed, 0xC0FFEE])
        self.seed, self.n_parcels, self.n_tiles = seed, n_parcels, n_tiles
        self.cloud_cover, self.missing_rate = cloud_cover, missing_rate
        shares = np.array([c.share for c in CROPS])
        self.labels = rng.choice(len(CROPS), size=n_parcels, p=shares / shares.sum())
        self.tiles = rng.integers(0, n_tiles, size=n_parcels)
        self.sos_shift = rng.normal(0, 8, n_parcels)
        self.eos_shift = rng.normal(0, 8, n_parcels)
        self.peak_scale = rng.uniform(0.9, 1.08, n_parcels)
        # emergence vigour varies more between fields than between winter crops
        self.start_scale = rng.uniform(0.6, 1.4, n_parcels)
        self.soil_brightness = rng.uniform(0.75, 1.25, n_parcels)
        flood_share = np.array([c.flood_prone for c in CROPS])[self.labels]
        self.flood_prone = rng.random(n_parcels) < flood_share
        self.schedules = [self._schedule(tile) for tile in range(n_tiles)]

    def _schedule(self, tile: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, tile, 0x5EED])
        days = np.arange(int(rng.integers(0, REVISIT_DAYS)), SEASON_DAYS, REVISIT_DAYS)
        return days[rng.random(len(days)) >= self.missing_rate]

    def cover(self, parcels: np.ndarray, day: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(vegetation cover, water cover, flowering intensity), each [n] in 0-1."""
        vegetation = np.zeros(len(parcels))
        flowering = np.zeros(len(parcels))
        labels = self.labels[parcels]
        for k, crop in enumerate(CROPS):
            m = labels == k
            if not m.any():
                continue
            p = parcels[m]
            sos, eos = crop.sos + self.sos_shift[p], crop.eos + self.eos_shift[p]
            peak = np.minimum(crop.peak * self.peak_scale[p], 0.97)
            start = crop.start * self.start_scale[p]
            v = (start + (peak - start) * _logistic(day, sos, crop.rise)
                 - (peak - crop.end) * _logistic(day, eos, crop.fall))
            for cut in crop.mowing:
                since = day - (cut + self.sos_shift[p] * 0.5)
                v = v - np.where(since >= 0, 0.45 * np.exp(-since / 12.0), 0.0)
            if crop.flowering is not None:
                flowering[m] = np.exp(-0.5 * ((day - crop.flowering - self.sos_shift[p]) / 9) ** 2)
            vegetation[m] = v
        winter = np.exp(-0.5 * (((day + 30) % SEASON_DAYS - 30) / 25.0) ** 2)  # peaks on 1 Jan
        water = np.where(self.flood_prone[parcels], 0.6 * winter, 0.0)
        vegetation = np.clip(vegetation, 0.0, 1.0) * (1.0 - water)
        return vegetation, water, flowering

    def acquire(self, tile: int, day: int) -> Acquisition:
        """Observe every parcel of ``tile`` on ``day``: reflectance and valid fraction."""
        parcels = np.flatnonzero(self.tiles == tile)
        rng = np.random.default_rng([self.seed, tile, day])
        vegetation, water, flowering = self.cover(parcels, float(day))
        soil = np.clip(1.0 - vegetation - water, 0.0, 1.0)
        n = len(parcels)
        values = (vegetation[:, None] * VEGETATION + water[:, None] * WATER
                  + soil[:, None] * self.soil_brightness[parcels, None] * SOIL
                  + flowering[:, None] * FLOWER * (vegetation[:, None] > 0.3))
        values = values * rng.normal(1.0, 0.03, (n, 1)) + rng.normal(0, 0.004, (n, len(S2_BANDS)))
        scene_cover = rng.beta(0.7, 0.7 / self.cloud_cover - 0.7)
        cloudy = rng.random(n) < scene_cover
        opacity = np.where(cloudy, rng.uniform(0.2, 1.0, n), 0.0)
        shadow = ~cloudy & (rng.random(n) < scene_cover * 0.15)
        values = (1 - opacity[:, None]) * values + opacity[:, None] * CLOUD
        values = np.where(shadow[:, None], values * rng.uniform(0.4, 0.7, (n, 1)), values)
        # the mask catches opaque clouds and most shadows; thin clouds often slip through
        detected = (cloudy & (opacity > 0.45)) | (shadow & (rng.random(n) < 0.7))
        valid = np.where(detected, rng.uniform(0.0, 0.3, n), rng.uniform(0.92, 1.0, n))
        return Acquisition(tile=tile, day=day, parcels=parcels,
                           values=np.clip(values, 0.0, 1.0).astype(np.float32),
                           valid_fraction=valid.astype(np.float32))

    def events(self) -> list[tuple[int, int]]:
        """(day, tile) of every acquisition of the season, in time order (ties by tile)."""
        return sorted((int(day), tile) for tile, days in enumerate(self.schedules)
                      for day in days)

    def acquisitions(self) -> Iterator[Acquisition]:
        """Every acquisition of the season in time order (ties by tile)."""
        for day, tile in self.events():
            yield self.acquire(tile, day)

    def series(self, min_valid_fraction: float = 0.5) -> SeriesSet:
        """The season as labelled series, keeping observations the cloud mask lets through."""
        rows: list[list[np.ndarray]] = [[] for _ in range(self.n_parcels)]
        days: list[list[float]] = [[] for _ in range(self.n_parcels)]
        for acq in self.acquisitions():
            keep = acq.valid_fraction >= min_valid_fraction
            for parcel, value in zip(acq.parcels[keep], acq.values[keep], strict=True):
                rows[parcel].append(value)
                days[parcel].append(float(acq.day))
        empty = np.zeros((0, len(S2_BANDS)), np.float32)
        values, day_array, lengths = pad_ragged(
            [np.array(r, np.float32) if r else empty for r in rows],
            [np.array(d, np.float32) for d in days])
        return SeriesSet(values=values, days=day_array, lengths=lengths,
                         labels=self.labels.astype(np.int64), class_names=CLASS_NAMES,
                         band_names=S2_BANDS, sample_ids=np.arange(self.n_parcels),
                         season_length_days=float(SEASON_DAYS), season_start="01-01",
                         name=f"simulated-seed{self.seed}").validate()
