"""SEVIRI Level 1.5 native files: the reader against satpy's declaration of the format and
satpy's reading of the same files, and the Meteosat feed serving them from a local Data Store
(range requests or whole downloads, a truncated file, a file of another grid)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import shapely
from pydantic import SecretStr

from eowatch.adapters import seviri
from eowatch.adapters.http import retrying_session
from eowatch.adapters.item_feed import Polling
from eowatch.adapters.meteosat import (
    SEVIRI_COLLECTION,
    DataStoreAuth,
    MeteosatConfig,
    MeteosatFeed,
)
from eowatch.adapters.seviri import NativeHeader, SeviriError, native_cells, read_lines
from eowatch.cells import CellGrid
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.publisher import Publisher
from eowatch.geometry import transformer
from eowatch.models.flood_geo import sensor_code
from eowatch.solar import earth_sun_distance
from tests.data.meteosat import DataStore
from tests.data.meteosat.seviri import native_name, write_native

from .test_meteosat import DELTA, SHARDS, register

satpy = pytest.importorskip("satpy", reason="satpy is the reference reader (test extra)")

CYCLE = datetime(2025, 6, 2, 11, 0, tzinfo=UTC)
FIELD = (0.06, 0.32, 0.18)                 # VIS0.6, VIS0.8, NIR1.6 reflectance factors
CLOUD = 0.6
SLOPES, OFFSETS = (0.0232, 0.0296, 0.0228), (-1.18, -1.51, -1.16)
GEOS = ("+proj=geos +h=35785831 +lon_0=0 +a=6378169 +b=6356583.8 +units=m +no_defs")
STEP = 3000.4031658172607


def rectangle(lines: int = 48, columns: int = 64) -> tuple[int, int, int, int]:
    """(south, east, lines, columns) of a rectangle of the 3 km grid centred on the delta."""
    x, y = transformer("EPSG:4326", GEOS).transform(*DELTA)
    line, column = round(1856 + y / STEP), round(1856 - x / STEP)
    return line - lines // 2, column - columns // 2, lines, columns


def write(path: Path, when: datetime, cloudy_east_of: float | None = None,
          offset_corrected: bool = True, varied: bool = False) -> Path:
    """A native file over the delta: a field, cloud east of a longitude, or (``varied``)
    reflectance varying from pixel to pixel."""
    south, east, lines, columns = rectangle()
    shift = 0 if offset_corrected else 0.5
    x = (1856 - (east + np.arange(columns)) + shift) * STEP
    y = (south + np.arange(lines) - 1856 - shift) * STEP
    lon, _ = transformer(GEOS, "EPSG:4326").transform(*np.meshgrid(x, y))
    counts = []
    for k, field in enumerate(FIELD):
        value = np.full((lines, columns), field)
        if varied:
            value = value + 0.02 * (np.arange(columns) % 5) + 0.01 * (np.arange(lines) % 3)[:, None]
        if cloudy_east_of is not None:
            value = np.where(np.asarray(lon) > cloudy_east_of, CLOUD, value)
        radiance = value * seviri.IRRADIANCE[324][k] / (np.pi * earth_sun_distance(when) ** 2)
        counts.append(np.clip(np.round((radiance - OFFSETS[k]) / SLOPES[k]), 1, 1023))
    return write_native(path / native_name(when), when, south, east, counts, SLOPES, OFFSETS,
                        offset_corrected=offset_corrected)


def file_reader(path: Path):
    data = path.read_bytes()
    return lambda offset, length: data[offset:offset + length]


def test_the_readers_offsets_are_the_formats_records():
    """The byte offsets the reader uses, against satpy's declaration of the records."""
    from satpy.readers.seviri_l1b_native_hdr import get_native_header, native_trailer

    header = get_native_header(True)

    def offset(dtype, path):
        at = 0
        for name in path:
            dtype, where = dtype.fields[name][:2]
            at += where
            dtype = dtype.subdtype[0] if dtype.subdtype else dtype
        return at

    data = ["15_DATA_HEADER"]
    start = offset(header, data)
    assert header.itemsize == seviri.HEADER_WITH_ARCHIVE
    assert offset(header, ["15_SECONDARY_PRODUCT_HEADER"]) == seviri.MAIN_HEADER
    assert start == seviri.MAIN_HEADER + seviri.SECONDARY_HEADER + seviri.PACKET_HEADER
    assert header.fields["15_DATA_HEADER"][0].itemsize == seviri.DATA_HEADER
    found = {name: offset(header, data + path) - start for name, path in {
        "SATELLITE_ID": ["SatelliteStatus", "SatelliteDefinition", "SatelliteId"],
        "SSP_LONGITUDE": ["ImageDescription", "ProjectionDescription", "LongitudeOfSSP"],
        "REFERENCE_GRID": ["ImageDescription", "ReferenceGridVIS_IR"],
        "CALIBRATION": ["RadiometricProcessing", "Level15ImageCalibration"],
        "EARTH_MODEL": ["GeometricProcessing", "EarthModel"]}.items()}
    assert found == {name: getattr(seviri, name) for name in found}
    assert native_trailer.itemsize == 380363


