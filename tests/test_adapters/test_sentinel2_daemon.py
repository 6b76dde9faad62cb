"""End to end: a served Sentinel-2 feed -> chunks -> parcel state -> decisions, on both buses.

A simulated season is painted into COGs, one item per acquisition; the daemon reads the STAC
API, measures the parcels and decides. Its decisions must equal the bundled model's offline
forward pass over the same values (as the files store them: whole digital numbers).
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.contract.messages import shard_of
from eowatch.daemon.observation_log import LOG_BANDS
from eowatch.daemon.store.store import Store
from eowatch.daemon.store.tables import DeadLetter
from eowatch.models.artifact import load_artifact
from eowatch.models.datasets.breizhcrops import S2_BANDS
from eowatch.models.datasets.simulator import ParcelSimulator
from eowatch.models.metrics import predict
from eowatch.settings import DEFAULT_MODEL
from tests.data.sentinel2 import BAND_RESOLUTION, T30UWU, Scene, StacServer, aligned_window
from tests.test_daemon.pipeline import drain, make_daemon

from .test_sentinel2 import grid_parcels

N_PARCELS, LAST_DAY, SHARDS = 12, 240, 8
OVERPASS = timedelta(hours=10, minutes=30)


def quantised(values: np.ndarray) -> np.ndarray:
    """Reflectance as the files hold it: raw DN (offset +1000 applied by the writer), back;
    then rounded to float16 as the daemon steps it when it keeps its observation log."""
    reflectance = (np.clip(np.round(values * 10_000) + 1000, 1, 65535) - 1000) / 10_000
    return reflectance.astype(LOG_BANDS).astype(np.float32)


@pytest.fixture(scope="module")
def season(tmp_path_factory):
    """The served feed and what the offline model decides on the same values."""
    root = tmp_path_factory.mktemp("s2season")
    sim = ParcelSimulator(N_PARCELS, seed=5, n_tiles=1)
    columns = [S2_BANDS.index(b) for b in BAND_RESOLUTION]
    window = aligned_window(T30UWU, -1.7, 48.1, 1500, 900)
    parcels = grid_parcels(window, N_PARCELS)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with StacServer(root) as server:
        for acquisition in sim.acquisitions():
            if acquisition.day > LAST_DAY:
                break
            cloudy = np.flatnonzero(acquisition.valid_fraction < 0.5)
            server.add(Scene(
                T30UWU, window, start + timedelta(days=acquisition.day) + OVERPASS,
                parcels=parcels, parcel_values=acquisition.values[:, columns], raw=True,
                offset_applied_flag=False,
                clouds=[tuple(shapely.bounds(parcels[i])) for i in cloudy],
                item_id=f"S2B_30UWU_{start + timedelta(days=acquisition.day):%Y%m%d}_0_L2A"))
        loaded = load_artifact(DEFAULT_MODEL)
        series = sim.series(min_valid_fraction=0.5).select_bands(loaded.metadata.band_names)
        series = series.truncate(int((np.nan_to_num(series.days, nan=1e9) <= LAST_DAY)
                                     .sum(axis=1).max()))
        series = replace(series, values=quantised(series.values),
                         days=series.days + np.float32(OVERPASS / timedelta(days=1)))
        offline = predict(loaded.model, series, loaded.metadata.stop_threshold)
        names = loaded.metadata.class_names
        expected = {}
        for i in range(N_PARCELS):
            step = offline.stop_step[i]
            if offline.p_stop[i, step] >= loaded.metadata.stop_threshold:  # fired in the window
                expected[f"s2-{i:02d}"] = (names[offline.predicted[i]], float(offline.stop_day[i]))
        yield server, parcels, expected


def register(tmp_path, parcels) -> None:
    store = Store(f"sqlite:///{tmp_path / 'eowatch.db'}")
    store.migrate()
    store.upsert_parcels([
        {"id": f"s2-{i:02d}", "shard": shard_of(f"s2-{i:02d}", SHARDS), "source": "test.gpkg",
         "geometry": json.dumps(json.loads(shapely.to_geojson(T30UWU.to_lonlat(p))))}
        for i, p in enumerate(parcels)])
    store.close()


@pytest.mark.parametrize("bus", ["embedded", "kafka"])
def test_served_feed_to_decisions(season, bus, tmp_path, unique, request):
    server, parcels, expected = season
    assert N_PARCELS // 2 <= len(expected) < N_PARCELS, expected  # most, not all, decide
    register(tmp_path, parcels)
    bootstrap = request.getfixturevalue("kafka_bootstrap") if bus == "kafka" else None
    daemon = make_daemon(tmp_path, bus, unique, bootstrap, feeds=("sentinel2",),
                         feed_settings={"sentinel2": {
                             "stac_url": server.url, "start": datetime(2026, 1, 1, tzinfo=UTC),
                             "max_items_per_poll": 500}})
    try:
        drain(daemon)
        decisions = {d["parcel_id"]: d for d in daemon.store.list_decisions(limit=100).items}
        assert daemon.store.count(DeadLetter) == 0
        assert {p: (d["class"], pytest.approx(d["day_of_season"], abs=1e-3))
                for p, d in decisions.items()} == {p: (c, day) for p, (c, day)
                                                   in expected.items()}
        assert {d["feed"] for d in decisions.values()} == {"sentinel2"}
        items = daemon.metrics.registry.get_sample_value(
            "eowatch_feed_items_total", {"feed": "sentinel2", "outcome": "published"})
        assert items == len(server.items)
    finally:
        daemon.shutdown()


def test_backfilled_archive_then_live_decides_as_a_whole_live_season(season, tmp_path, unique,
                                                                   monkeypatch, capsys):
    """The archive up to a mid-season date replayed by `eowatch backfill`, then the daemon
    started on it: the decisions of a daemon that read the whole season live."""
    server, parcels, expected = season
    register(tmp_path, parcels)
    for name, value in {"DATA_DIR": str(tmp_path), "SHARDS": str(SHARDS), "PARTITIONS": "4",
                        "TOPIC_PREFIX": unique, "S2_STAC_URL": server.url}.items():
        monkeypatch.setenv(f"EOWATCH_{name}", value)
    middle = f"{datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=LAST_DAY // 2):%Y-%m-%d}"
    from eowatch.cli import main

    assert main(["backfill", "--feed", "sentinel2", "--since", "2026-01-01",
                 "--until", middle]) == 0
    report = capsys.readouterr().out
    assert "the live feed continues from here" in report and "0 skipped" in report
    daemon = make_daemon(tmp_path, "embedded", unique, feeds=("sentinel2",),
                         feed_settings={"sentinel2": {"stac_url": server.url,
                                                      "max_items_per_poll": 500}})
    try:
        drain(daemon)
        decisions = {d["parcel_id"]: d for d in daemon.store.list_decisions(limit=100).items}
        assert {p: (d["class"], pytest.approx(d["day_of_season"], abs=1e-3))
                for p, d in decisions.items()} == {p: (c, day) for p, (c, day)
                                                   in expected.items()}
        live = daemon.metrics.registry.get_sample_value(
            "eowatch_feed_items_total", {"feed": "sentinel2", "outcome": "published"})
        backfilled = int(report.split(": ")[1].split(" ")[0])
        assert 0 < live < len(server.items) and backfilled + live == len(server.items)
        assert (daemon.metrics.registry.get_sample_value(
            "eowatch_observations_skipped_total", {"reason": "duplicate"}) or 0) == 0
        assert daemon.store.count(DeadLetter) == 0
    finally:
        daemon.shutdown()
