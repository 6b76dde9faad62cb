"""Every flood feed at once, on both buses: the simulated radar and weather-satellite feeds over
their floodplains, and GOES (a public bucket), DSCOVR EPIC (its API) and Meteosat (a Data Store)
served locally over one watched area, whose coarse cells each sensor then teaches."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.adapters.epic import FACTORS, parse_listing
from eowatch.adapters.fci import chunk_number
from eowatch.cells import CellGrid, area_cell_rows, stored_coarse_grid
from eowatch.daemon.store.tables import DeadLetter
from eowatch.models import flood_geo
from tests.data.epic import LISTING, write_l1b
from tests.data.goes import write_abi, write_mask
from tests.data.meteosat import DataStore, chunk_name, write_chunk
from tests.data.sentinel2 import StacServer

from .pipeline import drain, make_daemon

MOUTH = (-49.0, -1.0)                   # the Amazon's mouth: seen by GOES-16, MTG and EPIC
SCAN = datetime(2025, 9, 1, 15, 0, 17, tzinfo=UTC)
CYCLE = datetime(2025, 9, 1, 14, 0, 7, tzinfo=UTC)
WORLD = {"years": 1, "days_per_second": 1e6, "areas": 1}
PUBLIC = {"ACL": "public-read"}


def goes_key(kind: str, band: int | None = None) -> str:
    stamp = f"s{SCAN:%Y%j%H%M%S}0_e{SCAN:%Y%j%H%M%S}9_c{SCAN:%Y%j%H%M%S}9"
    if kind == "mask":
        return f"ABI-L2-ACMF/{SCAN:%Y/%j/%H}/OR_ABI-L2-ACMF-M6_G16_{stamp}.nc"
    return f"ABI-L1b-RadF/{SCAN:%Y/%j/%H}/OR_ABI-L1b-RadF-M6C{band:02d}_G16_{stamp}.nc"


def serve_goes(s3_endpoint, tmp_path) -> str:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    name = f"noaa-goes16-{abs(hash(tmp_path.name)) % 10**8}"
    s3.create_bucket(Bucket=name, ACL="public-read")
    seconds = (SCAN - datetime(2000, 1, 1, 12, tzinfo=UTC)).total_seconds()
    for band, dn in ((2, 300), (3, 900), (5, 500)):
        path = tmp_path / f"goes{band}.nc"
        write_abi(path, lambda r, c, v=dn: np.full(r.shape, v), band=band,
                  seconds_since_2000=seconds, full_disk=True)
        s3.upload_file(str(path), name, goes_key("band", band), ExtraArgs=PUBLIC)
    path = tmp_path / "mask.nc"
    write_mask(path, lambda r, c: np.zeros(r.shape), seconds, full_disk=True)
    s3.upload_file(str(path), name, goes_key("mask"), ExtraArgs=PUBLIC)
    return f"{s3_endpoint}/{name}"


def serve_epic(server) -> datetime:
    """The day's image whose disk is centred nearest the area, in the real listing."""
    raw = json.loads(LISTING.read_text())
    image = min(parse_listing(raw), key=lambda i: abs(i.centroid[0] - MOUTH[0]))
    listing = server.root / "api" / "natural" / "date" / f"{image.taken_at:%Y-%m-%d}"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text(json.dumps([i for i in raw if i["identifier"] == image.identifier]))
    for before in (1, 2):                  # the look-back's days, without images
        listing.with_name(f"{image.taken_at - timedelta(days=before):%Y-%m-%d}").write_text(
            "[]")
    path = server.root / "cogs" / image.product
    import h5py

    for band, value in (("Band551nm", 0.05), ("Band680nm", 0.04), ("Band780nm", 0.3)):
        part = path.with_suffix(f".{band}.h5")
        write_l1b(part, image.centroid, lambda lon, lat, v=value, b=band:
                  np.full(lon.shape, v / FACTORS[b]), size=1024, bands=(band,))
        with h5py.File(part) as source, h5py.File(path, "a") as out:
            source.copy(band, out)
    return image.taken_at


def serve_meteosat(datastore, tmp_path) -> None:
    number = chunk_number(MOUTH[1], MOUTH[0])
    files = []
    for n in (number - 1, number, number + 1):
        path = tmp_path / "fci" / chunk_name(CYCLE, n)
        write_chunk(path, n, lambda channel, x, y: np.full(
            x.shape, {"vis_06": 0.05, "nir_08": 0.3, "nir_16": 0.15}[channel]))
        files.append(path)
    datastore.add(CYCLE, files)


@pytest.fixture(params=["embedded", "kafka"])
def bus(request):
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    return request.param, bootstrap


def test_all_flood_feeds_at_once(bus, tmp_path, unique, s3_endpoint):
    kind, bootstrap = bus
    bucket = serve_goes(s3_endpoint, tmp_path)
    with StacServer(tmp_path / "epic") as epic, DataStore(tmp_path / "store") as datastore:
        epic_time = serve_epic(epic)
        serve_meteosat(datastore, tmp_path)
        daemon = make_daemon(
            tmp_path, kind, unique, bootstrap,
            feeds=("simulated-sentinel1", "simulated-geostationary", "goes", "epic",
                   "meteosat"),
            feed_settings={
                "simulated-sentinel1": WORLD,
                "simulated-geostationary": {**WORLD, "interval_minutes": 240},
                "goes": {"bucket_url": bucket, "product": "RadF",
                         "start": SCAN - timedelta(minutes=30)},
                "epic": {"api_url": epic.url, "l1b_url": "{api_url}/cogs/{product}",
                         "start": epic_time - timedelta(minutes=1)},
                "meteosat": {"api_url": datastore.url, "consumer_key": "consumer-key",
                             "consumer_secret": "consumer-secret",
                             "start": CYCLE - timedelta(minutes=30)}})
        try:
            outline = shapely.box(MOUTH[0] - 0.2, MOUTH[1] - 0.15, MOUTH[0] + 0.2,
                                  MOUTH[1] + 0.15)
            grid = CellGrid.of("mouth", outline, 200)
            daemon.store.upsert_areas([{"id": "mouth", "geometry": shapely.to_geojson(outline),
                                        "source": "test"}])
            daemon.store.replace_cells("mouth", *area_cell_rows(grid, daemon.settings.shards))
            nows = {"goes": SCAN, "epic": epic_time, "meteosat": CYCLE}
            for feed in daemon.adapters:
                if feed.name in nows:
                    feed.now = lambda t=nows[feed.name]: t + timedelta(minutes=30)
            drain(daemon, timeout_s=300)
            assert daemon.store.count(DeadLetter) == 0
            consumed = daemon.metrics.registry.get_sample_value
            for name in ("goes", "epic", "meteosat", "simulated-geostationary",
                         "simulated-sentinel1"):
                assert consumed("eowatch_observations_consumed_total", {"feed": name}) > 0, name
            # each sensor has its own normal model in the area's coarse cells
            coarse = stored_coarse_grid("mouth", daemon.store.get_area("mouth")["grid"])
            ids, _, _ = coarse.cells()
            table = daemon.areas.table
            rows = table.lookup(ids)
            assert (rows >= 0).all()
            state = flood_geo.GeoState.of(table.state.numpy()[rows])
            sensors = {int(s) - 1 for s in np.unique(state.sensor) if s > 0}
            assert sensors == {flood_geo.sensor_code(s) for s in
                               ("goes-east", "mtg-fci", "dscovr-epic")}
        finally:
            daemon.shutdown()
