"""Sentinel-2 as second evidence of floods: the feed measures NDWI and MNDWI per cell of the
areas marked optical, and the flood model opens and closes events from them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.cells import CellGrid, cell_rows
from eowatch.contract.feeds import chunks_by_shard
from eowatch.daemon.bus.base import OutMessage
from eowatch.daemon.store.tables import DeadLetter
from eowatch.models.flood import BANDS, OPTICAL_BANDS, WARMUP
from tests.data.sentinel2 import T30UWU, Scene, aligned_window
from tests.test_daemon.pipeline import drain, make_daemon

SHARDS = 8
START = datetime(2026, 1, 1, tzinfo=UTC)


def area_and_window():
    window = aligned_window(T30UWU, -1.7, 48.1, 1500, 1200)
    x0, y0, x1, y1 = window
    outline_utm = shapely.box(x0 + 200, y0 + 200, x1 - 200, y1 - 200)
    return window, outline_utm, T30UWU.to_lonlat(outline_utm)


@pytest.fixture
def daemon(tmp_path, unique, server):
    d = make_daemon(tmp_path, "embedded", unique, feeds=("sentinel2",), feed_settings={
        "sentinel2": {"stac_url": server.url, "start": START, "max_items_per_poll": 50}})
    yield d
    d.shutdown()


def register(daemon, outline, optical=True) -> CellGrid:
    grid = CellGrid.of("marsh", outline, 40)
    daemon.store.upsert_areas([{"id": "marsh", "geometry": shapely.to_geojson(outline),
                                "source": "test.gpkg", "optical": optical}])
    daemon.store.replace_cells("marsh", grid.definition(), cell_rows(grid, SHARDS))
    daemon.areas.registry.refresh()   # as a running daemon does within seconds of an import
    return grid


def warm_up(daemon, grid: CellGrid) -> None:
    """Radar passes that teach the flood model each cell's normal backscatter (dry land)."""
    ids, _, _ = grid.cells()
    shards = np.array([r["shard"] for r in cell_rows(grid, SHARDS)])
    rng = np.random.default_rng(0)
    for k in range(WARMUP + 2):
        vv = -11.0 + rng.normal(0, 0.5, len(ids))
        values = np.column_stack([vv, vv - 6, np.full(len(ids), 38.0), np.full(len(ids), 37.0)])
        chunks = chunks_by_shard("sentinel1", f"S1_{k}", START + timedelta(days=6 * k), BANDS,
                                 ids, shards, values.astype(np.float32),
                                 np.ones(len(ids), np.float32), targets="cells")
        daemon.bus.publish(daemon.topics["observations"],
                           [OutMessage(c.key, c.encode(), c.shard) for c in chunks])


def test_optical_cells_carry_water_indices_and_open_and_close_events(daemon, server):
    window, outline_utm, outline = area_and_window()
    grid = register(daemon, outline)
    warm_up(daemon, grid)
    drain(daemon)
    x0, y0, x1, y1 = outline_utm.bounds
    water = (x0 - 100, y0 - 100, x0 + 400, y1 + 100)           # the west 400 m flooded
    day = START + timedelta(days=100, hours=10, minutes=30)
    scenes = [
        Scene(T30UWU, window, day, water=[water], item_id="S2_FLOOD"),
        Scene(T30UWU, window, day + timedelta(days=5), water=[water],
              clouds=[(x0 - 200, y0 - 200, x1 - 150, y1 + 200)], item_id="S2_CLOUDY"),
        Scene(T30UWU, window, day + timedelta(days=10), item_id="S2_DRY_1"),
        Scene(T30UWU, window, day + timedelta(days=15), item_id="S2_DRY_2"),
    ]
    for scene in scenes:
        server.add(scene)
    drain(daemon)
    assert daemon.store.count(DeadLetter) == 0

    # what the feed published: indices of the clear cells, none under the clouds
    consumer = daemon.bus.consumer("check", [daemon.topics["observations"]], 10_000)
    from eowatch.contract.messages import ObservationChunk
    chunks = [c for c in (ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.5))
              if c.feed == "sentinel2"]
    first = [c for c in chunks if c.acquisition_id == "S2_FLOOD"]
    assert first and all(c.targets == "cells" and c.band_names == OPTICAL_BANDS for c in first)
    values = {i: v for c in first for i, v in zip(c.parcel_ids, c.values, strict=True)}
    ids, rows, cols = grid.cells()
    assert set(values) == set(ids)
    xs = grid.x0 + (cols + 0.5) * grid.size
    in_water = xs + grid.size / 2 <= x0 + 400
    dry = xs - grid.size / 2 >= x0 + 400
    wet_values = np.array([values[i] for i in ids[in_water]])
    dry_values = np.array([values[i] for i in ids[dry]])
    assert np.allclose(wet_values, [(0.04 - 0.004) / 0.044] * 2, atol=0.01)
    assert np.allclose(dry_values, [(0.16 - 0.26) / 0.42, (0.16 - 0.32) / 0.48], atol=0.01)
    cloudy = {i for c in chunks if c.acquisition_id == "S2_CLOUDY" for i in c.parcel_ids}
    assert len(cloudy) < 0.3 * len(ids)

    alerts = daemon.store.list_alerts(limit=100).items
    assert [(a["kind"], a["acquisition_id"]) for a in alerts] == [
        ("flood.opened", "S2_FLOOD"), ("flood.closed", "S2_DRY_2")]  # clouds: no verdict
    opened = alerts[0]
    assert opened["sources"] == ["sentinel2"]
    assert opened["flooded_km2"] == pytest.approx(in_water.sum() * 0.0016, rel=0.15)


def test_areas_not_marked_optical_are_not_measured(daemon, server):
    window, _, outline = area_and_window()
    register(daemon, outline, optical=False)
    server.add(Scene(T30UWU, window, START + timedelta(days=100), item_id="S2_ANY"))
    assert daemon.adapters[0].search_area() is None   # no parcels, no optical areas
    drain(daemon)
    assert daemon.bus.consumer("c", [daemon.topics["observations"]], 100).poll(100, 0.5) == []
