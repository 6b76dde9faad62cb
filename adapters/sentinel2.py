"""The Sentinel-2 feed: STAC discovery, COG windows, reflectance, per-parcel band means.

``read_item`` turns one STAC item (one tile, one pass) and the parcels homed on its tile into
per-parcel rows; the daemon's feed (``Sentinel2Feed``) and ``eowatch samples extract`` both use
it. docs/sentinel2.md describes the settings, the pixel rule and the reflectance offset.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
import pystac
import shapely
from affine import Affine
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from eowatch.cells import grid_of
from eowatch.contract.feeds import (
    FeedContext,
    FeedHost,
    FeedMetrics,
    FeedSettings,
    FeedSpec,
    chunks_by_shard,
)
from eowatch.contract.messages import ObservationChunk, shard_of
from eowatch.errors import EowatchError
from eowatch.geometry import reproject
from eowatch.models.flood import OPTICAL_BANDS
from eowatch.settings import CommaList

from .cog import Raster, RasterError, gdal_env
from .item_feed import ItemError, MetadataError
from .reflectance import OffsetDecision, decide_offset
from .stac_feed import StacConfig, StacFeed
from .stac_sources import S3Access, source_profile
from .tiles import ParcelSet, tile_square
from .zonal import MIN_PIXELS, Membership, membership

log = logging.getLogger(__name__)
FEED = "sentinel2"

# Model band -> Earth Search v1 asset key; other STAC APIs name assets by band ("B04", or
# "B04_10m" in the Copernicus Data Space) or carry the band in eo:bands, which ``band_asset``
# also accepts.
EARTH_SEARCH_ASSETS = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
    "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22"}
SCL_ASSETS = ("scl", "SCL", "SCL_20m")
WATER_BANDS = ("B03", "B08", "B11")  # green, NIR, SWIR 1.6 µm: NDWI and MNDWI of optical areas
# Scene classification classes that count as a clear view of the ground: dark area pixels,
# vegetation, not vegetated, water, unclassified, snow/ice (not: no data, saturated or defective,
# cloud shadow, cloud medium/high probability, thin cirrus).
SCL_VALID = (2, 4, 5, 6, 7, 11)
BLOCK_METRES = 10_980.0   # parcels are read in windows of at most about this size (+ parcels)
ALIGN_METRES = 60.0       # windows align on the coarsest band's pixels
SAMPLE_PIXELS = 100_000   # clear pixels per band and window kept to check the offset


@dataclass(frozen=True)
class Sentinel2Config(StacConfig):
    stac_url: str = "https://earth-search.aws.element84.com/v1"
    collection: str = "sentinel-2-l2a"
    scl_valid: tuple[int, ...] = SCL_VALID
    max_cloud: float | None = None          # eo:cloud_cover filter of the search, percent
    min_pixels: int = MIN_PIXELS

    @property
    def query(self) -> dict[str, Any] | None:
        """The search's filter on cloud cover, if any."""
        return ({"eo:cloud_cover": {"lte": self.max_cloud}}
                if self.max_cloud is not None else None)


@dataclass
class ItemRows:
    """What one item gives: one row per parcel with at least one valid pixel in every band."""

    item_id: str
    acquired_at: datetime
    parcel_index: np.ndarray     # into the ParcelSet
    values: np.ndarray           # [n, bands] float32 reflectance
    valid_fraction: np.ndarray   # [n] float32
    offset: OffsetDecision
    no_valid_pixels: int = 0     # homed parcels left out: nothing valid in some band


# the resolution each band is measured at; other resolutions are resampled copies
NATIVE_METRES = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
                 "B08": 10, "B8A": 20, "B09": 60, "B10": 60, "B11": 20, "B12": 20}


def _asset_bands(asset: pystac.Asset) -> set[str]:
    """Band names an asset declares: ``eo:bands`` (STAC 1.0) or ``bands`` (STAC 1.1)."""
    declared = asset.extra_fields.get("eo:bands") or asset.extra_fields.get("bands") or []
    return {str(b.get("name")) for b in declared if isinstance(b, dict)}


