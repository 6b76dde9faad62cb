"""Weather-satellite evidence end to end: the simulated radar and weather-satellite feeds of the
same floodplain -> bus -> the flood model's 40 m and coarse cells -> an event the weather
satellites open within hours and the next radar pass confirms, on both buses."""

from __future__ import annotations

from datetime import datetime

import pytest

from eowatch.daemon.store.tables import DeadLetter

from .pipeline import drain, make_daemon
from .test_floods import bus_alerts

# one year; the flood begins a hair after a radar pass, so that the next one is four days off
WORLD = {"years": 1, "days_per_second": 1e6, "areas": 1, "seed": 3, "flood_days": "152.8",
         "flood_duration_days": 20, "flood_reach_cells": 14}


@pytest.fixture(params=["embedded", "kafka"])
def daemon(request, tmp_path, unique):
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    d = make_daemon(tmp_path, request.param, unique, bootstrap,
                    feeds=("simulated-sentinel1", "simulated-geostationary"),
                    feed_settings={"simulated-sentinel1": WORLD,
                                   "simulated-geostationary": {**WORLD,
                                                               "interval_minutes": 120}})
    yield d
    d.shutdown()


def play(daemon, step_days: float = 0.5) -> None:
    """Publish both feeds half a day at a time, as they reach the bus in service (radar some
    hours late, weather satellites within minutes), then consume everything."""
    now = [0.0]
    for feed in daemon.adapters:
        feed.clock, feed.days_per_second, feed._last_poll = (lambda: now[0]), 1.0, 0.0
    while not all(feed.finished for feed in daemon.adapters):
        now[0] += step_days
        for feed in daemon.adapters:
            feed.poll()
    drain(daemon, timeout_s=300)


def test_weather_satellites_open_the_event_and_radar_confirms_it(daemon):
    play(daemon)
    assert daemon.store.count(DeadLetter) == 0
    alerts = sorted(daemon.store.list_alerts(limit=1000).items,
                    key=lambda a: (a["observed_at"], a["kind"] != "flood.opened"))
    assert {a["alert_id"]: a for a in bus_alerts(daemon)} == {a["alert_id"]: a for a in alerts}
    onset = datetime.fromisoformat("2025-06-02T19:12:00+00:00")
    during = [a for a in alerts if a["observed_at"] >= onset.isoformat()]
    opened = during[0]
    flood_event = [a for a in during if a["event_id"] == opened["event_id"]]
    # anything else the weather satellites opened, nothing at 40 m confirmed: withdrawn
    for event in {a["event_id"] for a in alerts} - {opened["event_id"]}:
        kinds = [a["kind"] for a in alerts if a["event_id"] == event]
        assert kinds[0] == "flood.opened" and kinds[-1] == "flood.withdrawn"
        assert "flood.confirmed" not in kinds
    assert opened["kind"] == "flood.opened" and opened["evidence"] == "geostationary"
    assert not opened["confirmed"] and opened["sources"] == ["simulated-geostationary"]
    hours = (datetime.fromisoformat(opened["observed_at"]) - onset).total_seconds() / 3600
    assert hours < 94    # the next radar pass is 94 hours after the onset
    kinds = [a["kind"] for a in flood_event]
    assert kinds[-1] == "flood.closed" and kinds.count("flood.confirmed") == 1
    first = kinds.index("flood.confirmed")
    assert set(kinds[1:first]) <= {"flood.updated"}     # until then, weather satellites' own
    confirmed = flood_event[first]
    assert confirmed["evidence"] == "radar" and confirmed["confirmed"]
    assert set(confirmed["seen_by"]) == {"radar", "geostationary"}
    # the coarse cells' extent is where the weather satellites saw water: inside the area
    assert opened["extent"]["type"] == "MultiPolygon" and opened["extent"]["coordinates"]
    gauge = daemon.metrics.registry.get_sample_value
    assert gauge("eowatch_alerts_total", {"kind": "flood.confirmed"}) >= 1
    # the API shows what the weather satellites last made of the area's coarse cells
    from fastapi.testclient import TestClient

    from eowatch.daemon.api import create_app

    daemon.consumer.checkpoint()
    client = TestClient(create_app(daemon.store, daemon.bus, daemon.metrics,
                                   daemon.model.metadata, daemon.model.sha256))
    coarse = client.get("/areas/sim-floodplain-0").json()["weather_satellites"]
    assert coarse["by_status"]["unobserved"]["cells"] == 0
    assert coarse["cells"] == sum(s["cells"] for s in coarse["by_status"].values())
    assert coarse["flooded_km2"] >= 0