@pytest.mark.parametrize("offset_corrected", [True, False])
def test_geolocation_and_reflectance_equal_satpys(tmp_path, offset_corrected):
    path = write(tmp_path, CYCLE, cloudy_east_of=DELTA[0], offset_corrected=offset_corrected,
                 varied=True)
    scene = satpy.Scene(reader="seviri_l1b_native", filenames=[str(path)])
    scene.load(["VIS006", "VIS008", "IR_016"], calibration="reflectance")
    handler = next(iter(scene._readers["seviri_l1b_native"].file_handlers.values()))[0]
    from satpy.tests.utils import make_dataid

    area = handler.get_area_def(make_dataid(name="VIS006", resolution=3000))
    ref_lon, ref_lat = area.get_lonlats()

    header = NativeHeader.parse(path.read_bytes()[:seviri.HEADER_WITH_ARCHIVE])
    assert (header.satellite, header.offset_corrected) == (324, offset_corrected)
    whole = (slice(0, header.lines), slice(0, header.columns))
    lon, lat = header.lonlat(*whole)
    np.testing.assert_allclose(lon, ref_lon, atol=1e-5)   # float32 extents in satpy
    np.testing.assert_allclose(lat, ref_lat, atol=1e-5)
    records = read_lines(header, file_reader(path), whole[0])
    for channel in ("VIS006", "VIS008", "IR_016"):
        mine, valid = header.reflectance(records, channel, whole[1], CYCLE)
        assert valid.all()
        # satpy gives percent, with pyorbital's Earth–Sun distance: a few 1e-4 apart
        np.testing.assert_allclose(mine * 100, scene[channel].values, rtol=1e-3)


def test_windowed_cell_means_equal_satpys_whole_file_binned(tmp_path):
    path = write(tmp_path, CYCLE, varied=True)
    lon, lat = DELTA
    grid = CellGrid.of("delta#geo", shapely.box(lon - 0.15, lat - 0.1, lon + 0.15, lat + 0.1),
                       2000)
    _, rows, cols = grid.cells()
    clon, clat = transformer(grid.epsg, 4326).transform(grid.x0 + (cols + 0.5) * grid.size,
                                                        grid.y1 - (rows + 0.5) * grid.size)
    header = NativeHeader.parse(path.read_bytes()[:seviri.HEADER_WITH_ARCHIVE])
    reads = []
    data = path.read_bytes()

    def read(offset, length):
        reads.append(length)
        return data[offset:offset + length]

    cells = native_cells(header, read, CYCLE, grid, np.asarray(clon), np.asarray(clat))
    assert sum(reads) < header.lines * header.line_size / 2   # only the lines over the area

    scene = satpy.Scene(reader="seviri_l1b_native", filenames=[str(path)])
    scene.load(["VIS006"], calibration="reflectance")
    red = scene["VIS006"].values / 100
    handler = next(iter(scene._readers["seviri_l1b_native"].file_handlers.values()))[0]
    from satpy.tests.utils import make_dataid

    plon, plat = handler.get_area_def(make_dataid(name="VIS006", resolution=3000)).get_lonlats()
    x, y = transformer(4326, grid.epsg).transform(plon, plat)
    r = np.floor((grid.y1 - np.asarray(y)) / grid.size)
    c = np.floor((np.asarray(x) - grid.x0) / grid.size)
    compared = 0
    for k, (row, col) in enumerate(zip(rows, cols, strict=True)):
        pixels = (r == row) & (c == col)
        if pixels.any():           # 3 km pixels (~4 km at 45 N): 2 km cells hold one or none
            assert cells["red"][k] == pytest.approx(red[pixels].mean(), rel=1e-3)
            compared += 1
        else:
            assert np.isnan(cells["red"][k])
    assert compared > 0.1 * len(rows)


def make_feed(store, datastore, now):
    bus = EmbeddedBus(store)
    config = MeteosatConfig(api_url=datastore.url, collection=SEVIRI_COLLECTION,
                            page_size=2, product="seviri")
    auth = DataStoreAuth(config.token_url, SecretStr("consumer-key"),
                         SecretStr("consumer-secret"), retrying_session())
    feed = MeteosatFeed(Publisher(bus, store, "t.observations"), SHARDS, config, auth,
                        Polling(CYCLE - timedelta(minutes=30), timedelta(hours=2), 6, 2),
                        900.0, Metrics(), now=lambda: now)
    return feed, bus


def published(bus) -> list[ObservationChunk]:
    consumer = bus.consumer("check", ["t.observations"], 10_000)
    return [ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.1)]