def band_asset(item: pystac.Item, band: str) -> pystac.Asset:
    """``band``'s asset at its native resolution; ItemError naming the band when the item has
    none. Keys tried: Earth Search's (``red``), the band's (``B04``), the Copernicus Data
    Space's per resolution (``B01_60m`` before ``B01_20m``: an upsampled copy is not what
    models are trained on), then any single-band data asset that declares the band."""
    native = NATIVE_METRES.get(band, 10)
    by_resolution = [f"{band}_{res}m" for res in sorted((10, 20, 60),
                                                        key=lambda r: (r != native, r))]
    for key in (EARTH_SEARCH_ASSETS.get(band), band, band.lower(), *by_resolution):
        if key and key in item.assets:
            return item.assets[key]
    for asset in item.assets.values():
        if _asset_bands(asset) == {band} and "data" in (asset.roles or []):
            return asset
    raise MetadataError(f"item {item.id} has no asset for band {band}; its assets: "
                    f"{sorted(item.assets)}")


def scl_href(item: pystac.Item) -> str | None:
    for key in SCL_ASSETS:
        if key in item.assets:
            return item.assets[key].href
    return None


def _epsg(fields: Mapping[str, Any]) -> int | None:
    if fields.get("proj:epsg"):
        return int(fields["proj:epsg"])
    code = str(fields.get("proj:code") or "")
    if code.upper().startswith("EPSG:") and code[5:].isdigit():
        return int(code[5:])
    return None


def item_epsg(item: pystac.Item, assets: Sequence[pystac.Asset] = ()) -> int:
    """The item's projection: stated in its properties (Earth Search) or on its band assets
    (the Copernicus Data Space states it per asset only); ItemError when none states one."""
    found = _epsg(item.properties)
    if found is not None:
        return found
    stated = {e for e in (_epsg(a.extra_fields) for a in assets) if e is not None}
    if len(stated) == 1:
        return stated.pop()
    raise MetadataError(f"item {item.id} states no projection (proj:epsg / proj:code)"
                    if not stated else f"item {item.id}'s assets state several projections: "
                    f"{sorted(stated)}")


def _stated_transform(asset: pystac.Asset) -> Affine | None:
    """The transform of the item's full tile grid as the asset states it
    (``proj:transform``), or None."""
    stated = asset.extra_fields.get("proj:transform")
    return Affine(*stated[:6]) if stated else None


def _windows(geometries: np.ndarray, origin: tuple[float, float]
             ) -> Iterator[tuple[np.ndarray, tuple[float, float, float, float]]]:
    """Blocks of nearby parcels and the aligned window (x0, y0, x1, y1) that holds each block."""
    bounds = shapely.bounds(geometries)
    centre = (bounds[:, :2] + bounds[:, 2:]) / 2
    block = np.floor((centre - origin) / BLOCK_METRES).astype(np.int64)
    keys, which = np.unique(block, axis=0, return_inverse=True)
    for k in range(len(keys)):
        members = np.flatnonzero(which.ravel() == k)
        b = bounds[members]
        x0 = origin[0] + np.floor((b[:, 0].min() - origin[0]) / ALIGN_METRES) * ALIGN_METRES
        y0 = origin[1] + np.floor((b[:, 1].min() - origin[1]) / ALIGN_METRES) * ALIGN_METRES
        x1 = origin[0] + np.ceil((b[:, 2].max() - origin[0]) / ALIGN_METRES) * ALIGN_METRES
        y1 = origin[1] + np.ceil((b[:, 3].max() - origin[1]) / ALIGN_METRES) * ALIGN_METRES
        yield members, (float(x0), float(y0), float(x1), float(y1))


def _grid(raster: Raster, window: tuple[float, float, float, float]
          ) -> tuple[int, int, int, int, Affine]:
    """(row, col, height, width, transform) of an aligned window on a raster's grid."""
    x0, y0, x1, y1 = window
    t, res = raster.transform, raster.resolution
    col, row = round((x0 - t.c) / res), round((t.f - y1) / res)
    width, height = round((x1 - x0) / res), round((y1 - y0) / res)
    return row, col, height, width, Affine(res, 0, x0, 0, -res, y1)


def _resample_mask(valid: np.ndarray, height: int, width: int) -> np.ndarray:
    """The SCL clear mask on another resolution of the same aligned window: finer grids repeat
    it, coarser grids take the majority of the pixels they cover."""
    h, w = valid.shape
    if (h, w) == (height, width):
        return valid
    if height > h:
        f = height // h
        return np.repeat(np.repeat(valid, f, axis=0), f, axis=1)
    f = h // height
    return valid.reshape(height, f, width, f).mean(axis=(1, 3)) >= 0.5


