"""The Sentinel-1 feed: STAC discovery, backscatter per cell of the registered areas.

Two kinds of collection, chosen by EOWATCH_S1_PRODUCT (``auto``: ``rtc`` when the collection's
name says so, else ``grd``):

- ``grd``: Level-1 GRD products as Planetary Computer serves them (``sentinel-1-grd``): COG
  assets ``vv`` and ``vh`` in radar geometry, and per polarisation the product annotation
  (``schema-product-*``: the geolocation grid), the calibration and the noise annotation.
  Per area: the window of lines and pixels that covers it (adapters/s1_geolocation.py), DN →
  thermal noise removed → sigma0 from the product's own LUTs (adapters/s1_calibration.py), each
  pixel averaged (in linear power) into the cell that holds its centre.
- ``rtc``: collections already calibrated and geocoded (Planetary Computer ``sentinel-1-rtc``,
  OPERA RTC-S1): assets ``vv`` and ``vh`` in a map projection, gamma0 linear or in dB
  (EOWATCH_S1_RTC_SCALE); each pixel goes to the cell that holds its centre.

Each cell observed gives mean VV and VH in dB, the share of its pixels that were valid, the
mean incidence angle (GRD; NaN where the product gives none) and the relative orbit: the flood
model's bands (models/flood.py). docs/flood.md has the details.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pystac
import requests
import shapely
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import from_bounds

from eowatch.cells import CellGrid, grid_of
from eowatch.contract.feeds import (
    FeedContext,
    FeedHost,
    FeedMetrics,
    FeedSettings,
    FeedSpec,
    chunks_by_shard,
)
from eowatch.contract.messages import ObservationChunk, shard_of
from eowatch.geometry import transformer
from eowatch.models.flood import BANDS

from .cog import Raster, RasterError, gdal_env
from .item_feed import ItemError, MetadataError
from .s1_calibration import Calibration, CalibrationError
from .s1_geolocation import CellMeans, Geolocation, GeolocationError, bin_to_cells, cell_means
from .stac_feed import StacConfig, StacFeed
from .stac_sources import source_profile

log = logging.getLogger(__name__)
FEED = "sentinel1"
POLARISATIONS = ("VV", "VH")
# GRD images carry no data only along their edges (border noise removal blanks a few hundred
# pixels at near and far range, a few lines at the start and end of a slice)
EDGE_LINES, EDGE_PIXELS = 200, 1000


@dataclass(frozen=True)
class Sentinel1Config(StacConfig):
    stac_url: str = "https://planetarycomputer.microsoft.com/api/stac/v1"
    collection: str = "sentinel-1-grd"
    product: Literal["auto", "grd", "rtc"] = "auto"
    rtc_scale: Literal["linear", "db"] = "linear"
    max_items_per_poll: int = 20

    @property
    def kind(self) -> Literal["grd", "rtc"]:
        if self.product != "auto":
            return self.product
        return "rtc" if "rtc" in self.collection.lower() else "grd"


@dataclass(frozen=True)
class Area:
    """A registered area as the feed reads it: its cells and its shard."""

    grid: CellGrid
    ids: np.ndarray          # cell ids in grid.cells() order
    shard: int
    outline: shapely.Geometry  # WGS84

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return tuple(self.outline.bounds)  # type: ignore[return-value]


@dataclass(frozen=True)
class AreaRows:
    """What one item gives for one area: a row per cell with at least one valid pixel."""

    area: Area
    means: CellMeans       # power [n, 2]: VV, VH linear


def item_orbit(item: pystac.Item) -> int:
    orbit = item.properties.get("sat:relative_orbit")
    if not isinstance(orbit, int) or isinstance(orbit, bool):
        raise MetadataError(f"item {item.id} states no relative orbit (sat:relative_orbit): "
                            "the flood model keeps one normal backscatter per orbit")
    return orbit


def check_polarisations(item: pystac.Item) -> None:
    stated = item.properties.get("sar:polarizations")
    if stated is not None and not set(POLARISATIONS) <= set(stated):
        raise MetadataError(f"item {item.id} has polarisations {'/'.join(stated)}; the flood "
                            "model reads VV and VH (dual-pol IW over land)")


def asset_href(item: pystac.Item, key: str) -> str:
    asset = item.assets.get(key)
    if asset is None:
        raise MetadataError(f"item {item.id} has no {key!r} asset")
    return asset.get_absolute_href() or asset.href


def fetch(href: str, timeout_seconds: float) -> bytes:
    """An annotation file: over HTTP(S), or from a local path."""
    if not href.startswith(("http://", "https://")):
        if "://" in href:
            raise MetadataError(f"{href}: only http(s) and local annotation files are read")
        try:
            return Path(href).read_bytes()
        except OSError as exc:
            raise ItemError(f"{href}: cannot read ({exc.strerror})") from None
    try:
        response = requests.get(href, timeout=timeout_seconds)
    except requests.RequestException as exc:
        raise ItemError(f"{href}: unreachable ({exc.__class__.__name__})") from None
    if response.status_code in (401, 403, 409):
        # Azure answers an unsigned or expired blob href with 403 (or 409 for a public-access
        # error): a source without signing, or a token that ran out
        raise ItemError(f"{href}: HTTP {response.status_code}, access refused: the href is not "
                        "signed or its token expired (Planetary Computer assets need "
                        "EOWATCH_S1_SOURCE=planetary-computer or auto)")
    if response.status_code != 200:
        raise ItemError(f"{href}: HTTP {response.status_code}")
    return response.content


def _open(href: str) -> Raster:
    try:
        with warnings.catch_warnings():  # GRD rasters are in radar geometry, on purpose
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return Raster(href)
    except RasterError as exc:
        raise ItemError(str(exc)) from None


def read_grd(item: pystac.Item, areas: Sequence[Area], config: Sentinel1Config
             ) -> list[AreaRows]:
    """Sigma0 per cell of each area the GRD product covers."""
    texts = {(kind, pol): fetch(asset_href(item, f"schema-{kind}-{pol.lower()}"),
                                config.timeout_seconds)
             for pol in POLARISATIONS for kind in ("calibration", "noise")}
    try:
        geolocation = Geolocation.from_xml(fetch(asset_href(item, "schema-product-vv"),
                                                 config.timeout_seconds))
        calibrations = [Calibration.from_xml(texts["calibration", pol], texts["noise", pol])
                        for pol in POLARISATIONS]
    except (GeolocationError, CalibrationError) as exc:
        raise MetadataError(f"item {item.id}: {exc}") from None
    out = []
    with gdal_env(config.source.gdal_options, config.source.session), \
            _open(asset_href(item, "vv")) as vv, _open(asset_href(item, "vh")) as vh:
        for area in areas:
            window = geolocation.window_of(area.bounds)
            if window is None:
                continue
            row0, col0, height, width = window
            try:
                dn = [raster.read(row0, col0, height, width) for raster in (vv, vh)]
            except RasterError as exc:
                raise ItemError(str(exc)) from None
            interior = (row0 >= EDGE_LINES and row0 + height <= geolocation.shape[0] - EDGE_LINES
                        and col0 >= EDGE_PIXELS
                        and col0 + width <= geolocation.shape[1] - EDGE_PIXELS)
            for pol, values in zip(POLARISATIONS, dn, strict=True):
                if interior and not values.any():
                    # a truncated or partly written raster reads as zeros (GDAL takes tiles it
                    # cannot find for sparse ones): a GRD image has data everywhere but at
                    # its edges
                    raise ItemError(f"item {item.id}: the {pol} raster has no data inside the "
                                    f"image, at lines {row0}-{row0 + height}, pixels "
                                    f"{col0}-{col0 + width}: it is incomplete or truncated")
            sigma0 = np.stack([c.sigma0(d, row0, col0) for c, d in zip(calibrations, dn,
                                                                           strict=True)])
            # DN 0 is no data (outside the swath); a pixel at or below the noise floor has no
            # measurable backscatter
            valid = (dn[0] > 0) & (dn[1] > 0) & (sigma0 > 0).all(axis=0)
            out.append(AreaRows(area, cell_means(sigma0, valid, row0, col0, geolocation,
                                                 area.grid)))
    return out


def read_rtc(item: pystac.Item, areas: Sequence[Area], config: Sentinel1Config
             ) -> list[AreaRows]:
    """Gamma0 per cell of each area, from geocoded rasters."""
    out = []
    with gdal_env(config.source.gdal_options, config.source.session), \
            _open(asset_href(item, "vv")) as vv, _open(asset_href(item, "vh")) as vh:
        if vv.crs is None or vv.transform != vh.transform:
            raise MetadataError(f"item {item.id}: its vv and vh rasters are not on one "
                                "georeferenced grid")
        to_raster = transformer(4326, vv.crs.to_wkt())
        for area in areas:
            bounds = to_raster.transform_bounds(*area.bounds)
            window = from_bounds(*bounds, transform=vv.transform).round_offsets().round_lengths()
            row0, col0 = int(window.row_off) - 1, int(window.col_off) - 1
            height, width = int(window.height) + 2, int(window.width) + 2
            try:
                values = np.stack([r.read(row0, col0, height, width).astype(np.float64)
                                   for r in (vv, vh)])
            except RasterError as exc:
                raise ItemError(str(exc)) from None
            nodata = np.isclose(values, vv.nodata) | ~np.isfinite(values)
            power = 10 ** (values / 10) if config.rtc_scale == "db" else values
            valid = np.asarray(~nodata.any(axis=0) & (power > 0).all(axis=0))
            rows, cols = np.mgrid[row0:row0 + height, col0:col0 + width]
            xs, ys = vv.transform * (cols + 0.5, rows + 0.5)
            x, y = transformer(vv.crs.to_wkt(), area.grid.epsg).transform(xs, ys)
            out.append(AreaRows(area, bin_to_cells(np.asarray(x), np.asarray(y), power,
                                                   valid, area.grid)))
    return out


class Sentinel1Feed(StacFeed):
    """Polls the STAC API for new Sentinel-1 items over the registered areas and publishes,
    per item, one chunk per shard of cells."""

    name = FEED
    band_names = BANDS
    targets = "cells"

    def __init__(self, host: FeedHost, shards: int, config: Sentinel1Config,
                 interval_seconds: float = 600.0, metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(host, config.search(), config.polling, interval_seconds, metrics, now)
        self.shards, self.config = shards, config
        self._areas: dict[str, tuple[str, Area]] = {}

    def areas(self) -> list[Area]:
        """The registered areas with cells (their grids are rebuilt once per definition)."""
        areas = []
        for row in self.host.areas():
            if row["grid"] is None or row["source"] == "simulated-sentinel1":
                continue
            key = json.dumps(row["grid"], sort_keys=True)
            known = self._areas.get(row["id"])
            if known is None or known[0] != key:
                grid = grid_of(row["id"], row["geometry"], row["grid"]["size"])
                outline = shapely.geometry.shape(json.loads(row["geometry"]))
                known = (key, Area(grid, grid.cells()[0], shard_of(row["id"], self.shards),
                                   outline))
                self._areas[row["id"]] = known
            areas.append(known[1])
        return areas

    def search_area(self) -> dict[str, Any] | None:
        areas = self.areas()
        if not areas:
            log.info("sentinel1: no areas with cells registered; nothing to search for")
            return None
        union = shapely.union_all([shapely.box(*a.bounds) for a in areas])
        return shapely.geometry.mapping(shapely.convex_hull(union))

    def read(self, item: pystac.Item) -> list[ObservationChunk]:
        started = time.perf_counter()
        acquired_at = item.datetime
        if acquired_at is None:
            raise MetadataError(f"item {item.id} has no datetime")
        check_polarisations(item)
        orbit = item_orbit(item)
        footprint = shapely.geometry.shape(item.geometry) if item.geometry else None
        areas = [a for a in self.areas()
                 if footprint is None or shapely.intersects(footprint, a.outline)]
        if not areas:
            self.metrics.feed_items.labels(FEED, "no_parcels").inc()
            return []
        item = self.config.source.sign(item)
        reader = read_rtc if self.config.kind == "rtc" else read_grd
        parts = [part for part in reader(item, areas, self.config) if len(part.means.index)]
        ids, shards, values, valid = [], [], [], []
        for part in parts:
            means = part.means
            with np.errstate(divide="ignore", invalid="ignore"):
                db = 10 * np.log10(means.power)
            keep = (means.valid_fraction > 0) & np.isfinite(db).all(axis=1)
            n = int(keep.sum())
            ids.append(part.area.ids[means.index[keep]])
            shards.append(np.full(n, part.area.shard))
            values.append(np.column_stack([db[keep], means.incidence[keep],
                                           np.full(n, float(orbit))]))
            valid.append(means.valid_fraction[keep])
        seconds = time.perf_counter() - started
        if not ids or not sum(len(i) for i in ids):
            self.metrics.feed_items.labels(FEED, "no_parcels").inc()
            return []
        self.metrics.feed_items.labels(FEED, "published").inc()
        cells = sum(len(i) for i in ids)
        self.metrics.feed_parcels.labels(FEED, "observed").inc(cells)
        self.metrics.feed_item_seconds.labels(FEED).observe(seconds)
        log.info("sentinel1: %s (orbit %d): %d cells of %d areas observed, %.1f s", item.id,
                 orbit, cells, len(parts), seconds)
        return chunks_by_shard(FEED, item.id, acquired_at.astimezone(UTC), BANDS,
                               np.concatenate(ids), np.concatenate(shards),
                               np.concatenate(values).astype(np.float32),
                               np.concatenate(valid), targets="cells")


class Sentinel1Settings(FeedSettings):
    """Settings of the sentinel1 feed: EOWATCH_S1_<NAME>, or s1_<name> in the TOML file."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_S1_", frozen=True, extra="forbid")

    stac_url: str = Field("https://planetarycomputer.microsoft.com/api/stac/v1",
                          description="STAC API searched for items")
    collection: str = Field("sentinel-1-grd", description="collection searched "
                            "(sentinel-1-grd; or an RTC one: sentinel-1-rtc, OPERA RTC-S1)")
    product: Literal["auto", "grd", "rtc"] = Field(
        "auto", description="grd: calibrate and geolocate GRD; rtc: already calibrated and "
        "geocoded (auto: rtc when the collection's name says so)")
    rtc_scale: Literal["linear", "db"] = Field("linear",
                                               description="how RTC rasters store gamma0")
    poll_seconds: float = Field(600.0, gt=0, description="interval between polls")
    start: datetime | None = Field(
        None, description="first acquisition time read when the feed has no cursor yet "
        "(default: 30 days before the first poll)")
    lookback_hours: float = Field(72.0, ge=0, description="items published late, up to this "
                                  "much older than the newest read, are still read")
    page_size: int = Field(100, ge=1, le=10000, description="items per STAC search page")
    max_items_per_poll: int = Field(20, ge=1, description="items read in one poll at most")
    max_attempts: int = Field(5, ge=1, description="polls that may fail on one item before "
                              "it is skipped (and listed in the feed's cursor)")
    timeout_seconds: float = Field(30.0, gt=0, description="request timeout")
    source: Literal["auto", "planetary-computer", "generic"] = Field(
        "auto", description="how the API's assets are reached (auto: from the API's host)")
    pc_sas_url: str | None = Field(
        None, description="Planetary Computer SAS token endpoint (default: the public one)")
    pc_subscription_key: SecretStr | None = Field(
        None, description="Planetary Computer subscription key (needed for sentinel-1-rtc)")

    def config(self) -> Sentinel1Config:
        start = self.start
        key = self.pc_subscription_key.get_secret_value() if self.pc_subscription_key else None
        return Sentinel1Config(
            stac_url=self.stac_url, collection=self.collection, product=self.product,
            rtc_scale=self.rtc_scale,
            start=start.replace(tzinfo=start.tzinfo or UTC) if start else None,
            lookback=timedelta(hours=self.lookback_hours), page_size=self.page_size,
            max_items_per_poll=self.max_items_per_poll, max_attempts=self.max_attempts,
            timeout_seconds=self.timeout_seconds,
            source=source_profile(self.source, self.stac_url, sas_url=self.pc_sas_url,
                                  subscription_key=key))


def _build(settings: Sentinel1Settings, context: FeedContext) -> Sentinel1Feed:
    return Sentinel1Feed(context.host, context.shards, settings.config(),
                         settings.poll_seconds, context.metrics)


FEED_SPEC = FeedSpec(FEED, Sentinel1Settings, _build,
                     "Sentinel-1 GRD (calibrated and geolocated here) or RTC from a STAC API: "
                     "VV/VH backscatter per cell of the registered areas")

