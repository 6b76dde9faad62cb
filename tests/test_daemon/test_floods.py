"""Flood alerts end to end: the simulated radar feed -> bus -> the flood model's cells ->
one event per flood and area, on both buses, with the alerts on the bus and in the store."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.daemon.store.tables import AlertRow, DeadLetter
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
        from eowatch.geometry import reproject
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
    assert gauge("eowatch_targets_tracked", {"targets": "cells"}) == 2 * 60 * 80


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
    from eowatch.cells import grid_of

    daemon = radar_daemon(tmp_path, "embedded", unique, areas=1)
    try:
        (area,) = daemon.store.list_areas()
        grid = grid_of(area["id"], area["geometry"])
        assert grid.definition() == area["grid"]
        sim = AreaSimulator()
        assert grid.inside.shape == (sim.rows, sim.cols) and grid.inside.all()
        assert np.isclose(shapely.geometry.shape(json.loads(area["geometry"])).centroid.x,
                          -1.63, atol=0.05)
    finally:
        daemon.shutdown()