def read_item(item: pystac.Item, parcels: ParcelSet, band_names: Sequence[str],
              config: Sentinel2Config = Sentinel2Config()) -> ItemRows | None:
    """Per-parcel mean reflectance and valid fraction of the parcels homed on this item's tile;
    None when no registered parcel is."""
    acquired_at = item.datetime
    if acquired_at is None:
        raise MetadataError(f"item {item.id} has no datetime")
    item = config.source.sign(item)
    first = band_asset(item, band_names[0])
    epsg = item_epsg(item, [first])
    stated = _stated_transform(first)
    if stated is not None and not len(parcels.homed_in(epsg, tile_square(stated))[0]):
        return None  # known from one asset's metadata: nothing else is looked up or opened
    assets = [band_asset(item, band) for band in band_names]
    scl = scl_href(item)
    with gdal_env(config.source.gdal_options, config.source.session), ExitStack() as opened:
        try:
            rasters = [opened.enter_context(Raster(asset.href)) for asset in assets]
            mask = opened.enter_context(Raster(scl)) if scl else None
            for raster in rasters + ([mask] if mask else []):
                if raster.crs is None or raster.crs.to_epsg() != epsg:
                    raise MetadataError(f"{raster.href}: CRS {raster.crs} is not the item's "
                                    f"EPSG:{epsg}")
            square = tile_square(stated if stated is not None else rasters[0].transform)
            index, geometries = parcels.homed_in(epsg, square)
            if not len(index):
                return None
            return _measure(item.id, acquired_at.astimezone(UTC), item.properties, index,
                            geometries, rasters, mask, config)
        except RasterError as exc:
            raise ItemError(str(exc)) from None


