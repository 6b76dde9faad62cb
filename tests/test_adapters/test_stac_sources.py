"""Items as the other STAC APIs write them: projection, band assets and baselines found where
each API states them, and the reflectance offset never silently wrong."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pystac
import pytest
import shapely

from eowatch.adapters.reflectance import OFFSET_DN, decide_offset, processing_baseline
from eowatch.adapters.sentinel2 import (
    MetadataError,
    Sentinel2Config,
    band_asset,
    item_epsg,
    read_item,
)
from eowatch.adapters.stac_sources import S3Access, SourceError, detect, source_profile
from tests.data.sentinel2 import CROP, T30UWU, Scene, aligned_window
from tests.data.sentinel2.cdse import put_cdse_scene
from tests.data.sentinel2.planetary import planetary_item

from .test_sentinel2 import (
    BANDS,
    WHEN,
    broken,
    grid_parcels,
    make_feed,
    parcel_set,
    published,
    register,
)

CDSE_ID = "S2B_MSIL2A_20240612T105619_N0510_R094_T30UWU_20240612T135500"


def cdse_item() -> pystac.Item:
    """An item in the Copernicus Data Space STAC v1 layout: the projection only on the
    assets (proj:code), one asset per band and resolution (B01_20m resampled from B01_60m),
    JPEG 2000 on s3://eodata, the baseline as processing:version."""
    root = "s3://eodata/Sentinel-2/MSI/L2A/2024/06/12/" + CDSE_ID + ".SAFE/GRANULE/IMG_DATA"
    assets = {}
    for band, native in (("B01", 60), ("B02", 10), ("B04", 10), ("B05", 20), ("B8A", 20)):
        for res in (10, 20, 60):
            if res < native and res == 10:
                continue  # CDSE resamples to 20 and 60 m, never finer than 10
            assets[f"{band}_{res}m"] = pystac.Asset(
                f"{root}/R{res}m/T30UWU_20240612T105619_{band}_{res}m.jp2",
                media_type="image/jp2", roles=["data"],
                extra_fields={"proj:code": "EPSG:32630", "gsd": res,
                              "proj:shape": [109_800 // res] * 2,
                              "proj:transform": [res, 0, 500_000, 0, -res, 5_400_000],
                              "sampling:original" if res == native else "sampling:upsampled"
                              if res < native else "sampling:downsampled": True,
                              "bands": [{"name": band}]})
    item = pystac.Item(CDSE_ID, None, None, datetime(2024, 6, 12, 10, 56, 19, tzinfo=UTC),
                       {"processing:version": "05.10", "product:type": "S2MSI2A",
                        "eo:cloud_cover": 12.5}, collection="sentinel-2-l2a")
    for key, asset in assets.items():
        item.add_asset(key, asset)
    return item


def test_the_projection_is_read_from_the_assets_when_the_item_states_none():
    item = cdse_item()
    assert "proj:epsg" not in item.properties and "proj:code" not in item.properties
    assert item_epsg(item, [band_asset(item, "B02")]) == 32630
    with pytest.raises(MetadataError, match="states no projection"):
        item_epsg(item)  # properties alone


def test_bands_resolve_to_their_native_resolution():
    item = cdse_item()
    assert band_asset(item, "B01").href.endswith("B01_60m.jp2")   # not the upsampled 20 m
    assert band_asset(item, "B05").href.endswith("B05_20m.jp2")
    assert band_asset(item, "B02").href.endswith("B02_10m.jp2")


def test_a_stac_1_1_bands_list_names_an_asset_band():
    item = pystac.Item("x", None, None, WHEN, {})
    item.add_asset("visual", pystac.Asset("v.tif", roles=["visual"],
                                          extra_fields={"bands": [{"name": "B04"}]}))
    item.add_asset("band-4", pystac.Asset("b4.tif", roles=["data"],
                                          extra_fields={"bands": [{"name": "B04"}]}))
    assert band_asset(item, "B04").href == "b4.tif"


@pytest.mark.parametrize("properties, baseline", [
    ({"s2:processing_baseline": "05.09"}, (5, 9)),                       # Earth Search v1
    ({"processing:version": "05.11"}, (5, 11)),                          # CDSE
    ({"sentinel:product_id": "S2A_MSIL2A_20200101T105441_N0213_R051_T30UWU_20200101T121256"},
     (2, 13)),                                                            # Earth Search v0
    ({"s2:product_uri": "S2B_MSIL2A_20240612T105619_N0510_R094_T30UWU_20240612T135500.SAFE"},
     (5, 10)),                                                            # Planetary Computer
    ({"id": CDSE_ID}, (5, 10)),                                           # the item id alone
    ({"processing:version": "n/a"}, None),
    ({}, None),
])
def test_the_baseline_is_read_wherever_it_is_written(properties, baseline):
    assert processing_baseline(properties) == baseline


def dark_scene(raw: bool) -> np.ndarray:
    """DNs of a scene with water and shadow: raw ones pile up just above 1000."""
    rng = np.random.default_rng(0)
    reflectance = np.concatenate([rng.uniform(0.0, 0.01, 500), rng.uniform(0.05, 0.4, 9500)])
    dn = reflectance * 10_000 + (1000 if raw else 0)
    return np.where(raw, dn, np.maximum(dn - 50, 1)).astype(np.uint16)


def bright_scene() -> np.ndarray:
    return np.random.default_rng(1).uniform(2000, 6000, 10_000).astype(np.uint16)


@pytest.mark.parametrize("when", [datetime(2019, 5, 1, tzinfo=UTC),
                                  datetime(2024, 5, 1, tzinfo=UTC), None])
def test_without_a_baseline_raw_data_get_the_offset(when):
    """The metadata cannot say: the data decide (reprocessed archive products before 2022
    carry the offset too), before any fallback."""
    assert decide_offset({}, [dark_scene(raw=True)], when).offset_dn == OFFSET_DN
    assert decide_offset({}, [dark_scene(raw=False)], when).offset_dn == 0


def test_without_a_baseline_a_scene_too_bright_to_tell_follows_its_date():
    after = datetime(2024, 5, 1, tzinfo=UTC)
    assert decide_offset({}, [bright_scene()], after).offset_dn == OFFSET_DN
    assert decide_offset({}, [bright_scene()], datetime(2020, 5, 1, tzinfo=UTC)).offset_dn == 0
    decision = decide_offset({}, [dark_scene(raw=False)], after)
    assert not decision.contradiction  # no metadata claim: nothing to contradict


def test_cdse_baselines_take_the_offset_unless_the_data_say_it_is_applied():
    props = {"processing:version": "05.10"}
    assert decide_offset(props, [bright_scene()]).offset_dn == OFFSET_DN
    assert decide_offset(props, [dark_scene(raw=True)]).offset_dn == OFFSET_DN
    assert decide_offset({"processing:version": "03.01"}, [dark_scene(raw=True)]
                         ).offset_dn == 0


def test_an_item_whose_metadata_cannot_be_used_is_skipped_at_once(server, feed_store, tmp_path):
    window = aligned_window(T30UWU, -1.9, 48.0, 1200, 1200)
    parcels = grid_parcels(window, 4)
    register(feed_store, T30UWU, parcels)
    feed, metrics, bus = make_feed(feed_store, server.url, max_attempts=3)
    broken(server, tmp_path, "missing asset")   # permanent: no asset for B08
    server.add(Scene(T30UWU, window, WHEN + timedelta(days=5), parcels=parcels,
                     item_id="S2A_30UWU_20260508_0_L2A"))
    feed.poll()
    cursor = feed.cursor()
    assert [s["id"] for s in cursor.skipped] == ["S2B_30UWU_20260503_0_L2A"]
    assert "no asset for band B08" in cursor.skipped[0]["reason"] and not cursor.failures
    assert {c.acquisition_id for c in published(bus)} == {"S2A_30UWU_20260508_0_L2A"}
    assert metrics.registry.get_sample_value(
        "eowatch_feed_items_total", {"feed": "sentinel2", "outcome": "skipped"}) == 1


# -- source profiles: how each API's assets are reached -------------------------------------

@pytest.mark.parametrize("url, name", [
    ("https://earth-search.aws.element84.com/v1", "earth-search"),
    ("https://stac.dataspace.copernicus.eu/v1", "cdse"),
    ("https://planetarycomputer.microsoft.com/api/stac/v1", "planetary-computer"),
    ("http://127.0.0.1:8000/stac", "generic")])
def test_the_profile_is_detected_from_the_api_host(url, name):
    assert detect(url) == name


def test_the_data_space_needs_s3_keys_and_reads_path_style_from_its_endpoint():
    with pytest.raises(SourceError, match="EOWATCH_S2_S3_ACCESS_KEY"):
        source_profile("auto", "https://stac.dataspace.copernicus.eu/v1")
    cdse = source_profile("cdse", "x", S3Access(access_key="AK", secret_key="SK"))
    assert cdse.gdal_options["AWS_S3_ENDPOINT"] == "eodata.dataspace.copernicus.eu"
    assert cdse.gdal_options["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert "SK" not in repr(cdse) and "SK" not in repr(S3Access(secret_key="SK"))


def test_data_space_jpeg2000_on_s3_is_read_at_native_resolution_with_the_offset(
        s3_endpoint, tmp_path):
    """A CDSE item end to end: JPEG 2000 in a local S3 server, read through the cdse profile
    (its endpoint, path-style, keys), raw DNs of baseline 05.10 given the -1000 offset."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="eowatch", aws_secret_access_key="eowatch")
    bucket = f"eodata-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    window = aligned_window(T30UWU, -1.9, 48.0, 1200, 1200)
    parcels = grid_parcels(window, 4)
    scene = Scene(T30UWU, window, WHEN, parcels=parcels, baseline="05.10", raw=True,
                  offset_applied_flag=None)
    soil_b01 = np.full(scene.grid(20)[1], 5000, np.uint16)  # not B01: must not be read
    item = pystac.Item.from_dict(put_cdse_scene(s3, bucket, scene, upsampled_b01=soil_b01))
    config = Sentinel2Config(source=source_profile(
        "cdse", "https://stac.dataspace.copernicus.eu/v1",
        S3Access(s3_endpoint.removeprefix("http://"), "eowatch", "eowatch", https=False)))
    rows = read_item(item, parcel_set(T30UWU, parcels), BANDS, config)
    assert rows is not None and len(rows.parcel_index) == 4
    assert rows.offset.offset_dn == OFFSET_DN
    assert rows.values == pytest.approx(np.array([[CROP[b] for b in BANDS]] * 4), abs=1e-6)


class TokenServer:
    """Planetary Computer's SAS token endpoint, served locally: /{account}/{container}."""

    def __init__(self) -> None:
        calls = self.calls = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                calls.append(self.path)
                body = json.dumps({"msft:expiry": "2099-01-01T00:00:00Z",
                                   "token": "st=2026&se=2099&sp=rl&sig=local"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/sas/v1/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def test_planetary_computer_hrefs_are_signed_with_a_token_from_its_endpoint():
    """Signing asks the token endpoint (local here) and touches no blob: nothing is read."""
    tokens = TokenServer()
    try:
        item = pystac.Item("S2B_MSIL2A_x", None, None, WHEN, {})
        blob = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/30/U/WU/B04_10m.tif"
        item.add_asset("B04", pystac.Asset(blob, roles=["data"]))
        pc = source_profile("auto", "https://planetarycomputer.microsoft.com/api/stac/v1",
                            sas_url=tokens.url)
        signed = pc.sign(item)
        assert signed.assets["B04"].href == blob + "?st=2026&se=2099&sp=rl&sig=local"
        assert tokens.calls == ["/api/sas/v1/token/sentinel2l2a01/sentinel2-l2"]
        assert item.assets["B04"].href == blob  # the original is left as it was
    finally:
        tokens.httpd.shutdown()


def pond_scene(raw: bool, baseline: str = "05.10") -> tuple[Scene, list]:
    """Six fields with a pond between two of them: dark enough for the data to tell the
    offset."""
    window = aligned_window(T30UWU, -1.9, 48.0, 1800, 1200)
    parcels = grid_parcels(window, 6)
    first, second = shapely.bounds(parcels[0]), shapely.bounds(parcels[1])
    water = [(first[2], first[1], second[0], first[3])]
    return Scene(T30UWU, window, WHEN, parcels=parcels, baseline=baseline, raw=raw,
                 offset_applied_flag=None, water=water), parcels


@pytest.mark.parametrize("raw", [True, False], ids=["raw", "offset-applied"])
@pytest.mark.parametrize("api", ["planetary-computer", "cdse"])
def test_each_api_reads_raw_and_offset_applied_data_right(api, raw, server, s3_endpoint):
    """The offset rule on the other APIs' layouts (Earth Search's: test_sentinel2.py): the
    reflectance comes out right whether the files hold raw or offset-applied DNs."""
    scene, parcels = pond_scene(raw)
    if api == "cdse":
        import boto3

        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                          aws_access_key_id="eowatch", aws_secret_access_key="eowatch")
        bucket = f"eodata-{uuid.uuid4().hex[:8]}"
        s3.create_bucket(Bucket=bucket)
        item = put_cdse_scene(s3, bucket, scene)
        config = Sentinel2Config(source=source_profile("cdse", "x", S3Access(
            s3_endpoint.removeprefix("http://"), "eowatch", "eowatch", https=False)))
    else:
        item = planetary_item(server.add(scene))
        config = Sentinel2Config()  # the local COGs need no signing
    rows = read_item(pystac.Item.from_dict(item), parcel_set(T30UWU, parcels), BANDS, config)
    assert rows is not None
    assert rows.offset.offset_dn == (OFFSET_DN if raw else 0)
    assert rows.offset.verdict == ("raw" if raw else "applied")
    assert rows.values[0] == pytest.approx([CROP[b] for b in BANDS], abs=1e-6)


def test_a_tile_without_parcels_is_passed_over_before_its_other_assets_are_looked_up(server):
    """No registered parcel on the tile: known from the first band's metadata, so an item whose
    other assets are missing or odd cannot block the poll."""
    scene, parcels = pond_scene(raw=True)
    item = server.add(scene)
    for key in ("green", "red", "nir", "scl"):
        del item["assets"][key]
    elsewhere = grid_parcels(aligned_window(T30UWU, -1.2, 48.6, 600, 600), 2)
    lonely = parcel_set(T30UWU, elsewhere)
    assert read_item(pystac.Item.from_dict(item), lonely, BANDS) is None
    with pytest.raises(MetadataError, match="no asset for band B03"):
        read_item(pystac.Item.from_dict(item), parcel_set(T30UWU, parcels), BANDS)