def add_cycle(datastore, tmp_path, when, **scene) -> tuple[str, Path]:
    path = write(tmp_path / f"{when:%H%M}", when, **scene)
    product = path.name.removesuffix(".nat")
    datastore.add(when, [path], product=product)
    return product, datastore.root / product / path.name


@pytest.mark.parametrize("ranges", [True, False], ids=["range-requests", "whole-download"])
def test_the_feed_publishes_each_coarse_cells_clear_reflectance(feed_store, tmp_path, ranges):
    register(feed_store)
    with DataStore(tmp_path / "store", collection=SEVIRI_COLLECTION) as datastore:
        datastore.ranges = ranges
        product, stored = add_cycle(datastore, tmp_path, CYCLE, cloudy_east_of=DELTA[0])
        feed, bus = make_feed(feed_store, datastore, CYCLE + timedelta(minutes=30))
        assert feed.poll() > 0
        chunks = [c for c in published(bus) if c.acquisition_id == product]
        size = stored.stat().st_size
        if ranges:   # the header and the lines over the area, not the file
            assert datastore.bytes_sent < seviri.HEADER_WITH_ARCHIVE + size // 4
        else:
            assert datastore.bytes_sent == size
    red, nir, swir, index, clear, zenith, sensor = np.concatenate(
        [c.values for c in chunks]).astype(np.float64).T
    seen = clear > 0
    assert seen.any() and (clear < 1).any()          # the delta's east is under the cloud
    half_count = 0.5 * SLOPES[0] * np.pi / seviri.IRRADIANCE[324][0]
    np.testing.assert_allclose(red[seen], FIELD[0], atol=2 * half_count + 1e-4)
    np.testing.assert_allclose(nir[seen], FIELD[1], atol=2e-3)
    np.testing.assert_allclose(swir[seen], FIELD[2], atol=2e-3)
    assert (sensor == sensor_code("msg-seviri")).all() and (zenith < 40).all()


def test_a_truncated_file_is_retried_then_skipped_and_another_grid_refused(feed_store,
                                                                           tmp_path):
    register(feed_store)
    with DataStore(tmp_path / "store", collection=SEVIRI_COLLECTION) as datastore:
        _, stored = add_cycle(datastore, tmp_path, CYCLE)
        stored.write_bytes(stored.read_bytes()[:seviri.HEADER_WITH_ARCHIVE + 1000])
        feed, bus = make_feed(feed_store, datastore, CYCLE + timedelta(minutes=30))
        with pytest.raises(Exception, match="truncated"):
            feed.poll()
        feed.poll()                                   # the second attempt: skipped
        cursor = feed.cursor()
        assert cursor.skipped and "truncated" in cursor.skipped[0]["reason"]
        assert published(bus) == []

    head = bytearray(write(tmp_path / "other", CYCLE).read_bytes()[:seviri.HEADER_WITH_ARCHIVE])
    head[seviri.HEADER_WITH_ARCHIVE - seviri.DATA_HEADER + seviri.REFERENCE_GRID + 16] = 0
    with pytest.raises(SeviriError, match="grid origin 0"):
        NativeHeader.parse(bytes(head))
    with pytest.raises(SeviriError, match="shorter than a native header"):
        NativeHeader.parse(bytes(head[:1000]))


def test_the_daemon_keeps_a_seviri_normal_model_per_coarse_cell(tmp_path, unique):
    """End to end: the Data Store -> the feed -> the bus -> the flood model's coarse cells."""
    from eowatch.cells import stored_coarse_grid
    from eowatch.daemon.store.tables import DeadLetter
    from eowatch.models import flood_geo
    from tests.test_daemon.pipeline import drain, make_daemon

    with DataStore(tmp_path / "store", collection=SEVIRI_COLLECTION) as datastore:
        for k in range(3):
            add_cycle(datastore, tmp_path, CYCLE + timedelta(minutes=15 * k))
        daemon = make_daemon(tmp_path, "embedded", unique, feeds=("meteosat",), feed_settings={
            "meteosat": {"api_url": datastore.url, "product": "seviri",
                         "consumer_key": "consumer-key", "consumer_secret": "consumer-secret",
                         "start": CYCLE - timedelta(minutes=30)}})
        try:
            register(daemon.store)
            daemon.adapters[0].now = lambda: CYCLE + timedelta(hours=1)
            drain(daemon, timeout_s=120)
            assert daemon.store.count(DeadLetter) == 0
            assert daemon.metrics.registry.get_sample_value(
                "eowatch_observations_consumed_total", {"feed": "meteosat"}) > 0
            coarse = stored_coarse_grid("delta", daemon.store.get_area("delta")["grid"])
            ids, _, _ = coarse.cells()
            rows = daemon.areas.table.lookup(ids)
            state = flood_geo.GeoState.of(daemon.areas.table.state.numpy()[rows[rows >= 0]])
            assert {int(s) - 1 for s in np.unique(state.sensor) if s > 0} == {
                sensor_code("msg-seviri")}
        finally:
            daemon.shutdown()
