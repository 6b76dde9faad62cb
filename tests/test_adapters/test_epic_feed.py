"""The EPIC feed against the API's real listing and L1B products in the real layout, served
locally with range requests."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.adapters.epic import CLOUD_RED, FACTORS, parse_listing
from eowatch.adapters.epic_feed import EpicConfig, EpicFeed
from eowatch.adapters.item_feed import ItemError, ListingError, Polling
from eowatch.cells import CellGrid, area_cell_rows
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.publisher import Publisher
from eowatch.models.flood_geo import GEO_BANDS, sensor_code
from tests.conftest import unavailable
from tests.data.epic import LISTING, write_l1b

SHARDS = 8
DAY = datetime(2015, 10, 31, tzinfo=UTC)
GREEN, RED, NIR = 0.06, 0.05, 0.30       # a green field: NDWI (g - n) / (g + n) < 0


@pytest.fixture(scope="module")
def images():
    if not LISTING.is_file():
        unavailable("the shared EPIC fixtures", f"{LISTING} not found")
    return parse_listing(json.loads(LISTING.read_text()))


def serve_listing(root, day=DAY, text=None):
    path = root / "api" / "natural" / "date" / f"{day:%Y-%m-%d}"
    path.parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copy(LISTING, path)
    else:
        path.write_text(text)


def counts(band_reflectance, cloudy_east_of=None):
    def draw(lon, lat):
        rate = np.full(lon.shape, band_reflectance)
        if cloudy_east_of is not None:
            rate = np.where(lon > cloudy_east_of, 0.6, rate)       # a bright cloud
        return rate
    return draw


def write_image(server, image, cloudy_east_of=None, size=1024):
    path = server.root / "cogs" / image.product
    for band, value in (("Band551nm", GREEN), ("Band680nm", RED), ("Band780nm", NIR)):
        part = path.with_suffix(f".{band}.h5")
        write_l1b(part, image.centroid,
                  lambda lon, lat, v=value, b=band: counts(v, cloudy_east_of)(lon, lat)
                  / FACTORS[b], size=size, bands=(band,))
    # one file with the three band groups, as the product has
    import h5py

    with h5py.File(path, "w") as out:
        for band in ("Band551nm", "Band680nm", "Band780nm"):
            with h5py.File(path.with_suffix(f".{band}.h5")) as part:
                part.copy(band, out)
    return path


def register(store, lon, lat) -> CellGrid:
    outline = shapely.box(lon - 0.4, lat - 0.3, lon + 0.4, lat + 0.3)
    grid = CellGrid.of("lagoon", outline, 40 * 25)      # 1 km cells: the fine grid is coarse
    store.upsert_areas([{"id": "lagoon", "geometry": shapely.to_geojson(outline),
                         "source": "test"}])
    store.replace_cells("lagoon", *area_cell_rows(grid, SHARDS, 10_000))
    return grid


def make_feed(store, url, now):
    bus = EmbeddedBus(store)
    metrics = Metrics()
    feed = EpicFeed(Publisher(bus, store, "t.observations"), SHARDS,
                    EpicConfig(api_url=url, l1b_url="{api_url}/cogs/{product}"),
                    Polling(DAY, timedelta(hours=48), 20, 2), 1800.0, metrics,
                    now=lambda: now)
    return feed, metrics, bus


def published(bus) -> list[ObservationChunk]:
    consumer = bus.consumer("check", ["t.observations"], 10_000)
    return [ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.1)]


def test_an_image_in_view_gives_each_coarse_cell_its_reflectance_and_clouds(
        server, feed_store, images):
    image = images[4]                                    # 2015-10-31 ~09:00, over Africa
    lon0, lat0 = image.centroid
    register(feed_store, lon0 + 10, lat0 + 5)
    # the day's real listing, cut to this image and the next
    wanted = {images[4].identifier, images[5].identifier}
    raw = [i for i in json.loads(LISTING.read_text()) if i["identifier"] in wanted]
    serve_listing(server.root, text=json.dumps(raw))
    for before in (1, 2):                                 # days without images list none
        serve_listing(server.root, DAY - timedelta(days=before), "[]")
    write_image(server, image, cloudy_east_of=lon0 + 10)   # the area's east half clouded
    feed, metrics, bus = make_feed(feed_store, server.url, DAY + timedelta(hours=23))
    with pytest.raises(ItemError, match=images[5].identifier):   # not served: retried
        feed.poll()
    chunks = [c for c in published(bus) if c.acquisition_id == f"EPIC_{image.identifier}"]
    assert chunks and chunks[0].band_names == GEO_BANDS
    assert chunks[0].acquired_at == image.taken_at
    red, nir, swir, index, clear, zenith, sensor = np.concatenate(
        [c.values for c in chunks]).astype(np.float64).T
    seen = clear > 0
    assert seen.any() and (clear < 1).any()
    np.testing.assert_allclose(red[seen], RED, rtol=1e-5)      # only clear pixels averaged
    np.testing.assert_allclose(nir[seen], NIR, rtol=1e-5)
    np.testing.assert_allclose(index[seen], (GREEN - NIR) / (GREEN + NIR), rtol=1e-5)
    assert np.isnan(swir).all() and (sensor == sensor_code("dscovr-epic")).all()
    assert (zenith < 85).all() and 0.6 > CLOUD_RED
    assert feed.cursor().id == image.identifier
    assert feed.poll() == 0                               # the second attempt gives up on it
    assert [s["id"] for s in feed.cursor().skipped] == [images[5].identifier]


def test_an_area_out_of_view_is_not_read_and_a_broken_listing_is_a_listing_error(
        server, feed_store, images):
    image = images[0]
    lon0, lat0 = image.centroid
    register(feed_store, lon0 + 180 - 360 * (lon0 > 0), -lat0)   # the far side
    raw = [i for i in json.loads(LISTING.read_text()) if i["identifier"] == image.identifier]
    serve_listing(server.root, text=json.dumps(raw))
    for before in (1, 2):
        serve_listing(server.root, DAY - timedelta(days=before), "[]")
    feed, metrics, bus = make_feed(feed_store, server.url, DAY + timedelta(hours=23))
    assert feed.poll() == 0 and published(bus) == []
    assert metrics.registry.get_sample_value(
        "eowatch_feed_items_total", {"feed": "epic", "outcome": "no_parcels"}) >= 1
    assert not any(path.startswith("/cogs/") for _, path in server.requests)
    serve_listing(server.root, DAY + timedelta(days=1), "<html>maintenance</html>")
    feed.now = lambda: DAY + timedelta(days=1, hours=1)
    with pytest.raises(ListingError, match="2015-11-01"):
        feed.poll()
