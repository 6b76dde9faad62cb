"""The GOES feed against a local S3 bucket (moto) laid out as NOAA's: ABI L1b bands 2, 3, 5 and
the L2 clear-sky mask of each scan, listed page by page and read in windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.adapters.goes import FixedGrid, open_band
from eowatch.adapters.goes_feed import GoesConfig, GoesFeed
from eowatch.adapters.item_feed import Polling
from eowatch.cells import CellGrid, area_cell_rows
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.publisher import Publisher
from eowatch.models.flood_geo import GEO_BANDS, sensor_code
from eowatch.solar import solar_zenith
from tests.conftest import unavailable
from tests.data.goes import HEADER, write_abi, write_mask

SHARDS = 8
BUCKET = "noaa-goes19"
SCAN = datetime(2025, 9, 1, 18, 0, 17, tzinfo=UTC)
KAPPA0 = {2: 0.0019, 3: 0.0031, 5: 0.0052}
CLEAR_DN = {2: 300, 3: 900, 5: 500}     # a vegetated field under a clear sky
CLOUD_DN = 3500                          # cloud: bright in every band
CENTRE = (750, 1240)                     # the area's pixel on the CONUS fixed grid
PUBLIC = {"ACL": "public-read"}


@pytest.fixture(scope="module", autouse=True)
def header():
    if not HEADER.is_file():
        unavailable("the shared GOES header", f"{HEADER} not found")


def key(kind: str, start: datetime, band: int | None = None) -> str:
    stamp = f"s{start:%Y%j%H%M%S}{start.microsecond // 100000}"
    end = f"e{start:%Y%j%H%M%S}9_c{start:%Y%j%H%M%S}9"
    if kind == "mask":
        return f"ABI-L2-ACMC/{start:%Y/%j/%H}/OR_ABI-L2-ACMC-M6_G19_{stamp}_{end}.nc"
    return (f"ABI-L1b-RadC/{start:%Y/%j/%H}/OR_ABI-L1b-RadC-M6C{band:02d}_G19_{stamp}_"
            f"{end}.nc")


def seconds(when: datetime) -> float:
    return (when - datetime(2000, 1, 1, 12, tzinfo=UTC)).total_seconds()


@pytest.fixture
def bucket(s3_endpoint, tmp_path):
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    name = f"{BUCKET}-{abs(hash(tmp_path.name)) % 10**8}"
    s3.create_bucket(Bucket=name, ACL="public-read")   # NOAA's buckets are public
    return s3, name, f"{s3_endpoint}/{name}"


def put_scan(s3, name, tmp_path, start, cloudy_cols=None, bands=(2, 3, 5), mask=True,
             dn=None):
    """Upload one scan; pixels in columns below ``cloudy_cols`` are cloudy (bright, masked)."""
    split = -1 if cloudy_cols is None else cloudy_cols
    for band in bands:
        path = tmp_path / f"b{band}_{start:%H%M}.nc"
        value = CLEAR_DN[band] if dn is None else dn
        write_abi(path, lambda r, c, v=value: np.where(c < split, CLOUD_DN, v), band=band,
                  seconds_since_2000=seconds(start), kappa0=KAPPA0[band])
        s3.upload_file(str(path), name, key("band", start, band), ExtraArgs=PUBLIC)
    if mask:
        path = tmp_path / f"mask_{start:%H%M}.nc"
        write_mask(path, lambda r, c: np.where(c < split, 1, 0), seconds(start))
        s3.upload_file(str(path), name, key("mask", start), ExtraArgs=PUBLIC)


def grid_geometry(tmp_path) -> FixedGrid:
    path = tmp_path / "probe.nc"
    write_abi(path, lambda r, c: np.zeros_like(r))
    with open_band(str(path)) as band:
        return band.grid


def register(store, fixed: FixedGrid) -> CellGrid:
    lon, lat = fixed.lonlat(np.array([float(CENTRE[0])]), np.array([float(CENTRE[1])]))
    outline = shapely.box(lon[0] - 0.06, lat[0] - 0.04, lon[0] + 0.06, lat[0] + 0.04)
    grid = CellGrid.of("delta", outline, 40)
    store.upsert_areas([{"id": "delta", "geometry": shapely.to_geojson(outline),
                         "source": "test"}])
    store.replace_cells("delta", *area_cell_rows(grid, SHARDS))
    return grid


def make_feed(store, url, now, **config):
    bus = EmbeddedBus(store)
    metrics = Metrics()
    feed = GoesFeed(Publisher(bus, store, "t.observations"), SHARDS,
                    GoesConfig(bucket_url=url, page_size=3, **config),
                    Polling(SCAN - timedelta(minutes=30), timedelta(hours=2), 12, 2), 300.0,
                    metrics, now=lambda: now[0])
    return feed, metrics, bus


def published(bus) -> list[ObservationChunk]:
    consumer = bus.consumer("check", ["t.observations"], 10_000)
    return [ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.1)]


def reflectance(band: int, dn: float) -> float:
    from tests.data.goes import parse_cdl

    _, variables = parse_cdl(HEADER.read_text())
    rad = variables["Rad"]["attrs"]
    return KAPPA0[band] * (float(rad["scale_factor"]) * dn + float(rad["add_offset"]))


def test_a_scan_is_read_per_coarse_cell_without_its_cloudy_pixels(bucket, feed_store,
                                                                   tmp_path):
    s3, name, url = bucket
    register(feed_store, grid_geometry(tmp_path))
    put_scan(s3, name, tmp_path, SCAN, cloudy_cols=CENTRE[1])   # the area's west half cloudy
    put_scan(s3, name, tmp_path, SCAN + timedelta(minutes=5))
    now = [SCAN + timedelta(minutes=20)]
    feed, metrics, bus = make_feed(feed_store, url, now)
    assert feed.poll() > 0
    chunks = published(bus)
    assert {c.acquisition_id for c in chunks} == {"goes-east_RadC_2025244180017",
                                                   "goes-east_RadC_2025244180517"}
    first = [c for c in chunks if c.acquired_at == SCAN]
    assert first[0].band_names == GEO_BANDS and first[0].targets == "cells"
    values = np.concatenate([c.values for c in first]).astype(np.float64)
    ids = np.concatenate([c.parcel_ids for c in first])
    assert all(i.startswith("delta#geo/") for i in ids)
    red, nir, swir, index, clear, zenith, sensor = values.T
    expected = {b: reflectance(b, CLEAR_DN[b]) for b in (2, 3, 5)}
    seen = clear > 0
    assert (clear == 0).any() and (clear == 1).any() and seen.any()
    # cloudy pixels are left out: what is averaged is the clear field, never the cloud
    np.testing.assert_allclose(red[seen], expected[2], rtol=1e-5)
    np.testing.assert_allclose(nir[seen], expected[3], rtol=1e-5)
    np.testing.assert_allclose(swir[seen], expected[5], rtol=1e-5)
    water = (expected[2] - expected[5]) / (expected[2] + expected[5])
    np.testing.assert_allclose(index[seen], water, rtol=1e-5)
    assert np.isnan(red[clear == 0]).all()
    assert (sensor == sensor_code("goes-east")).all()
    # the solar zenith angle at each coarse cell's centre at the scan's start
    from eowatch.adapters.geo_cells import coarse_areas

    (area,) = coarse_areas(feed.host, SHARDS)
    cells = dict(zip(area.grid.cells()[0], zip(area.lon, area.lat, strict=True), strict=True))
    for target, angle in zip(ids, zenith, strict=True):
        assert abs(angle - solar_zenith(*cells[target], SCAN)) < 1e-3
    assert metrics.registry.get_sample_value("eowatch_feed_items_total",
                                             {"feed": "goes", "outcome": "published"}) == 2
    assert feed.poll() == 0                       # the cursor is past both scans


def test_a_scan_without_its_mask_waits_then_is_skipped_with_its_reason(bucket, feed_store,
                                                                     tmp_path):
    s3, name, url = bucket
    register(feed_store, grid_geometry(tmp_path))
    put_scan(s3, name, tmp_path, SCAN, mask=False)
    now = [SCAN + timedelta(minutes=10)]
    feed, metrics, bus = make_feed(feed_store, url, now)
    assert feed.poll() == 0 and feed.cursor().skipped == []     # may still come
    now[0] = SCAN + timedelta(hours=1, minutes=1)
    assert feed.poll() == 0
    (skipped,) = feed.cursor().skipped
    assert "the clear-sky mask never appeared" in skipped["reason"]
    assert metrics.registry.get_sample_value("eowatch_feed_items_total",
                                             {"feed": "goes", "outcome": "skipped"}) == 1


def test_a_corrupt_file_is_retried_then_skipped(bucket, feed_store, tmp_path):
    from eowatch.adapters.item_feed import ItemError

    s3, name, url = bucket
    register(feed_store, grid_geometry(tmp_path))
    put_scan(s3, name, tmp_path, SCAN)
    s3.put_object(Bucket=name, Key=key("band", SCAN, 3), Body=b"\x89HDF\r\n\x1a\n" + b"0" * 64,
                  ACL="public-read")
    now = [SCAN + timedelta(minutes=20)]
    feed, metrics, bus = make_feed(feed_store, url, now)
    with pytest.raises(ItemError, match="not a readable HDF5 file"):
        feed.poll()
    assert feed.poll() == 0                        # the second attempt gives up on it
    (skipped,) = feed.cursor().skipped
    assert skipped["id"] == "goes-east_RadC_2025244180017"
    assert published(bus) == []


@pytest.mark.parametrize("case", ["night", "fill"])
def test_night_and_fill_give_no_observations(bucket, feed_store, tmp_path, case):
    s3, name, url = bucket
    register(feed_store, grid_geometry(tmp_path))
    start = SCAN.replace(hour=6) if case == "night" else SCAN   # 06 UTC: night over the US
    put_scan(s3, name, tmp_path, start, dn=4095 if case == "fill" else None)
    now = [start + timedelta(minutes=20)]
    feed, metrics, bus = make_feed(feed_store, url, now)
    feed.polling = Polling(start - timedelta(minutes=30), timedelta(hours=2), 12, 2)
    assert feed.poll() == 0 and published(bus) == []
    assert metrics.registry.get_sample_value("eowatch_feed_items_total",
                                             {"feed": "goes", "outcome": "no_parcels"}) == 1
    assert feed.cursor().datetime == start          # read, and nothing to say: not retried
