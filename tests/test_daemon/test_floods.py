"""Flood alerts end to end: the simulated radar feed -> bus -> the flood model's cells ->
one event per flood and area, on both buses, with the alerts on the bus and in the store."""

from __future__ import annotations

import io
import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.cells import coarse_grid
from eowatch.daemon.store.tables import AlertRow, DeadLetter
from eowatch.geometry import reproject
from eowatch.models.datasets.s1simulator import AreaSimulator

from .pipeline import drain, make_daemon

RADAR = {"years": 2, "days_per_second": 1e6, "areas": 2}
FLOOD_DAY = 365 + 150.0   # the feed's default flood: in the second year, 30 days long


def radar_daemon(tmp_path, bus, prefix, bootstrap=None, **radar):
    return make_daemon(tmp_path, bus, prefix, bootstrap, feeds=("simulated-sentinel1",),
                       feed_settings={"simulated-sentinel1": {**RADAR, **radar}})


def bus_alerts(daemon) -> list[dict]:
    """Every message of the alerts topic, read by a group of its own."""
    consumer = daemon.bus.consumer(f"{daemon.settings.topic_prefix}-reader",
                                   [daemon.topics["alerts"]], 500)
    messages, deadline = [], time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            records = consumer.poll(500, 1.0)
            messages += [json.loads(r.value) for r in records]
            if not records and consumer.assignment() and consumer.lag() == 0:
                break
    finally:
        consumer.close()
    return messages


@pytest.fixture(params=["embedded", "kafka"])
def daemon(request, tmp_path, unique):
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    d = radar_daemon(tmp_path, request.param, unique, bootstrap)
    yield d
    d.shutdown()


def test_a_flood_opens_one_event_per_area_that_updates_and_closes(daemon):
    drain(daemon, timeout_s=300)
    assert daemon.store.count(DeadLetter) == 0
    stored = daemon.store.list_alerts(limit=1000).items
    assert daemon.store.count(AlertRow) == len(stored)
    for area in ("sim-floodplain-0", "sim-floodplain-1"):
        mine = [a for a in stored if a["area_id"] == area]
        kinds = [a["kind"] for a in mine]
        assert kinds[0] == "flood.opened" and kinds[-1] == "flood.closed"
        assert kinds.count("flood.opened") == 1 and kinds.count("flood.closed") == 1
        assert len({a["event_id"] for a in mine}) == 1
        opened = datetime.fromisoformat(mine[0]["observed_at"])
        start = datetime(2025, 1, 1, tzinfo=UTC) + timedelta(days=FLOOD_DAY)
        # at the first acquisition that sees the flood: the orbits pass every 4 days
        assert start <= opened <= start + timedelta(days=4, hours=18)
        closed = datetime.fromisoformat(mine[-1]["observed_at"])
        assert closed <= start + timedelta(days=30 + 3 * 4 + 1)
        extent = shapely.geometry.shape(mine[0]["extent"])
        assert extent.geom_type == "MultiPolygon" and not extent.is_empty
        # the extent's area is the flooded km² the alert reports, to the cell
        km2 = reproject(extent, 4326, 32630).area / 1e6
        assert km2 == pytest.approx(mine[0]["flooded_km2"], abs=0.0016)
        assert 0.05 < mine[0]["flooded_km2"] < mine[0]["observable_km2"]
        assert all(a["sources"] == ["simulated-sentinel1"] for a in mine)
    # the bus carries the same alerts (a replay could repeat one: sinks upsert by id)
    on_bus = {a["alert_id"]: a for a in bus_alerts(daemon)}
    assert on_bus == {a["alert_id"]: a for a in stored}
    gauge = daemon.metrics.registry.get_sample_value
    assert gauge("eowatch_alerts_total", {"kind": "flood.opened"}) == 2
    assert gauge("eowatch_area_flood_open", {"area": "sim-floodplain-0"}) == 0
    coarse = sum(g.count for g in map(coarse_grid, daemon.adapters[0].grids))
    assert gauge("eowatch_targets_tracked", {"targets": "cells"}) == 2 * 60 * 80 + coarse


def test_replaying_the_radar_stream_opens_no_second_event(daemon):
    drain(daemon, timeout_s=300)
    before = daemon.store.list_alerts(limit=1000).items
    daemon.consumer.consumer.seek({tp: 0 for tp in daemon.consumer.consumer.assignment()})
    drain(daemon, timeout_s=300)
    assert daemon.store.list_alerts(limit=1000).items == before
    assert daemon.consumer.tally["alerts"] == len(before)  # the replay emitted none


