"""The Meteosat feed against a local EUMETSAT Data Store (token, search, downloads) serving FCI
L1C body chunks in the product's layout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely
from pydantic import SecretStr

from eowatch.adapters.fci import Chunk, chunk_cells, chunk_number
from eowatch.adapters.http import retrying_session
from eowatch.adapters.item_feed import Polling
from eowatch.adapters.meteosat import (
    DataStoreAuth,
    MeteosatConfig,
    MeteosatFeed,
    TokenError,
)
from eowatch.cells import CellGrid, area_cell_rows
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.publisher import Publisher
from eowatch.geometry import transformer
from eowatch.models.flood_geo import GEO_BANDS, sensor_code
from tests.data.meteosat import DataStore, write_chunk

SHARDS = 8
CYCLE = datetime(2025, 6, 2, 11, 0, 7, tzinfo=UTC)
DELTA = (12.3, 44.9)                      # the Po delta: well inside MTG's disc
FIELD = {"vis_06": 0.06, "nir_08": 0.32, "nir_16": 0.18}
CLOUD = 0.6


def scene(cloudy_east_of: float | None = None):
    """Reflectance per channel at scan angles: a field everywhere, cloud east of a longitude."""
    proj = transformer("+proj=geos +h=35786400 +lon_0=0 +a=6378137 +rf=298.257223563 "
                       "+sweep=y +units=m", "EPSG:4326")

    def reflectance(channel, x, y):
        value = np.full(x.shape, FIELD[channel])
        if cloudy_east_of is not None:
            lon, _ = proj.transform(-x * 35786400.0, y * 35786400.0)
            value = np.where(np.asarray(lon) > cloudy_east_of, CLOUD, value)
        return value
    return reflectance


@pytest.fixture
def datastore(tmp_path):
    with DataStore(tmp_path / "store") as store:
        yield store


def register(store) -> CellGrid:
    lon, lat = DELTA
    outline = shapely.box(lon - 0.15, lat - 0.1, lon + 0.15, lat + 0.1)
    grid = CellGrid.of("delta", outline, 40)
    store.upsert_areas([{"id": "delta", "geometry": shapely.to_geojson(outline),
                         "source": "test"}])
    store.replace_cells("delta", *area_cell_rows(grid, SHARDS))
    return grid


def publish_cycle(datastore, tmp_path, start, cloudy_east_of=None, numbers=None) -> str:
    numbers = numbers or [chunk_number(DELTA[1], DELTA[0])]
    files = []
    for number in numbers:
        from tests.data.meteosat import chunk_name

        path = tmp_path / "chunks" / chunk_name(start, number)
        write_chunk(path, number, scene(cloudy_east_of))
        files.append(path)
    return datastore.add(start, files)


def make_feed(store, datastore, now, key="consumer-key", secret="consumer-secret"):
    bus = EmbeddedBus(store)
    metrics = Metrics()
    config = MeteosatConfig(api_url=datastore.url, page_size=1)
    auth = DataStoreAuth(config.token_url, SecretStr(key) if key else None,
                         SecretStr(secret) if secret else None, retrying_session())
    feed = MeteosatFeed(Publisher(bus, store, "t.observations"), SHARDS, config, auth,
                        Polling(CYCLE - timedelta(minutes=30), timedelta(hours=2), 6, 2),
                        600.0, metrics, now=lambda: now)
    return feed, metrics, bus


def published(bus) -> list[ObservationChunk]:
    consumer = bus.consumer("check", ["t.observations"], 10_000)
    return [ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.1)]


def test_the_chunk_over_an_area_gives_each_coarse_cell_its_clear_reflectance(
        datastore, feed_store, tmp_path):
    register(feed_store)
    product = publish_cycle(datastore, tmp_path, CYCLE, cloudy_east_of=DELTA[0])
    publish_cycle(datastore, tmp_path, CYCLE + timedelta(minutes=10))
    feed, metrics, bus = make_feed(feed_store, datastore, CYCLE + timedelta(minutes=30))
    assert feed.poll() > 0
    chunks = published(bus)
    assert {c.acquisition_id for c in chunks} >= {product}
    mine = [c for c in chunks if c.acquisition_id == product]
    assert mine[0].band_names == GEO_BANDS and mine[0].acquired_at == CYCLE
    red, nir, swir, index, clear, zenith, sensor = np.concatenate(
        [c.values for c in mine]).astype(np.float64).T
    seen = clear > 0
    assert seen.any() and (clear < 1).any()      # the delta's east is under the cloud
    # counts are rounded: reflectance within a count's worth
    np.testing.assert_allclose(red[seen], FIELD["vis_06"], atol=2e-3)
    np.testing.assert_allclose(nir[seen], FIELD["nir_08"], atol=2e-3)
    np.testing.assert_allclose(swir[seen], FIELD["nir_16"], atol=2e-3)
    expected = (FIELD["vis_06"] - FIELD["nir_16"]) / (FIELD["vis_06"] + FIELD["nir_16"])
    np.testing.assert_allclose(index[seen], expected, atol=0.02)
    assert (sensor == sensor_code("mtg-fci")).all() and (zenith < 40).all()
    # only the body chunk over the area was downloaded, once per cycle, with a token
    downloads = [p for m, p in datastore.requests if "/entry" in p]
    assert len(downloads) == 2
    assert sum(1 for m, p in datastore.requests if p == "/token") == 1
    assert feed.poll() == 0


def test_cell_means_match_a_reference_over_the_whole_chunk(tmp_path):
    """chunk_cells' windowed read against every pixel of the chunk binned with numpy."""
    import h5py

    lon, lat = DELTA
    grid = CellGrid.of("delta#geo", shapely.box(lon - 0.15, lat - 0.1, lon + 0.15, lat + 0.1),
                       2000)
    number = chunk_number(lat, lon)

    def varied(channel, x, y):
        return 0.05 + 0.2 * ((np.floor(x / 2.7949e-05) % 7) / 7) + (channel == "nir_08") * 0.2

    path = tmp_path / "chunk.nc"
    write_chunk(path, number, varied)
    _, rows, cols = grid.cells()
    clon, clat = transformer(grid.epsg, 4326).transform(grid.x0 + (cols + 0.5) * grid.size,
                                                        grid.y1 - (rows + 0.5) * grid.size)
    with h5py.File(path) as handle:
        chunk = Chunk.of(handle)
        cells = chunk_cells(chunk, grid, np.asarray(clon), np.asarray(clat))
        whole = slice(0, handle["data/vis_06/measured/effective_radiance"].shape[0])
        red, _ = chunk.reflectance("vis_06", whole, slice(None))
        plon, plat = chunk.lonlat("vis_06", whole, slice(None))
    on = np.isfinite(plon)
    x, y = transformer(4326, grid.epsg).transform(np.where(on, plon, 0), np.where(on, plat, 0))
    r = np.floor((grid.y1 - np.asarray(y)) / grid.size)
    c = np.floor((np.asarray(x) - grid.x0) / grid.size)
    keep = on & (r >= 0) & (r < grid.inside.shape[0]) & (c >= 0) & (c < grid.inside.shape[1])
    compared = 0
    for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
        pixels = keep & (r == row) & (c == col)
        if pixels.any():           # ~1.4 km pixels at 45 N: two to six per 2 km cell
            assert abs(cells["red"][k] - red[pixels].mean()) < 1e-9
            compared += 1
        else:
            assert np.isnan(cells["red"][k])
    assert compared > 0.9 * len(rows)


def test_missing_refused_and_expired_credentials(datastore, feed_store, tmp_path):
    register(feed_store)
    publish_cycle(datastore, tmp_path, CYCLE)
    now = CYCLE + timedelta(minutes=30)
    feed, _, bus = make_feed(feed_store, datastore, now, key=None, secret=None)
    with pytest.raises(TokenError, match="consumer key and secret"):
        feed.poll()
    feed, _, bus = make_feed(feed_store, datastore, now, secret="wrong")
    with pytest.raises(TokenError, match="refused the credentials"):
        feed.poll()
    assert feed.cursor().datetime is None and published(bus) == []   # nothing lost: retried
    feed, _, bus = make_feed(feed_store, datastore, now)
    feed.auth.token()
    datastore.expire_tokens()                    # the token expires while the feed holds it
    assert feed.poll() > 0
    # the refused one, the first good one, and the one renewed after the 401
    assert sum(1 for m, p in datastore.requests if p == "/token") == 3
    assert "consumer-secret" not in repr(feed.auth)
