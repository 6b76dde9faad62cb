"""The Sentinel-1 feed over HTTP: GRD products on the real SAFE XML with generated DN, served
with range requests by the local STAC server, read back per cell; and what it does with items
it cannot use."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
import shapely

from eowatch.adapters.sentinel1 import Sentinel1Config, Sentinel1Feed
from eowatch.cells import CellGrid, cell_rows
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.publisher import Publisher
from eowatch.models.flood import BANDS
from tests.conftest import unavailable
from tests.data.sentinel1 import SAFE, GrdScene, truncate, write_grd, write_rtc

WHEN = datetime(2026, 3, 5, 5, 11, 35, tzinfo=UTC)
SHARDS = 8


@pytest.fixture(scope="module")
def centre() -> tuple[float, float]:
    if not SAFE.is_dir():
        unavailable("the shared Sentinel-1 fixture", f"{SAFE} not found")
    from eowatch.adapters.s1_geolocation import Geolocation

    lon, lat = Geolocation.from_safe(SAFE, "vv").lonlat(np.array([8000.0]),
                                                        np.array([13000.0]))
    return float(lon[0]), float(lat[0])


def outlines(centre) -> dict[str, shapely.Geometry]:
    lon, lat = centre
    return {"lake": shapely.box(lon - 0.006, lat - 0.004, lon + 0.006, lat + 0.004),
            "fields": shapely.box(lon + 0.02, lat - 0.003, lon + 0.03, lat + 0.003)}


def areas(centre) -> list[CellGrid]:
    outlines_by_id.update(outlines(centre))
    return [CellGrid.of(name, outline, 40) for name, outline in outlines(centre).items()]


def backscatter(grid: CellGrid, seed: int) -> dict[str, np.ndarray]:
    """Cells of the west half water-dark, the rest like fields, varied cell to cell."""
    rng = np.random.default_rng(seed)
    _, _, cols = grid.cells()
    west = cols < grid.inside.shape[1] / 2
    vv = np.where(west, -21.0, -10.0) + rng.uniform(-1.5, 1.5, grid.count)
    return {"VV": vv, "VH": vv - 6.5}


def register(store, grids):
    """Import the areas as `eowatch areas import` does: outline, grid and cells."""
    for grid in grids:
        outline = outlines_by_id[grid.area_id]
        store.upsert_areas([{"id": grid.area_id, "geometry": shapely.to_geojson(outline),
                             "source": "test.gpkg"}])
        store.replace_cells(grid.area_id, grid.definition(), cell_rows(grid, SHARDS))


outlines_by_id: dict[str, shapely.Geometry] = {}


def make_feed(store, url, **config):
    bus = EmbeddedBus(store)
    metrics = Metrics()
    settings = {"start": datetime(2026, 1, 1, tzinfo=UTC), "max_attempts": 3, **config}
    feed = Sentinel1Feed(Publisher(bus, store, "t.observations"), SHARDS,
                         Sentinel1Config(stac_url=url, **settings), metrics=metrics)
    return feed, metrics, bus


def published(bus) -> list[ObservationChunk]:
    consumer = bus.consumer("check", ["t.observations"], 10_000)
    return [ObservationChunk.decode(r.value) for r in consumer.poll(10_000, 0.1)]


def scene(grids, product_id="S1B_IW_GRDH_1SDV_20260305T051122_A", when=WHEN, seed=0,
          **extra) -> GrdScene:
    return GrdScene(product_id, when, 37, [(g, backscatter(g, seed + k))
                                            for k, g in enumerate(grids)], **extra)


def test_grd_over_http_gives_each_cells_backscatter(server, feed_store, centre):
    grids = areas(centre)
    register(feed_store, grids)
    # the areas as the store holds them give the same grids
    feed, metrics, bus = make_feed(feed_store, server.url)
    assert {a.grid.area_id: a.grid.definition() for a in feed.areas()} == {
        g.area_id: g.definition() for g in grids}
    wanted = scene(grids)
    server.items.append(write_grd(server.root, wanted, server.url))
    assert feed.poll() > 0
    chunks = published(bus)
    assert {c.targets for c in chunks} == {"cells"} and chunks[0].band_names == BANDS
    got = {i: v for c in chunks for i, v in zip(c.parcel_ids, c.values, strict=True)}
    fraction = {i: f for c in chunks for i, f in zip(c.parcel_ids, c.valid_fraction,
                                                    strict=True)}
    for grid, values in wanted.areas:
        ids, _, _ = grid.cells()
        assert set(ids) <= set(got)      # every cell of each area is observed
        measured = np.array([got[i] for i in ids])
        # DN are integers: rounding costs dark pixels a few hundredths of a dB, and more
        # near the noise floor (about -25 dB here), where the noise is taken off the DN²
        error = np.abs(measured[:, :2] - np.column_stack([values["VV"], values["VH"]]))
        bright = np.column_stack([values["VV"], values["VH"]]) > -20
        assert error[bright].max() < 0.1
        assert error[~bright].max() < 0.4 and error[~bright].mean() < 0.1
        assert (measured[:, 3] == 37).all()
        assert ((measured[:, 2] > 29) & (measured[:, 2] < 47)).all()   # IW incidence
        assert all(fraction[i] == 1 for i in ids)
    shards = {c.shard for c in chunks}
    assert shards == {int(cell_rows(g, SHARDS)[0]["shard"]) for g in grids}
    assert metrics.registry.get_sample_value("eowatch_feed_items_total",
                                             {"feed": "sentinel1", "outcome": "published"}) == 1
    # the measurement was read in windows, through range requests: a few tiles, not 870 MB
    assert feed.poll() == 0


def test_items_it_cannot_use_are_counted_skipped_and_lose_nothing(server, feed_store, centre):
    """Wrong polarisations, a missing calibration, an unsigned href and a truncated raster:
    each gives a clear, counted error; the good items around them are all published."""
    grids = areas(centre)[:1]
    register(feed_store, grids)
    feed, metrics, bus = make_feed(feed_store, server.url, max_attempts=2)
    hour = timedelta(hours=1)
    cases = {
        "S1B_HH_HV": scene(grids, "S1B_HH_HV", WHEN, polarisations=("VV",),
                           properties={"sar:polarizations": ["HH", "HV"]}),
        "S1B_NO_CALIBRATION": scene(grids, "S1B_NO_CALIBRATION", WHEN + hour,
                                    omit_assets=("schema-calibration-vh",)),
        "S1B_UNSIGNED": scene(grids, "S1B_UNSIGNED", WHEN + 2 * hour),
        "S1B_TRUNCATED": scene(grids, "S1B_TRUNCATED", WHEN + 3 * hour),
        "S1B_GOOD": scene(grids, "S1B_GOOD", WHEN + 4 * hour),
    }
    for product in cases.values():
        server.items.append(write_grd(server.root, product, server.url))
    truncate(server.root / "cogs" / "S1B_TRUNCATED" / "measurement" / "vv.tiff", 0.2)
    server.signed_only.add("/cogs/S1B_UNSIGNED/")
    polls = [poll(feed) for _ in range(4)]
    assert sum(polls) > 0
    skipped = {s["id"]: s["reason"] for s in feed.cursor().skipped}
    assert set(skipped) == {"S1B_HH_HV", "S1B_NO_CALIBRATION", "S1B_UNSIGNED", "S1B_TRUNCATED"}
    assert "VV and VH" in skipped["S1B_HH_HV"]
    assert "schema-calibration-vh" in skipped["S1B_NO_CALIBRATION"]
    assert "not signed" in skipped["S1B_UNSIGNED"]
    assert "truncated" in skipped["S1B_TRUNCATED"]
    assert {c.acquisition_id for c in published(bus)} == {"S1B_GOOD"}
    get = metrics.registry.get_sample_value
    assert get("eowatch_feed_items_total", {"feed": "sentinel1", "outcome": "skipped"}) == 4
    assert get("eowatch_feed_items_total", {"feed": "sentinel1", "outcome": "published"}) == 1


def poll(feed) -> int:
    """A poll as the scheduler runs it: a failing item ends the poll, which is retried."""
    from eowatch.adapters.item_feed import ItemError

    try:
        return feed.poll()
    except ItemError:
        return 0


def test_hrefs_are_signed_before_they_are_read(server, feed_store, centre):
    """With a signing source (Planetary Computer's), every href the feed reads is signed;
    the same item unsigned is refused by the blob store, and the feed says why."""
    import pystac

    from eowatch.adapters.stac_sources import Source

    grids = areas(centre)[:1]
    register(feed_store, grids)
    server.items.append(write_grd(server.root, scene(grids, "S1B_SIGNED"), server.url))
    server.signed_only.add("/cogs/S1B_SIGNED/")
    signed: list[str] = []

    def sign(item: pystac.Item) -> pystac.Item:  # what planetary_computer.sign does to hrefs
        item = item.clone()
        for asset in item.assets.values():
            asset.href += "?st=2026&se=2099&sp=rl&sig=local"
        signed.append(item.id)
        return item

    feed, _, bus = make_feed(feed_store, server.url,
                             source=Source("planetary-computer", sign=sign))
    assert feed.poll() > 0 and signed == ["S1B_SIGNED"]
    assert {c.acquisition_id for c in published(bus)} == {"S1B_SIGNED"}
    unsigned, _, _ = make_feed(feed_store, server.url)
    from eowatch.adapters.item_feed import ItemError

    with pytest.raises(ItemError, match="not signed"):
        unsigned.read(unsigned.search.items(unsigned.search_area(), WHEN - timedelta(days=1))[0])


@pytest.mark.parametrize("scale", ["linear", "db"])
def test_rtc_collections_are_read_as_they_are_geocoded(server, feed_store, centre, scale):
    grids = areas(centre)
    register(feed_store, grids)
    wanted = scene(grids, f"S1_RTC_{scale}")
    wanted.areas[0][1]["VV"][:5] = np.nan    # a few cells without data (radar shadow)
    server.items.append(write_rtc(server.root, wanted, server.url, scale))
    feed, _, bus = make_feed(feed_store, server.url, collection="sentinel-1-rtc",
                             rtc_scale=scale)
    assert feed.poll() > 0
    got = {i: v for c in published(bus) for i, v in zip(c.parcel_ids, c.values, strict=True)}
    for grid, values in wanted.areas:
        ids, _, _ = grid.cells()
        known = np.isfinite(values["VV"])
        assert set(ids[known]) <= set(got) and not set(ids[~known]) & set(got)
        measured = np.array([got[i] for i in ids[known]])
        assert np.allclose(measured[:, 0], values["VV"][known], atol=1e-3)
        assert np.allclose(measured[:, 1], values["VH"][known], atol=1e-3)
        assert np.isnan(measured[:, 2]).all() and (measured[:, 3] == 37).all()


def test_the_product_kind_follows_the_collection():
    assert Sentinel1Config().kind == "grd"
    assert Sentinel1Config(collection="sentinel-1-rtc").kind == "rtc"
    assert Sentinel1Config(collection="OPERA_L2_RTC-S1_V1").kind == "rtc"
    assert Sentinel1Config(collection="sentinel-1-rtc", product="grd").kind == "grd"