def _measure(item_id: str, acquired_at: datetime, properties: Mapping[str, Any],
             index: np.ndarray, geometries: np.ndarray, rasters: list[Raster],
             mask: Raster | None, config: Sentinel2Config) -> ItemRows:
    n, bands = len(index), len(rasters)
    mean_dn = np.full((n, bands), np.nan)
    valid_pixels = np.zeros(n)
    total_pixels = np.zeros(n)
    samples: list[list[np.ndarray]] = [[] for _ in rasters]
    origin = (rasters[0].transform.c, rasters[0].transform.f)

    def tally(members: np.ndarray, belongs: Membership, valid: np.ndarray) -> None:
        valid_pixels[members] += belongs.counts(valid.ravel()[belongs.pixel].astype(float))
        total_pixels[members] += belongs.counts()

    for members, window in _windows(geometries, origin):
        clear: np.ndarray | None = None
        if mask is not None:
            row, col, height, width, transform = _grid(mask, window)
            clear = np.isin(mask.read(row, col, height, width), config.scl_valid)
            tally(members, membership(geometries[members], transform, (height, width),
                                      config.min_pixels), clear)
        by_resolution: dict[float, Membership] = {}
        for b, raster in enumerate(rasters):
            row, col, height, width, transform = _grid(raster, window)
            if raster.resolution not in by_resolution:
                by_resolution[raster.resolution] = membership(
                    geometries[members], transform, (height, width), config.min_pixels)
            belongs = by_resolution[raster.resolution]
            dn = raster.read(row, col, height, width)
            ok = dn != raster.nodata
            if clear is not None:
                ok &= _resample_mask(clear, height, width)
            mean_dn[members, b] = belongs.means(dn, ok)
            clear_dn = dn[ok]
            samples[b].append(clear_dn[::max(1, clear_dn.size // SAMPLE_PIXELS)])
            if mask is None and b == 0:  # no scene classification: valid means not nodata
                tally(members, belongs, ok)
    offset = decide_offset({"id": item_id, **properties},
                           (np.concatenate(s) for s in samples), acquired_at)
    observed = np.isfinite(mean_dn).all(axis=1) & (valid_pixels > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        fraction = np.where(total_pixels > 0, valid_pixels / total_pixels, 0.0)
    return ItemRows(item_id, acquired_at, index[observed],
                    offset.reflectance(mean_dn[observed]).astype(np.float32),
                    fraction[observed].astype(np.float32), offset,
                    no_valid_pixels=int((~observed).sum()))


def cell_set(areas: Sequence[dict[str, Any]], shards: int) -> ParcelSet:
    """The cells of ``areas`` (rows of ``FeedHost.areas``) as squares in WGS84, each in its
    area's shard: what ``read_item`` measures like parcels."""
    ids, shard_ids, squares = [], [], []
    for area in areas:
        grid = grid_of(area["id"], area["geometry"], area["grid"]["size"])
        cell_ids, rows, cols = grid.cells()
        ids.append(cell_ids)
        shard_ids.append(np.full(len(cell_ids), shard_of(area["id"], shards)))
        squares.append(reproject(grid.boxes(rows, cols), grid.epsg, 4326))
    if not ids:
        return ParcelSet(np.array([], dtype=object), np.array([], np.int64),
                         np.array([], dtype=object))
    return ParcelSet(np.concatenate(ids), np.concatenate(shard_ids), np.concatenate(squares))


class Sentinel2Feed(StacFeed):
    """Polls the STAC API for new items over the registered parcels and publishes, per item,
    one chunk per shard; the cursor moves only with the bus's acknowledgement."""

    name = FEED

    def __init__(self, host: FeedHost, band_names: Sequence[str], config: Sentinel2Config,
                 interval_seconds: float = 600.0, metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC),
                 shards: int | None = None) -> None:
        """``shards``: N_SHARDS, to measure the cells of areas marked optical too (None:
        parcels only)."""
        if "l2a" in config.collection.lower() and "B10" in band_names:
            raise EowatchError(f"the model reads B10 (cirrus), which {config.collection} does "
                               "not carry: use EOWATCH_S2_COLLECTION=sentinel-2-l1c or a model "
                               "trained without B10 (eowatch train --bands)")
        super().__init__(host, config.search(), config.polling, interval_seconds, metrics, now)
        self.band_names, self.config = tuple(band_names), config
        self._parcels: ParcelSet | None = None
        self._parcels_version: tuple[int, datetime | None] | None = None
        self.shards = shards
        self._cells: tuple[str, ParcelSet] | None = None

    def parcels(self) -> ParcelSet:
        """The registered parcels with geometries, reloaded when the registry changes."""
        version = self.host.parcels_version()
        if self._parcels is None or version != self._parcels_version:
            self._parcels = ParcelSet.from_geojson(*self.host.parcel_geometries(
                exclude_source="simulated"))
            self._parcels_version = version
        return self._parcels

    def cells(self) -> ParcelSet:
        """The cells of the areas marked optical, as squares in WGS84 (rebuilt when the areas
        change)."""
        areas = [a for a in self.host.areas() if a["optical"] and a["grid"]] \
            if self.shards is not None else []
        key = json.dumps([(a["id"], a["grid"]) for a in areas], sort_keys=True)
        if self._cells is None or self._cells[0] != key:
            self._cells = (key, cell_set(areas, self.shards or 1))
        return self._cells[1]

    def search_area(self) -> dict[str, Any] | None:
        found = [s.search_area() for s in (self.parcels(), self.cells()) if len(s)]
        if not found:
            log.info("sentinel2: no parcels with a geometry and no optical areas registered; "
                     "nothing to search for")
            return None
        if len(found) == 1:
            return found[0]
        return shapely.geometry.mapping(shapely.union_all(
            [shapely.geometry.shape(f) for f in found]))

    def query(self) -> dict[str, Any] | None:
        return self.config.query

    def read(self, item: pystac.Item) -> list[ObservationChunk]:
        started = time.perf_counter()
        parcels, chunks = self.parcels(), []
        if len(parcels):
            rows = read_item(item, parcels, self.band_names, self.config)
            chunks += [] if rows is None else chunks_by_shard(
                FEED, item.id, rows.acquired_at, self.band_names,
                parcels.ids[rows.parcel_index], parcels.shards[rows.parcel_index], rows.values,
                rows.valid_fraction)
            self._count(item, rows, time.perf_counter() - started)
        cells = self.cells()
        if len(cells):
            chunks += self._water(item, cells)
        return chunks

    def _water(self, item: pystac.Item, cells: ParcelSet) -> list[ObservationChunk]:
        """NDWI and MNDWI of the optical areas' cells, from the mean reflectance of their clear
        pixels."""
        rows = read_item(item, cells, WATER_BANDS, self.config)
        if rows is None:
            return []
        green, nir, swir = rows.values.astype(np.float64).T
        with np.errstate(divide="ignore", invalid="ignore"):
            indices = np.column_stack([(green - nir) / (green + nir),
                                       (green - swir) / (green + swir)])
        keep = np.isfinite(indices).all(axis=1)
        at = rows.parcel_index[keep]
        self.metrics.feed_parcels.labels(FEED, "cells_observed").inc(int(keep.sum()))
        log.info("sentinel2: %s: %d cells of optical areas observed", item.id, int(keep.sum()))
        return chunks_by_shard(FEED, item.id, rows.acquired_at, OPTICAL_BANDS, cells.ids[at],
                               cells.shards[at], indices[keep].astype(np.float32),
                               rows.valid_fraction[keep], targets="cells")

    def _count(self, item: pystac.Item, rows: ItemRows | None, seconds: float) -> None:
        if rows is None:
            self.metrics.feed_items.labels(FEED, "no_parcels").inc()
            return
        self.metrics.feed_items.labels(FEED, "published").inc()
        self.metrics.feed_parcels.labels(FEED, "observed").inc(len(rows.parcel_index))
        self.metrics.feed_parcels.labels(FEED, "no_valid_pixels").inc(rows.no_valid_pixels)
        self.metrics.feed_item_seconds.labels(FEED).observe(seconds)
        if rows.offset.contradiction:
            self.metrics.offset_contradictions.labels(FEED).inc()
            log.warning("sentinel2: item %s says the reflectance offset is %sapplied but its "
                        "data say %s; following the data", item.id,
                        "" if rows.offset.metadata_applied else "not ", rows.offset.verdict)
        log.info("sentinel2: %s: %d parcels observed, %d without valid pixels, %.1f s", item.id,
                 len(rows.parcel_index), rows.no_valid_pixels, seconds)


class Sentinel2Settings(FeedSettings):
    """Settings of the sentinel2 feed: EOWATCH_S2_<NAME>, or s2_<name> in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_S2_", frozen=True, extra="forbid")

    stac_url: str = Field("https://earth-search.aws.element84.com/v1",
                          description="STAC API searched for items")
    collection: str = Field("sentinel-2-l2a", description="collection searched "
                            "(sentinel-2-l2a or sentinel-2-l1c)")
    poll_seconds: float = Field(600.0, gt=0, description="interval between polls")
    start: datetime | None = Field(
        None, description="first acquisition time read when the feed has no cursor yet "
        "(default: 30 days before the first poll)")
    lookback_hours: float = Field(
        72.0, ge=0, description="items published late, up to this much older than the newest "
        "read, are still read")
    max_cloud: float | None = Field(
        None, ge=0, le=100, description="skip items with a larger eo:cloud_cover (percent)")
    scl_valid: CommaList[int] = Field(
        SCL_VALID, description="scene classes counted as clear, comma separated")
    page_size: int = Field(100, ge=1, le=10000, description="items per STAC search page")
    max_items_per_poll: int = Field(50, ge=1, description="items read in one poll at most")
    max_attempts: int = Field(5, ge=1, description="polls that may fail on one item before "
                              "it is skipped (and listed in the feed's cursor)")
    timeout_seconds: float = Field(30.0, gt=0, description="STAC API request timeout")
    source: Literal["auto", "earth-search", "cdse", "planetary-computer", "generic"] = Field(
        "auto", description="how the API's assets are reached (auto: from the API's host)")
    s3_endpoint: str | None = Field(
        None, description="S3 endpoint of s3:// assets (cdse: eodata.dataspace.copernicus.eu)")
    s3_access_key: SecretStr | None = Field(None, description="S3 access key of s3:// assets")
    s3_secret_key: SecretStr | None = Field(None, description="S3 secret key of s3:// assets")
    s3_https: bool = Field(True, description="reach the S3 endpoint over HTTPS")
    pc_sas_url: str | None = Field(
        None, description="Planetary Computer SAS token endpoint (default: the public one)")
    pc_subscription_key: SecretStr | None = Field(
        None, description="Planetary Computer subscription key (optional; higher limits)")

    def config(self) -> Sentinel2Config:
        start = self.start
        return Sentinel2Config(
            stac_url=self.stac_url, collection=self.collection, scl_valid=self.scl_valid,
            max_cloud=self.max_cloud,
            start=start.replace(tzinfo=start.tzinfo or UTC) if start else None,
            lookback=timedelta(hours=self.lookback_hours), page_size=self.page_size,
            max_items_per_poll=self.max_items_per_poll, max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds, source=source_profile(
                self.source, self.stac_url,
                S3Access(self.s3_endpoint, secret(self.s3_access_key),
                         secret(self.s3_secret_key), self.s3_https),
                self.pc_sas_url, secret(self.pc_subscription_key)))


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None else None


def _build(settings: Sentinel2Settings, context: FeedContext) -> Sentinel2Feed:
    return Sentinel2Feed(context.host, context.band_names, settings.config(),
                         settings.poll_seconds, context.metrics, shards=context.shards)


FEED_SPEC = FeedSpec(FEED, Sentinel2Settings, _build,
                     "Sentinel-2 L2A/L1C from a STAC API: per-parcel reflectance and clear "
                     "fraction of every new item over the registered parcels")