def test_the_feeds_areas_are_the_simulators_cells(tmp_path, unique):
    """The registered grid maps cell for cell onto the simulator's rows and columns, and an
    import of the registered outline gives the same grid."""
    from eowatch.cells import area_cell_rows, grid_of

    daemon = radar_daemon(tmp_path, "embedded", unique, areas=1)
    try:
        (area,) = daemon.store.list_areas()
        grid = grid_of(area["id"], area["geometry"])
        assert area_cell_rows(grid, daemon.settings.shards)[0] == area["grid"]
        sim = AreaSimulator()
        assert grid.inside.shape == (sim.rows, sim.cols) and grid.inside.all()
        assert np.isclose(shapely.geometry.shape(json.loads(area["geometry"])).centroid.x,
                          -1.63, atol=0.05)
    finally:
        daemon.shutdown()


def test_the_api_shows_alerts_areas_and_the_current_extent(tmp_path, unique):
    from fastapi.testclient import TestClient

    from eowatch.daemon.api import create_app

    # a flood still going on when the record ends
    daemon = radar_daemon(tmp_path, "embedded", unique, areas=1, flood_days=(365 + 330,),
                          flood_duration_days=60)
    try:
        drain(daemon, timeout_s=300)
        client = TestClient(create_app(daemon.store, daemon.bus, daemon.metrics,
                                       daemon.model.metadata, daemon.model.sha256))
        everything = client.get("/alerts").json()
        assert everything["total"] >= 2 and everything["next_offset"] is None
        assert [a["kind"] for a in everything["items"]][0] == "flood.opened"
        assert "flood.closed" not in [a["kind"] for a in everything["items"]]
        page = client.get("/alerts", params={"limit": 1, "offset": 1}).json()
        assert page["items"] == everything["items"][1:2] and page["next_offset"] == 2
        opened = client.get("/alerts", params={"kind": "flood.opened"}).json()["items"]
        assert len(opened) == 1
        later = client.get("/alerts", params={"since": everything["items"][1]["observed_at"]})
        assert later.json()["total"] == everything["total"] - 1
        assert client.get("/alerts", params={"area": "elsewhere"}).json()["total"] == 0
        assert client.get("/alerts", params={"kind": "flood.sunk"}).status_code == 422
        assert client.get("/alerts", params={"since": "2026-01-01T00:00:00"}).status_code == 422

        area = client.get("/areas/sim-floodplain-0").json()
        statuses = area["by_status"]
        assert area["cells"] == 60 * 80 == sum(s["cells"] for s in statuses.values())
        assert statuses["unobserved"]["cells"] == statuses["warming_up"]["cells"] == 0
        assert statuses["reference_water"]["cells"] > 100    # the river and the sand
        assert statuses["excluded"]["cells"] > 100           # the town and the forest
        assert statuses["flooded"]["cells"] > 100
        assert area["open_event"]["event_id"] == opened[0]["event_id"]
        # radar alone: the weather satellites' cells exist and nothing observed them
        coarse = area["weather_satellites"]
        assert coarse["cells"] == coarse["by_status"]["unobserved"]["cells"] > 0
        assert coarse["cell_size_m"] == 2000 and coarse["flooded_km2"] == 0
        assert client.get("/areas/nowhere").status_code == 404

        feature = client.get("/areas/sim-floodplain-0/flood.geojson")
        assert feature.headers["content-type"] == "application/geo+json"
        extent = shapely.geometry.shape(feature.json()["geometry"])
        assert reproject(extent, 4326, 32630).area / 1e6 == pytest.approx(
            statuses["flooded"]["km2"], abs=0.0016)
        png = client.get("/areas/sim-floodplain-0/flood.png")
        assert png.headers["content-type"] == "image/png"
        from matplotlib.image import imread
        image = imread(io.BytesIO(png.content))
        assert image.shape[:2] == (300, 400)  # 60 x 80 cells, 5 px each
        flood_blue = np.all(np.isclose(image[..., :3], (0.05, 0.45, 0.95), atol=0.01), axis=-1)
        assert flood_blue.sum() == statuses["flooded"]["cells"] * 25

        # a flooded cell's evidence: its radar passes, its status after each, the alerts
        t = daemon.areas.table
        rows = t.live[t.outputs[t.live, 0] == 2]  # flood.STATUS_NAMES: flooded
        cell = str(t.ids[rows[0]])
        evidence = client.get(f"/cells/{cell}/evidence").json()
        steps = evidence["steps"]
        year = int(opened[0]["observed_at"][:4])  # the record's last year
        assert evidence["area_id"] == "sim-floodplain-0" and evidence["year"] == year
        assert set(steps["evidence"]) == {"radar"} and steps["status"][-1] == "flooded"
        assert steps["dates"] == sorted(steps["dates"]) and steps["p_flood"][-1] > 0.5
        assert len(steps["bands"]["VV"]) == len(steps["dates"])
        assert [a["kind"] for a in evidence["alerts"]][0] == "flood.opened"
        earlier = client.get(f"/cells/{cell}/evidence", params={"year": year - 1}).json()
        assert earlier["steps"]["status"][0] == "warming_up" and not earlier["alerts"]
        png = client.get(f"/cells/{cell}/evidence.png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        assert client.get("/cells/sim-floodplain-0/999-999/evidence").status_code == 404
    finally:
        daemon.shutdown()
