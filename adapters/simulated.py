"""The built-in `simulated` feed: seasons of simulated Sentinel-2 parcels, fast-forwarded.

It needs no network, so a fresh machine shows decisions within a minute or two. Everything it
publishes says feed=simulated. Parcels ``sim-000000`` ... are registered on start, laid on a
grid of squares in Brittany so that the API and maps have something real-looking to show.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from eowatch.contract.feeds import (
    Backfilled,
    Feed,
    FeedContext,
    FeedHost,
    FeedSettings,
    FeedSpec,
    Progress,
    backfill_key,
    chunks_by_shard,
)
from eowatch.contract.messages import ObservationChunk, shards_of
from eowatch.models.datasets.breizhcrops import S2_BANDS
from eowatch.models.datasets.simulator import CLASS_NAMES, SEASON_DAYS, ParcelSimulator

log = logging.getLogger(__name__)
FEED = "simulated"
OVERPASS = timedelta(hours=10, minutes=30)  # Sentinel-2's local morning pass, roughly UTC here


class SimulatedFeed(Feed):
    name = FEED

    def __init__(self, host: FeedHost, n_parcels: int, seed: int, shards: int,
                 days_per_second: float, start_year: int, seasons: int = 0,
                 interval_seconds: float = 1.0,
                 clock: Callable[[], float] = time.monotonic,
                 band_names: Sequence[str] = S2_BANDS) -> None:
        """``band_names``: the bands to publish (the model's), a subset of the simulator's 13."""
        absent = [b for b in band_names if b not in S2_BANDS]
        if absent:
            raise ValueError(f"the simulated feed has no band(s) {absent}; it has {S2_BANDS}")
        self.band_names = tuple(band_names)
        self._columns = [S2_BANDS.index(b) for b in band_names]
        self.host, self.seed, self.shards = host, seed, shards
        self.days_per_second, self.start_year = days_per_second, start_year
        self.seasons, self.interval_seconds, self.clock = seasons, interval_seconds, clock
        self.parcel_ids = np.array([f"sim-{i:06d}" for i in range(n_parcels)], dtype=object)
        self.parcel_shards = shards_of(self.parcel_ids, shards)
        self._cached: tuple[int, ParcelSimulator, list[tuple[int, int]]] | None = None
        cursor = host.cursor(FEED) or {"season": 0, "event": 0}
        self.cursor = cursor
        self.sim_day = float(self._events(cursor["season"])[cursor["event"]][0]) \
            if cursor["event"] < len(self._events(cursor["season"])) else float(SEASON_DAYS)
        self._last_poll: float | None = None

    def simulator(self, season: int) -> ParcelSimulator:
        return self._season(season)[0]

    def _events(self, season: int) -> list[tuple[int, int]]:
        return self._season(season)[1]

    def _season(self, season: int) -> tuple[ParcelSimulator, list[tuple[int, int]]]:
        """The season's simulator and its acquisitions (day, tile) in time order; one cached."""
        if self._cached is None or self._cached[0] != season:
            sim = ParcelSimulator(len(self.parcel_ids), seed=self.seed * 1000 + season)
            self._cached = (season, sim, sim.events())
        return self._cached[1], self._cached[2]

    def parcel_rows(self) -> list[dict]:
        """Registry rows: 50 m squares on a grid near Rennes, WGS84 GeoJSON."""
        labels = self.simulator(0).labels
        rows = []
        for i, parcel in enumerate(self.parcel_ids):
            lon, lat = -1.9 + (i % 100) * 0.002, 48.0 + (i // 100) * 0.002
            ring = [[lon, lat], [lon + 0.0007, lat], [lon + 0.0007, lat + 0.0005],
                    [lon, lat + 0.0005], [lon, lat]]
            rows.append({"id": parcel, "shard": int(self.parcel_shards[i]),
                         "geometry": json.dumps({"type": "Polygon", "coordinates": [ring]}),
                         "label": CLASS_NAMES[labels[i]], "season_start": "01-01",
                         "source": FEED})
        return rows

    @property
    def finished(self) -> bool:
        return bool(self.seasons) and self.cursor["season"] >= self.seasons

    def acquired_at(self, season: int, day: int) -> datetime:
        return datetime(self.start_year + season, 1, 1, tzinfo=UTC) + timedelta(days=day) + \
            OVERPASS

    def poll(self) -> int:
        """Publish every acquisition the fast-forwarded clock has reached."""
        now = self.clock()
        elapsed = self.interval_seconds if self._last_poll is None else now - self._last_poll
        self._last_poll = now
        if self.finished:
            return 0
        self.sim_day += elapsed * self.days_per_second
        published = 0
        while not self.finished:
            season, event = self.cursor["season"], self.cursor["event"]
            events = self._events(season)
            if event < len(events):
                day, tile = events[event]
                if day > self.sim_day:
                    break
                published += self._publish_acquisition(season, event, day, tile)
            elif self.sim_day >= SEASON_DAYS:
                published += self._publish_season_end(season)
                self.sim_day -= SEASON_DAYS
            else:
                break
        return published

    def backfill(self, since: datetime, until: datetime, progress: Progress | None = None
                 ) -> Backfilled:
        """The acquisitions (and season ends) of [since, until], as polls publish them."""
        key = backfill_key(FEED, since, until)
        position = self.host.cursor(key) or {"season": 0, "event": 0}
        plan = self._plan(since, until)
        todo = [(s, e) for s, e in plan if (s, e) >= (position["season"], position["event"])]
        done = Backfilled(earlier=len(plan) - len(todo))
        if progress is not None:
            progress.reset(total=len(plan))
            progress.update(done.earlier)
        cursor = None
        for season, event in todo:
            events = self._events(season)
            if event < len(events):
                day, tile = events[event]
                done.chunks += self._publish_acquisition(season, event, day, tile, key)
                cursor = {"season": season, "event": event + 1}
            else:
                done.chunks += self._publish_season_end(season, key)
                cursor = {"season": season + 1, "event": 0}
            done.published += 1
            if progress is not None:
                progress.update(1)
        if cursor is not None and self.host.cursor(FEED) is None:
            self.host.publish(FEED, [], cursor)
            self.cursor = cursor
            done.handed_over = True
        return done

    def _plan(self, since: datetime, until: datetime) -> list[tuple[int, int]]:
        """(season, event) of each acquisition in [since, until]; event = the season's event
        count for its end."""
        plan, season = [], 0
        while self.acquired_at(season, 0) <= until and not (self.seasons and
                                                             season >= self.seasons):
            events = self._events(season)
            times = [self.acquired_at(season, day) for day, _ in events] + \
                [self.acquired_at(season, SEASON_DAYS)]
            plan += [(season, k) for k, t in enumerate(times) if since <= t <= until]
            season += 1
        return plan

    def _publish_acquisition(self, season: int, event: int, day: int, tile: int,
                             cursor_key: str = FEED) -> int:
        acquisition = self.simulator(season).acquire(tile, day)
        ids = self.parcel_ids[acquisition.parcels]
        chunks = chunks_by_shard(
            FEED, f"SIM_S{self.start_year + season}_{acquisition.acquisition_id}",
            self.acquired_at(season, day), self.band_names, ids,
            self.parcel_shards[acquisition.parcels], acquisition.values[:, self._columns],
            acquisition.valid_fraction)
        cursor = {"season": season, "event": event + 1}
        self.host.publish(cursor_key, chunks, cursor)
        if cursor_key == FEED:
            self.cursor = cursor
        return len(chunks)

    def _publish_season_end(self, season: int, cursor_key: str = FEED) -> int:
        """One empty `season_end` chunk per shard: undecided parcels decide at their last step."""
        end = self.acquired_at(season, SEASON_DAYS)
        empty = np.zeros((0, len(self.band_names)), np.float32)
        chunks = [ObservationChunk(feed=FEED, acquisition_id=f"SIM_S{self.start_year + season}_END",
                                   acquired_at=end, band_names=self.band_names, shard=int(shard),
                                   parcel_ids=np.array([], dtype=object), values=empty,
                                   valid_fraction=np.zeros(0, np.float32), kind="season_end",
                                   season=self.start_year + season)
                  for shard in np.unique(self.parcel_shards)]
        cursor = {"season": season + 1, "event": 0}
        self.host.publish(cursor_key, chunks, cursor)
        if cursor_key == FEED:
            self.cursor = cursor
        log.info("simulated season %d ended", self.start_year + season)
        return len(chunks)


class SimulatedSettings(FeedSettings):
    """Settings of the simulated feed: EOWATCH_SIM_<NAME>, or sim_<name> in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_SIM_", frozen=True, extra="forbid")

    parcels: int = Field(2000, ge=1, description="parcels simulated")
    seed: int = Field(0, description="seed of the simulator")
    days_per_second: float = Field(10.0, gt=0,
                                   description="simulated season days per wall-clock second")
    seasons: int = Field(0, ge=0, description="seasons to play (0 = forever)")
    start_year: int = Field(2026, description="calendar year of the first season")
    poll_seconds: float = Field(1.0, gt=0, description="interval between polls")


def _build(settings: SimulatedSettings, context: FeedContext) -> SimulatedFeed:
    feed = SimulatedFeed(context.host, settings.parcels, settings.seed, context.shards,
                         settings.days_per_second, settings.start_year, settings.seasons,
                         settings.poll_seconds, band_names=context.band_names)
    context.host.upsert_parcels(feed.parcel_rows())
    return feed


FEED_SPEC = FeedSpec(FEED, SimulatedSettings, _build,
                     "built-in, offline: fast-forwarded seasons of simulated Sentinel-2 parcels "
                     "near Rennes (registered on start)")
