"""The built-in `simulated-geostationary` feed: weather-satellite scenes of the simulated
floodplains (the `simulated-sentinel1` feed's, with the same floods), fast-forwarded.

It publishes, per coarse cell (2 km) of each area and per daylight scene, what the GOES, Meteosat
and EPIC feeds publish (models/flood_geo.GEO_BANDS): the water index of the clear pixels, the
clear share, the solar zenith angle; the simulator (models/datasets/geosimulator.py) models the
index, not the bands, so red, NIR and SWIR are NaN. With the radar feed it shows, offline, a
flood event opened hours after the onset by the weather satellites and confirmed by the next
radar pass. Everything it publishes says feed=simulated-geostationary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from eowatch.cells import CellGrid, coarse_grid, coarse_place
from eowatch.contract.feeds import Feed, FeedContext, FeedHost, FeedSpec, chunks_by_shard
from eowatch.contract.messages import ObservationChunk, shard_of
from eowatch.geometry import transformer
from eowatch.models.datasets.geosimulator import GeoSimulator, start_of
from eowatch.models.datasets.s1simulator import Flood
from eowatch.models.flood_geo import GEO_BANDS, sensor_code

from .simulated_s1 import SimulatedWorldSettings, register_areas, simulated_areas

FEED = "simulated-geostationary"


def coarse_of(grid: CellGrid) -> tuple[CellGrid, np.ndarray]:
    """The area's coarse grid and, per 40 m cell (row by row), the position of the coarse cell
    over it among the coarse grid's cells (row by row)."""
    coarse = coarse_grid(grid)
    r, c = coarse_place(grid.definition(), coarse.definition(), *np.nonzero(grid.inside))
    position = np.cumsum(coarse.inside.ravel()) - 1
    return coarse, position[r * coarse.inside.shape[1] + c]


class SimulatedGeoFeed(Feed):
    name = FEED
    band_names = GEO_BANDS
    targets = "cells"

    def __init__(self, host: FeedHost, n_areas: int, seed: int, shards: int,
                 days_per_second: float, start_year: int, years: int,
                 floods: tuple[Flood, ...], interval_minutes: float,
                 interval_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.shards, self.days_per_second = host, shards, days_per_second
        self.years, self.interval_seconds, self.clock = years, interval_seconds, clock
        self.start = start_of(start_year)
        simulators, self.grids = simulated_areas(n_areas, seed, floods)
        self.scenes: list[GeoSimulator] = []
        ids, cell_shards = [], []     # the coarse cells every scene observes, area by area
        for k, (sim, grid) in enumerate(zip(simulators, self.grids, strict=True)):
            coarse, position = coarse_of(grid)
            rows_n, cols_n = grid.inside.shape
            lon, lat = transformer(grid.epsg, 4326).transform(
                grid.x0 + cols_n * grid.size / 2, grid.y1 - rows_n * grid.size / 2)
            self.scenes.append(GeoSimulator(sim, position, float(lon), float(lat), self.start,
                                            interval_minutes, seed * 100 + k))
            ids.append(coarse.cells()[0])
            cell_shards.append(np.full(coarse.count, shard_of(grid.area_id, self.shards)))
        self.ids, self.cell_shards = np.concatenate(ids), np.concatenate(cell_shards)
        cursor = host.cursor(FEED)
        self.published_to = (datetime.fromisoformat(cursor["scene"]) if cursor
                             else self.start - timedelta(seconds=1))
        self.sim_day = (self.published_to - self.start) / timedelta(days=1)
        self._last_poll: float | None = None
        self._stop = False

    @property
    def end_day(self) -> float:
        return 365.0 * self.years if self.years else float("inf")

    def poll(self) -> int:
        """Publish every scene the fast-forwarded clock has reached."""
        now = self.clock()
        elapsed = self.interval_seconds if self._last_poll is None else now - self._last_poll
        self._last_poll, self._stop = now, False
        self.sim_day = min(self.sim_day + elapsed * self.days_per_second, self.end_day)
        until = self.start + timedelta(days=self.sim_day)
        published = 0
        for at in self.scenes[0].times(self.published_to, until):
            if self._stop:
                break
            chunks = self.chunks(at)
            self.host.publish(FEED, chunks, {"scene": at.isoformat()})
            self.published_to = at
            published += len(chunks)
        return published

    def stop(self) -> None:
        self._stop = True

    def chunks(self, at: datetime) -> list[ObservationChunk]:
        """One scene of every area, as chunks by shard."""
        values = []
        for simulator in self.scenes:
            scene = simulator.scene(at)
            n = len(scene.index)
            nan = np.full(n, np.nan)
            values.append(np.column_stack([nan, nan, nan, scene.index, scene.clear,
                                           np.full(n, scene.solar_zenith),
                                           np.full(n, sensor_code("simulated"))]))
        return chunks_by_shard(FEED, f"SIM_GEO_{at:%Y%m%dT%H%M}", at, GEO_BANDS, self.ids,
                               self.cell_shards, np.concatenate(values).astype(np.float32),
                               np.ones(len(self.ids), np.float32), targets="cells")

    @property
    def finished(self) -> bool:
        # the last scenes of the last day are at dusk: half a day before the end is the end
        return (self.published_to - self.start) / timedelta(days=1) >= self.end_day - 0.5


class SimulatedGeoSettings(SimulatedWorldSettings):
    """Settings of the simulated weather-satellite feed: EOWATCH_SIMGEO_<NAME>, or
    simgeo_<name> in TOML. Keep the world's settings equal to the radar feed's."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_SIMGEO_", frozen=True, extra="forbid")

    interval_minutes: float = Field(180.0, gt=0, description="minutes between scenes (the "
                                    "imagers scan every 10-15; fewer keep the demo light on "
                                    "the embedded bus)")


def _build(settings: SimulatedGeoSettings, context: FeedContext) -> SimulatedGeoFeed:
    feed = SimulatedGeoFeed(context.host, settings.areas, settings.seed, context.shards,
                            settings.days_per_second, settings.start_year, settings.years,
                            settings.floods(), settings.interval_minutes,
                            settings.poll_seconds)
    register_areas(context.host, feed.grids, context.shards)
    return feed


FEED_SPEC = FeedSpec(FEED, SimulatedGeoSettings, _build,
                     "built-in, offline: simulated weather-satellite scenes (water index, "
                     "clouds, sun) of the simulated floodplains, with the same floods")
