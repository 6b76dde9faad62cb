"""The built-in `simulated-sentinel1` feed: years of simulated Sentinel-1 backscatter over
floodplains, with floods, fast-forwarded.

It needs no network, so a fresh machine shows flood alerts as well as crop decisions. Each
simulated area (``sim-floodplain-0`` ...) is a 60 × 80 grid of 40 m cells near Rennes,
registered on start with its cells; the simulator (models/datasets/s1simulator.py) gives each
cell a land cover (river, crops, grass, forest, town, sand), seasonal backscatter, weather,
speckle, and floods of known extent. Acquisitions come from three relative orbits, each every
12 days; the first year (no flood by default) teaches the flood model each cell's normal
backscatter. Everything it publishes says feed=simulated-sentinel1.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import numpy as np
import shapely
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from eowatch.cells import CellGrid, area_cell_rows
from eowatch.contract.feeds import (
    Feed,
    FeedContext,
    FeedHost,
    FeedSettings,
    FeedSpec,
    chunks_by_shard,
)
from eowatch.contract.messages import shard_of
from eowatch.geometry import reproject
from eowatch.models.datasets.s1simulator import SEASON_DAYS, AreaSimulator, Flood
from eowatch.models.flood import BANDS
from eowatch.settings import CommaList

log = logging.getLogger(__name__)
FEED = "simulated-sentinel1"
CELL_METRES = 40.0
PASS_TIME = timedelta(hours=17, minutes=50)  # an ascending evening pass over Brittany (UTC)
UTM_30N = 32630
ORIGIN = (600_000.0, 5_330_000.0)  # north-west corner of the first area, UTM 30N (Rennes)


def area_id(k: int) -> str:
    return f"sim-floodplain-{k}"


def simulated_areas(n_areas: int, seed: int, floods: tuple[Flood, ...]
                    ) -> tuple[list[AreaSimulator], list[CellGrid]]:
    """The simulated floodplains and their grids: the simulator's rows and columns, cell for
    cell, side by side east of Rennes."""
    simulators = [AreaSimulator(floods=floods, seed=seed * 100 + k) for k in range(n_areas)]
    grids = [CellGrid(area_id(k), UTM_30N, CELL_METRES,
                      ORIGIN[0] + k * (sim.cols + 10) * CELL_METRES, ORIGIN[1],
                      np.ones((sim.rows, sim.cols), bool))
             for k, sim in enumerate(simulators)]
    return simulators, grids


def area_rows(grids: list[CellGrid]) -> list[tuple[dict, CellGrid]]:
    """Registry rows of the areas: their outline in WGS84 (a hair inside the grid, so an
    import of it gives the same cells) and their grids."""
    rows = []
    for grid in grids:
        rows_, cols = grid.inside.shape
        box = shapely.box(grid.x0 + 1, grid.y1 - rows_ * CELL_METRES + 1,
                          grid.x0 + cols * CELL_METRES - 1, grid.y1 - 1)
        outline = reproject(box, grid.epsg, 4326)
        rows.append(({"id": grid.area_id, "name": "simulated floodplain",
                      "geometry": json.dumps(shapely.geometry.mapping(outline)),
                      "source": FEED}, grid))
    return rows


def register_areas(host: FeedHost, grids: list[CellGrid], shards: int) -> None:
    """Register the simulated areas with their cells, unless they already are."""
    known = {a["id"]: a["grid"] for a in host.areas()}
    for row, grid in area_rows(grids):
        definition, cells = area_cell_rows(grid, shards)
        if known.get(row["id"]) != definition:
            host.upsert_area(row, definition, cells)


class SimulatedRadarFeed(Feed):
    name = FEED
    band_names = BANDS
    targets = "cells"

    def __init__(self, host: FeedHost, n_areas: int, seed: int, shards: int,
                 days_per_second: float, start_year: int, years: int, floods: tuple[Flood, ...],
                 interval_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.host, self.shards, self.days_per_second = host, shards, days_per_second
        self.start_year, self.years, self.interval_seconds = start_year, years, interval_seconds
        self.clock = clock
        self.simulators, self.grids = simulated_areas(n_areas, seed, floods)
        self.cursor = host.cursor(FEED) or {"year": 0, "event": 0}
        events = self._events(self.cursor["year"])
        self.sim_day = (events[self.cursor["event"]][0] if self.cursor["event"] < len(events)
                        else SEASON_DAYS * (self.cursor["year"] + 1))
        self._last_poll: float | None = None

    def _events(self, year: int) -> list[tuple[float, int]]:
        """(day since the start, orbit) of the year's acquisitions, in time order."""
        return self.simulators[0].schedule(SEASON_DAYS, start_day=year * SEASON_DAYS)

    @property
    def finished(self) -> bool:
        return bool(self.years) and self.cursor["year"] >= self.years

    def acquired_at(self, day: float) -> datetime:
        return datetime(self.start_year, 1, 1, tzinfo=UTC) + timedelta(days=day) + PASS_TIME

    def poll(self) -> int:
        """Publish every acquisition the fast-forwarded clock has reached."""
        now = self.clock()
        elapsed = self.interval_seconds if self._last_poll is None else now - self._last_poll
        self._last_poll = now
        self.sim_day += elapsed * self.days_per_second
        published = 0
        while not self.finished:
            year, event = self.cursor["year"], self.cursor["event"]
            events = self._events(year)
            if event >= len(events):
                self.cursor = {"year": year + 1, "event": 0}
                continue
            day, orbit = events[event]
            if day > self.sim_day:
                break
            published += self._publish(day, orbit, {"year": year, "event": event + 1})
        return published

    def _publish(self, day: float, orbit: int, cursor: dict[str, int]) -> int:
        ids, shards, values = [], [], []
        for sim, grid in zip(self.simulators, self.grids, strict=True):
            acquisition = sim.acquire(day, orbit)
            cell_ids, _, _ = grid.cells()  # row by row: the simulator's cell order
            ids.append(cell_ids)
            shards.append(np.full(len(cell_ids), shard_of(grid.area_id, self.shards)))
            values.append(np.column_stack([
                acquisition.vv_db, acquisition.vh_db,
                np.full(len(cell_ids), acquisition.incidence), np.full(len(cell_ids), orbit)]))
        at = self.acquired_at(day)
        chunks = chunks_by_shard(
            FEED, f"SIM_S1_{at:%Y%m%dT%H%M%S}_{orbit:03d}", at, BANDS, np.concatenate(ids),
            np.concatenate(shards), np.concatenate(values).astype(np.float32),
            np.ones(sum(len(i) for i in ids), np.float32), targets="cells")
        self.host.publish(FEED, chunks, cursor)
        self.cursor = cursor
        return len(chunks)


