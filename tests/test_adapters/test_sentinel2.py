"""The Sentinel-2 feed against Earth Search's formats, served locally: STAC pages and COGs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pystac
import pytest
import rasterstats
import shapely

from eowatch.adapters.reflectance import decide_offset
from eowatch.adapters.sentinel2 import (
    ItemError,
    Sentinel2Config,
    Sentinel2Feed,
    read_item,
)
from eowatch.adapters.tiles import ParcelSet, home_squares, search_area, tile_square
from eowatch.adapters.zonal import MIN_PIXELS
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.publisher import Publisher
from eowatch.daemon.scheduler import poll_job
from tests.data.sentinel2 import (
    BAND_RESOLUTION,
    CROP,
    T30UWU,
    T30UXU,
    Scene,
    Tile,
    aligned_window,
    fixture_item,
    write_cog,
)

BANDS = tuple(BAND_RESOLUTION)
WHEN = datetime(2026, 5, 3, 11, 7, 31, tzinfo=UTC)


def grid_parcels(window, n: int, size: float = 120.0, gap: float = 120.0):
    """n squares of ``size`` m on the 60 m grid, row by row, inside the window."""
    x0, _, x1, y1 = window
    per_row = int((x1 - x0 - gap) // (size + gap))
    return [shapely.box(x0 + gap + (i % per_row) * (size + gap),
                        y1 - gap - size - (i // per_row) * (size + gap),
                        x0 + gap + (i % per_row) * (size + gap) + size,
                        y1 - gap - (i // per_row) * (size + gap)) for i in range(n)]


def parcel_set(tile: Tile, utm_parcels, prefix: str = "p") -> ParcelSet:
    return ParcelSet(np.array([f"{prefix}{i:03d}" for i in range(len(utm_parcels))],
                              dtype=object), np.arange(len(utm_parcels)) % 8,
                     np.array([tile.to_lonlat(p) for p in utm_parcels], dtype=object))


def found(server, parcels, **config):
    config = Sentinel2Config(stac_url=server.url, **config)
    return config.search().items(search_area(parcels), datetime(2026, 1, 1, tzinfo=UTC),
                                 query=config.query)


def test_the_fixture_is_earth_search_and_its_tile_square_is_found():
    item = fixture_item()
    assert item["properties"]["s2:processing_baseline"] == "05.09"
    # 39QTA: the 10980-pixel grid starts 20 m west of the MGRS square's corner
    assert tile_square(item["assets"]["red"]["proj:transform"]) == (200_000.0, 2_000_000.0)


def test_generated_cogs_have_the_real_layout(server, tmp_path):
    import rasterio

    window = aligned_window(T30UWU, -1.9, 48.0, 2400, 1800)
    item = server.add(Scene(T30UWU, window, WHEN))
    with rasterio.open(tmp_path / "cogs" / item["id"] / "B04.tif") as cog:
        assert cog.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert (cog.crs.to_epsg(), cog.dtypes[0], cog.nodata) == (32630, "uint16", 0)
        assert cog.block_shapes == [(128, 128)] and cog.overviews(1) == [2, 4]
        # the window sits on the tile's 10980-pixel grid
        assert (cog.transform.c - T30UWU.transform.c) % 60 == 0
        assert (T30UWU.transform.f - cog.transform.f) % 60 == 0


def test_means_equal_rasterstats_where_the_pixel_rule_is_the_same(server, tmp_path):
    window = aligned_window(T30UWU, -1.9, 48.0, 2400, 1800)
    rng = np.random.default_rng(3)
    x0, y0, x1, y1 = window
    parcels = []
    for _ in range(40):  # rotated rectangles of 15-300 m: tiny ones among them
        cx, cy = rng.uniform(x0 + 300, x1 - 300), rng.uniform(y0 + 300, y1 - 300)
        w, h = rng.uniform(15, 300, 2)
        box = shapely.box(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
        parcels.append(shapely.affinity.rotate(box, rng.uniform(0, 90)))
    item = server.add(Scene(T30UWU, window, WHEN, parcels=parcels, noise=0.02, seed=1))
    ps = parcel_set(T30UWU, parcels)
    rows = read_item(found(server, ps)[0], ps, BANDS)
    assert rows is not None and rows.parcel_index.tolist() == list(range(40))
    tiny_somewhere = False
    for b, band in enumerate(BANDS):
        path = str(tmp_path / "cogs" / item["id"] / f"{band}.tif")
        centre = rasterstats.zonal_stats(parcels, path, stats=["mean", "count"], nodata=0)
        touched = rasterstats.zonal_stats(parcels, path, stats=["mean"], nodata=0,
                                          all_touched=True)
        for i in range(40):
            tiny = (centre[i]["count"] or 0) < MIN_PIXELS   # the documented pixel rule
            tiny_somewhere |= tiny
            expected = (touched if tiny else centre)[i]["mean"] / 10_000
            assert rows.values[i, b] == pytest.approx(expected, abs=1e-6), (band, i, tiny)
    assert tiny_somewhere


@pytest.mark.parametrize("baseline, raw, flag, offset_dn, contradiction", [
    ("03.01", False, None, 0, False),     # before the offset existed
    ("05.09", False, True, 0, False),     # Earth Search applied it and says so
    ("05.09", True, False, -1000, False),  # not applied, and said so
    ("04.00", True, True, -1000, True),   # says applied, but the data are raw
    ("05.10", False, False, 0, True),     # says not applied, but the data are harmonised
])
def test_reflectance_offset_from_baseline_flag_and_data(server, baseline, raw, flag, offset_dn,
                                                        contradiction):
    window = aligned_window(T30UWU, -1.9, 48.0, 1800, 1200)
    parcels = grid_parcels(window, 6)
    first, second = shapely.bounds(parcels[0]), shapely.bounds(parcels[1])
    water = [(first[2], first[1], second[0], first[3])]   # a pond between two fields
    server.add(Scene(T30UWU, window, WHEN, parcels=parcels, baseline=baseline, raw=raw,
                     offset_applied_flag=flag, water=water))
    ps = parcel_set(T30UWU, parcels)
    rows = read_item(found(server, ps)[0], ps, BANDS)
    assert (rows.offset.offset_dn, rows.offset.contradiction) == (offset_dn, contradiction)
    assert rows.values[0] == pytest.approx([CROP[b] for b in BANDS], abs=1e-6)


def test_l1c_items_take_the_offset_from_the_baseline_and_clear_means_not_nodata(server):
    # as Earth Search's sentinel-2-l1c: no SCL, no offset flag, DNs with RADIO_ADD_OFFSET
    window = aligned_window(T30UWU, -1.9, 48.0, 1800, 1200)
    parcels = grid_parcels(window, 6, size=240, gap=60)
    p0 = shapely.bounds(parcels[0])
    item = server.add(Scene(T30UWU, window, WHEN, parcels=parcels, raw=True,
                            offset_applied_flag=None, clouds=[tuple(p0)],
                            nodata=[((p0[0] + p0[2]) / 2, p0[1], p0[2], p0[3])]))
    del item["assets"]["scl"]
    item["collection"] = "sentinel-2-l1c"
    item["properties"]["s2:product_type"] = "S2MSI1C"
    ps = parcel_set(T30UWU, parcels)
    rows = read_item(found(server, ps, collection="sentinel-2-l1c")[0], ps, BANDS)
    assert rows.offset.offset_dn == -1000 and not rows.offset.contradiction
    assert rows.valid_fraction.tolist() == [0.5, 1, 1, 1, 1, 1]   # no cloud mask in L1C
    assert rows.values[1] == pytest.approx([CROP[b] for b in BANDS], abs=1e-6)


def test_the_offset_check_cannot_tell_on_a_bright_scene_and_keeps_the_metadata():
    bright = np.full(50_000, 2500, np.uint16)
    props = {"s2:processing_baseline": "05.09", "earthsearch:boa_offset_applied": True}
    decision = decide_offset(props, [bright])
    assert (decision.verdict, decision.offset_dn, decision.contradiction) == \
        ("undetermined", 0, False)
    assert decide_offset({**props, "earthsearch:boa_offset_applied": False},
                         [bright]).offset_dn == -1000


def test_clouds_and_nodata_lower_the_valid_fraction_and_stay_out_of_the_means(server):
    window = aligned_window(T30UWU, -1.9, 48.0, 1800, 1200)
    parcels = grid_parcels(window, 6, size=240, gap=60)
    p0, p1, p2 = (shapely.bounds(p) for p in parcels[:3])
    clouds = [(p0[0], p0[1], p0[2], p0[3]),                       # all of parcel 0
              (p1[0], p1[1], (p1[0] + p1[2]) / 2, p1[3])]          # west half of parcel 1
    nodata = [((p2[0] + p2[2]) / 2, p2[1], p2[2], p2[3])]          # east half of parcel 2
    bright = [0.0, 0.0, 0.0, 0.05, 0.05, 0.05]
    server.add(Scene(T30UWU, window, WHEN, parcels=parcels, brightness=bright, clouds=clouds,
                     nodata=nodata))
    ps = parcel_set(T30UWU, parcels)
    rows = read_item(found(server, ps)[0], ps, BANDS)
    assert rows.no_valid_pixels == 1 and 0 not in rows.parcel_index
    fraction = dict(zip(rows.parcel_index.tolist(), rows.valid_fraction.tolist(), strict=True))
    assert fraction[1] == pytest.approx(0.5) and fraction[2] == pytest.approx(0.5)
    assert fraction[3] == 1.0
    for row, parcel in enumerate(rows.parcel_index):
        assert rows.values[row] == pytest.approx([CROP[b] + bright[parcel] for b in BANDS],
                                                 abs=1e-6)


def test_parcels_in_two_tiles_are_measured_once_by_their_home_tile(server):
    # the overlap of 30UWU (up to 609,780 m east) and 30UXU (from 599,980 m)
    y = 5_350_020.0
    utm = [shapely.box(599_700, y, 599_940, y + 240),   # west of the square edge: 30UWU's
           shapely.box(599_880, y, 600_060, y + 240),   # across the square edge, centre west
           shapely.box(604_980, y, 605_220, y + 240),   # in the overlap, centre east: 30UXU's
           shapely.box(609_660, y, 609_900, y + 240)]   # across 30UWU's east edge: 30UXU's
    window_w = (599_100.0 - 20, y - 600, 609_780.0, y + 840)
    window_x = (599_980.0, y - 600, 610_600.0 - 40, y + 840)
    server.add(Scene(T30UWU, window_w, WHEN, parcels=utm))
    server.add(Scene(T30UXU, window_x, WHEN + timedelta(seconds=4), parcels=utm))
    ps = parcel_set(T30UWU, utm)
    by_item = {i.id: read_item(i, ps, BANDS) for i in found(server, ps)}
    homes = {item: sorted(r.parcel_index.tolist()) for item, r in by_item.items()}
    assert homes == {"S2B_30UWU_20260503_0_L2A": [0, 1], "S2B_30UXU_20260503_0_L2A": [2, 3]}
    for rows in by_item.values():
        assert (rows.valid_fraction == 1.0).all()
        assert rows.values == pytest.approx(np.array([[CROP[b] for b in BANDS]] * 2), abs=1e-6)


def test_an_item_without_homed_parcels_is_passed_over_without_reading(server, tmp_path):
    window = aligned_window(T30UWU, -1.9, 48.0, 600, 600)
    parcels = grid_parcels(window, 2)
    item = server.add(Scene(T30UXU, (600_000.0, 5_350_000.0, 600_600.0, 5_350_600.0), WHEN))
    ps = parcel_set(T30UWU, parcels)          # homed on 30UWU: nothing for 30UXU's item
    requests = len(server.requests)
    assert read_item(pystac.Item.from_dict(item), ps, BANDS) is None
    assert len(server.requests) == requests   # decided from the item's metadata alone


def test_the_search_area_follows_the_parcels_and_stays_small():
    rng = np.random.default_rng(0)
    few = np.array([shapely.box(x, y, x + 0.001, y + 0.001)
                    for x, y in [(-1.9, 48.0), (-1.2, 47.5)]], dtype=object)
    area = shapely.geometry.shape(search_area(ParcelSet(np.array(["a", "b"], dtype=object),
                                                        np.zeros(2, np.int64), few)))
    assert area.area == pytest.approx(0.02) and area.contains(shapely.union_all(few))
    scattered = np.array([shapely.box(x, y, x + 0.001, y + 0.001)
                          for x, y in rng.uniform([-5, 42], [8, 51], (20_000, 2))], dtype=object)
    wide = shapely.geometry.shape(search_area(ParcelSet(
        np.arange(20_000).astype(str).astype(object), np.zeros(20_000, np.int64), scattered)))
    assert shapely.get_num_coordinates(wide) <= 2000
    assert wide.contains(shapely.union_all(scattered))


def test_home_squares_prefer_a_tile_that_holds_the_whole_parcel():
    bounds = np.array([[599_000, 5_350_000, 599_500, 5_350_500],     # own square
                       [599_900, 5_350_000, 600_200, 5_350_500],     # centre in X, whole in W
                       [550_000, 5_399_900, 550_300, 5_400_200]])    # across N: north's tile
    assert home_squares(bounds).tolist() == [[500_000, 5_300_000], [500_000, 5_300_000],
                                             [500_000, 5_400_000]]


def test_paging_and_order(server):
    window = aligned_window(T30UWU, -1.9, 48.0, 600, 600)
    parcels = grid_parcels(window, 1)
    for k in range(7):
        server.add(Scene(T30UWU, window, WHEN + timedelta(days=5 * (6 - k)), parcels=parcels,
                         item_id=f"S2A_30UWU_item{k}"))
    items = found(server, parcel_set(T30UWU, parcels), page_size=3)
    assert [i.datetime for i in items] == sorted(i.datetime for i in items) and len(items) == 7
    assert server.requests.count(("POST", "/search")) == 3


def test_server_errors_are_retried(server):
    window = aligned_window(T30UWU, -1.9, 48.0, 600, 600)
    parcels = grid_parcels(window, 1)
    item = server.add(Scene(T30UWU, window, WHEN, parcels=parcels))
    ps = parcel_set(T30UWU, parcels)
    server.fail_next["/search"] = [503, 502]
    server.fail_next[f"/cogs/{item['id']}/B04.tif"] = [503]
    rows = read_item(found(server, ps)[0], ps, BANDS)
    assert rows.values[0] == pytest.approx([CROP[b] for b in BANDS], abs=1e-6)
    assert not server.fail_next["/search"] and not server.fail_next[f"/cogs/{item['id']}/B04.tif"]


def broken(server, tmp_path, how: str):
    window = aligned_window(T30UWU, -1.9, 48.0, 1200, 1200)
    parcels = grid_parcels(window, 4)
    item = server.add(Scene(T30UWU, window, WHEN, parcels=parcels))
    cog = tmp_path / "cogs" / item["id"] / "B08.tif"
    if how == "truncated":
        cog.write_bytes(cog.read_bytes()[:int(cog.stat().st_size * 0.6)])
    elif how == "missing file":
        cog.unlink()
    elif how == "missing asset":
        del item["assets"]["nir"]
    elif how == "wrong crs":
        import rasterio
        with rasterio.open(cog) as src:
            array, transform = src.read(1), src.transform
        write_cog(cog, array, transform, 32631)
    return parcel_set(T30UWU, parcels)


@pytest.mark.parametrize("how, message", [("truncated", "B08.tif"),
                                          ("missing file", "B08.tif: cannot open"),
                                          ("missing asset", "no asset for band B08"),
                                          ("wrong crs", "is not the item's EPSG:32630")])
def test_unreadable_items_raise_a_clear_error(server, tmp_path, how, message):
    ps = broken(server, tmp_path, how)
    with pytest.raises(ItemError, match=message):
        read_item(found(server, ps)[0], ps, BANDS)


# -- the feed: cursor, failures, the scheduler's view -------------------------------------

def make_feed(store, url, **config) -> tuple[Sentinel2Feed, Metrics, EmbeddedBus]:
    bus = EmbeddedBus(store)
    metrics = Metrics()
    settings = {"start": datetime(2026, 1, 1, tzinfo=UTC), "max_attempts": 3, **config}
    return (Sentinel2Feed(Publisher(bus, store, "t.observations"), BANDS,
                          Sentinel2Config(stac_url=url, **settings), metrics=metrics),
            metrics, bus)


def register(store, tile, utm_parcels):
    ps = parcel_set(tile, utm_parcels)
    store.upsert_parcels([{"id": i, "shard": int(s), "source": "test.gpkg",
                           "geometry": shapely.to_geojson(g)}
                          for i, s, g in zip(ps.ids, ps.shards, ps.geometries, strict=True)])


def published(bus) -> list:
    from eowatch.contract.messages import ObservationChunk
    consumer = bus.consumer("check", ["t.observations"], 10_000)
    return [ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.1)]


def test_the_feed_publishes_each_item_once_and_reads_late_items(server, feed_store):
    window = aligned_window(T30UWU, -1.9, 48.0, 1200, 600)
    parcels = grid_parcels(window, 4)
    register(feed_store, T30UWU, parcels)
    feed, metrics, bus = make_feed(feed_store, server.url)
    server.add(Scene(T30UWU, window, WHEN, parcels=parcels))
    assert feed.poll() > 0
    assert feed.poll() == 0                          # nothing new: nothing published
    server.add(Scene(T30UWU, window, WHEN - timedelta(hours=30), parcels=parcels,
                     item_id="S2A_30UWU_20260502_0_L2A"))   # published late, within 72 h
    assert feed.poll() > 0
    chunks = published(bus)
    assert sorted({c.acquisition_id for c in chunks}) == ["S2A_30UWU_20260502_0_L2A",
                                                          "S2B_30UWU_20260503_0_L2A"]
    assert sum(len(c.parcel_ids) for c in chunks) == 8
    assert chunks[0].band_names == BANDS and chunks[0].acquired_at == WHEN
    cursor = feed.cursor()
    assert cursor.datetime == WHEN and cursor.id == "S2B_30UWU_20260503_0_L2A"
    assert metrics.registry.get_sample_value("eowatch_feed_items_total",
                                             {"feed": "sentinel2", "outcome": "published"}) == 2


def test_a_stopping_feed_ends_its_poll_after_the_item_in_flight(server, feed_store,
                                                               monkeypatch):
    import eowatch.adapters.sentinel2 as sentinel2

    window = aligned_window(T30UWU, -1.9, 48.0, 600, 600)
    parcels = grid_parcels(window, 1)
    register(feed_store, T30UWU, parcels)
    feed, _, bus = make_feed(feed_store, server.url)
    for k in range(3):
        server.add(Scene(T30UWU, window, WHEN + timedelta(days=5 * k), parcels=parcels,
                         item_id=f"S2A_30UWU_item{k}"))
    original = sentinel2.read_item

    def read_then_stop(*args, **kwargs):   # a shutdown arrives while the first item is read
        feed.stop()
        return original(*args, **kwargs)

    monkeypatch.setattr(sentinel2, "read_item", read_then_stop)
    feed.poll()
    assert {c.acquisition_id for c in published(bus)} == {"S2A_30UWU_item0"}
    assert feed.cursor().id == "S2A_30UWU_item0"


def test_a_failing_item_holds_the_cursor_then_is_skipped(server, feed_store, tmp_path):
    window = aligned_window(T30UWU, -1.9, 48.0, 1200, 1200)
    parcels = grid_parcels(window, 4)
    register(feed_store, T30UWU, parcels)
    feed, metrics, bus = make_feed(feed_store, server.url, max_attempts=3)
    broken(server, tmp_path, "truncated")
    server.add(Scene(T30UWU, window, WHEN + timedelta(days=5), parcels=parcels,
                     item_id="S2A_30UWU_20260508_0_L2A"))
    for attempt in (1, 2):
        poll_job(feed, metrics)
        assert feed.cursor().datetime is None            # nothing read past the failure
        assert feed.cursor().failures == {"S2B_30UWU_20260503_0_L2A": attempt}
    assert metrics.registry.get_sample_value("eowatch_feed_errors_total",
                                             {"feed": "sentinel2", "stage": "read"}) == 2
    assert published(bus) == []
    poll_job(feed, metrics)                               # third failure: skipped, listed
    cursor = feed.cursor()
    assert [s["id"] for s in cursor.skipped] == ["S2B_30UWU_20260503_0_L2A"]
    assert cursor.id == "S2A_30UWU_20260508_0_L2A"
    assert {c.acquisition_id for c in published(bus)} == {"S2A_30UWU_20260508_0_L2A"}


def test_a_model_that_reads_b10_is_refused_on_l2a(feed_store):
    from eowatch.errors import EowatchError
    with pytest.raises(EowatchError, match="B10 .cirrus., which sentinel-2-l2a does not carry"):
        Sentinel2Feed(Publisher(EmbeddedBus(feed_store), feed_store, "t"), BANDS + ("B10",),
                      Sentinel2Config())


def test_an_unreachable_api_is_counted_and_moves_nothing(feed_store, caplog):
    from eowatch.daemon.bus.tansu import free_port
    register(feed_store, T30UWU, grid_parcels(aligned_window(T30UWU, -1.9, 48.0, 600, 600), 1))
    feed, metrics, _ = make_feed(feed_store, f"http://127.0.0.1:{free_port()}",
                                 timeout_seconds=2)
    poll_job(feed, metrics)   # what the scheduler runs: the error is logged, counted, contained
    assert "STAC search of http://127.0.0.1" in caplog.text
    assert metrics.registry.get_sample_value("eowatch_feed_errors_total",
                                             {"feed": "sentinel2", "stage": "search"}) == 1
    assert feed_store.get_cursor("sentinel2") is None


def test_samples_extract_writes_what_train_reads(server, tmp_path, monkeypatch):
    import pyogrio

    from eowatch.cli import main
    from eowatch.models.datasets import load_dataset

    window = aligned_window(T30UWU, -1.9, 48.0, 1200, 600)
    parcels = grid_parcels(window, 4)
    for k in range(3):
        server.add(Scene(T30UWU, window, WHEN + timedelta(days=5 * k), parcels=parcels,
                         brightness=[0.01 * k] * 4, item_id=f"S2A_30UWU_2026050{3 + k}_0_L2A"))
    path = tmp_path / "labelled.gpkg"   # in the tile's UTM zone, as a user's file may be
    pyogrio.raw.write(path, geometry=shapely.to_wkb(np.array(parcels, dtype=object)),
                      field_data=[np.array(["wheat", "maize", "wheat", None], dtype=object),
                                  np.array(["a", "b", "c", "d"], dtype=object)],
                      fields=["crop", "pid"], crs="EPSG:32630", geometry_type="Polygon",
                      driver="GPKG")
    out = tmp_path / "samples.parquet"
    monkeypatch.setenv("EOWATCH_S2_STAC_URL", server.url)
    code = main(["samples", "extract", "--parcels", str(path), "--season",
                 "2026-01-01/2026-12-31", "--out", str(out), "--label-field", "crop",
                 "--id-field", "pid"], )
    assert code == 0
    data = load_dataset(str(out), season_start="01-01")
    assert data.band_names == BANDS and len(data) == 3   # the unlabelled parcel is left out
    assert data.lengths.tolist() == [3, 3, 3]
    assert data.values[0, :, BANDS.index("B08")] == pytest.approx([0.42, 0.43, 0.44], abs=1e-6)
    assert data.days[0, 0] == pytest.approx(122 + (11 + 7.5 / 60) / 24, abs=1e-3)
