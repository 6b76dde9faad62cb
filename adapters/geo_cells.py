"""What the weather-satellite feeds (GOES, Meteosat, EPIC) share: the areas' coarse grids, and
per coarse cell the row of models/flood_geo.GEO_BANDS they publish.

Each feed reads its bands over an area's coarse cells (reflectance of the clear pixels, the
clear share, the valid share) and hands them here; cells where the sun is more than
``NIGHT_ZENITH`` from the zenith are not published (night: nothing to read), and an area wholly
at night gives no rows at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from eowatch.cells import CellGrid, parent_area, stored_coarse_grid
from eowatch.contract.feeds import FeedHost, FeedMetrics, chunks_by_shard
from eowatch.contract.messages import ObservationChunk, shard_of
from eowatch.geometry import transformer
from eowatch.models.flood_geo import GEO_BANDS, sensor_code
from eowatch.solar import solar_zenith

NIGHT_ZENITH = 85.0


@dataclass(frozen=True)
class CoarseArea:
    area_id: str
    shard: int
    grid: CellGrid          # the coarse grid: its cells are the targets
    lon: np.ndarray         # [cells] centres, WGS 84
    lat: np.ndarray

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (float(self.lon.min()), float(self.lat.min()), float(self.lon.max()),
                float(self.lat.max()))


def coarse_areas(host: FeedHost, shards: int) -> list[CoarseArea]:
    """The registered areas that have a coarse grid."""
    found = []
    for area in host.areas():
        grid = stored_coarse_grid(area["id"], area["grid"]) if area.get("grid") else None
        if grid is None:
            continue
        _, rows, cols = grid.cells()
        lon, lat = transformer(grid.epsg, 4326).transform(
            grid.x0 + (cols + 0.5) * grid.size, grid.y1 - (rows + 0.5) * grid.size)
        found.append(CoarseArea(area["id"], shard_of(parent_area(grid.area_id), shards), grid,
                                np.asarray(lon), np.asarray(lat)))
    return found


def water_index(short: np.ndarray, long: np.ndarray) -> np.ndarray:
    """``(short − long) / (short + long)``: red and SWIR 1.6 µm (ABI, FCI, SEVIRI), or green
    and NIR (EPIC); NaN where either is missing or both are dark."""
    with np.errstate(invalid="ignore", divide="ignore"):
        index = (short - long) / (short + long)
    return np.where(np.isfinite(index) & (short + long > 1e-4), index, np.nan)


def geo_rows(area: CoarseArea, when: datetime, sensor: str, red: np.ndarray, nir: np.ndarray,
             swir: np.ndarray, index: np.ndarray, clear: np.ndarray, valid: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(target ids, shards, values [n, GEO_BANDS], valid fractions) of the area's cells that
    the scene saw by day (arrays in the coarse grid's cells() order)."""
    zenith = solar_zenith(area.lon, area.lat, when)
    seen = np.isfinite(valid) & (valid > 0) & (zenith <= NIGHT_ZENITH)
    ids, _, _ = area.grid.cells()
    n = int(seen.sum())
    values = np.column_stack([red[seen], nir[seen], swir[seen], index[seen],
                              np.nan_to_num(clear[seen]), zenith[seen],
                              np.full(n, sensor_code(sensor))])
    assert values.shape[1] == len(GEO_BANDS)
    return ids[seen], np.full(n, area.shard), values.astype(np.float32), \
        valid[seen].astype(np.float32)


def geo_chunks(feed: str, metrics: FeedMetrics, acquisition_id: str, acquired_at: datetime,
               parts: Sequence[tuple[np.ndarray, ...]]) -> list[ObservationChunk]:
    """One acquisition's rows of every area (``geo_rows``) as chunks by shard, counted in
    ``eowatch_feed_items_total`` (published, or no_parcels when there are none). A cell read
    twice (split by a boundary of the source's files) keeps the part with more valid pixels."""
    kept = [p for p in parts if len(p[0])]
    if not kept:
        metrics.feed_items.labels(feed, "no_parcels").inc()
        return []
    ids, shards, values, valid = (np.concatenate([p[k] for p in kept]) for k in range(4))
    order = np.lexsort((-valid, ids))
    ids, shards, values, valid = ids[order], shards[order], values[order], valid[order]
    first = np.ones(len(ids), bool)
    first[1:] = ids[1:] != ids[:-1]
    metrics.feed_items.labels(feed, "published").inc()
    metrics.feed_parcels.labels(feed, "observed").inc(int(first.sum()))
    return chunks_by_shard(feed, acquisition_id, acquired_at, GEO_BANDS, ids[first],
                           shards[first], values[first], valid[first], targets="cells")