class SimulatedWorldSettings(FeedSettings):
    """The simulated floodplains and their floods: the radar and the weather-satellite feeds
    simulate the same world when these agree (their defaults do)."""

    areas: int = Field(1, ge=1, le=50, description="floodplains simulated (60 x 80 cells each)")
    seed: int = Field(0, description="seed of the simulator")
    days_per_second: float = Field(10.0, gt=0, description="simulated days per second")
    years: int = Field(0, ge=0, description="years to play (0 = forever)")
    start_year: int = Field(2025, description="calendar year of the first acquisition")
    flood_days: CommaList[float] = Field(
        (SEASON_DAYS + 150.0,), description="days (since 1 January of the first year) on "
        "which a flood begins; the first year should be flood-free, to learn from")
    flood_duration_days: float = Field(30.0, gt=0, description="how long each flood lasts")
    flood_reach_cells: float = Field(8.0, gt=0,
                                     description="how far from the river floods reach, in cells")
    poll_seconds: float = Field(1.0, gt=0, description="interval between polls")

    def floods(self) -> tuple[Flood, ...]:
        return tuple(Flood(day, self.flood_duration_days, self.flood_reach_cells)
                     for day in self.flood_days)


class SimulatedRadarSettings(SimulatedWorldSettings):
    """Settings of the simulated radar feed: EOWATCH_SIMS1_<NAME>, or sims1_<name> in TOML."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_SIMS1_", frozen=True, extra="forbid")


def _build(settings: SimulatedRadarSettings, context: FeedContext) -> SimulatedRadarFeed:
    feed = SimulatedRadarFeed(context.host, settings.areas, settings.seed, context.shards,
                              settings.days_per_second, settings.start_year, settings.years,
                              settings.floods(), settings.poll_seconds)
    register_areas(context.host, feed.grids, context.shards)
    return feed


FEED_SPEC = FeedSpec(FEED, SimulatedRadarSettings, _build,
                     "built-in, offline: fast-forwarded years of simulated Sentinel-1 "
                     "backscatter over floodplains near Rennes, with floods (areas registered "
                     "on start)")
