"""Sentinel-2 test data in the real formats (the generator half of the feed's test kit).

``write_scene`` writes one acquisition of one tile as Earth Search v1 publishes it: a STAC item
built on the real item in ../shared/fixtures (same asset keys, raster:bands, properties, links)
and single-band COGs written with rasterio in the real layout (UTM CRS, the tile's 10980-pixel
grid cropped to a window, uint16 with nodata 0, internal tiling, overviews; SCL as uint8).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
import shapely
from affine import Affine

from eowatch.geometry import reproject

FIXTURE = (Path(__file__).resolve().parents[4] / "shared" / "fixtures" /
           "earthsearch_v1_sentinel-2-l2a_S2A_39QTA_20230628_0_L2A.json")
BAND_RESOLUTION = {"B01": 60, "B02": 10, "B03": 10, "B04": 10, "B05": 20, "B06": 20, "B07": 20,
                   "B08": 10, "B8A": 20, "B09": 60, "B11": 20, "B12": 20}
# Reflectance of a green crop, in band order (what the scene paints inside parcels)
CROP = {"B01": 0.03, "B02": 0.04, "B03": 0.07, "B04": 0.04, "B05": 0.11, "B06": 0.30,
        "B07": 0.38, "B08": 0.42, "B8A": 0.43, "B09": 0.44, "B11": 0.22, "B12": 0.11}
SOIL = {b: 0.12 + 0.02 * i for i, b in enumerate(CROP)}
ASSET_OF = {"B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge1",
            "B06": "rededge2", "B07": "rededge3", "B08": "nir", "B8A": "nir08", "B09": "nir09",
            "B11": "swir16", "B12": "swir22"}


def fixture_item() -> dict[str, Any]:
    """The real Earth Search item, read from ../shared/fixtures (never copied here)."""
    from ...conftest import unavailable

    if not FIXTURE.is_file():
        unavailable("the shared fixtures", f"{FIXTURE} not found beside the checkout")
    return json.loads(FIXTURE.read_text())


@dataclass(frozen=True)
class Tile:
    """A Sentinel-2 tile: UTM zone (EPSG) and the south-west corner of its MGRS square."""

    name: str
    epsg: int
    east: float
    north: float

    @property
    def transform(self) -> Affine:  # the full 10 m grid, as Earth Search states it
        return Affine(10, 0, self.east - 20, 0, -10, self.north + 100_000)

    def to_utm(self, lon: float, lat: float) -> tuple[float, float]:
        return pyproj.Transformer.from_crs(4326, self.epsg, always_xy=True).transform(lon, lat)

    def to_lonlat(self, geometry: shapely.Geometry) -> shapely.Geometry:
        return reproject(geometry, self.epsg, 4326)


def aligned_window(tile: Tile, lon: float, lat: float, width: float, height: float
                   ) -> tuple[float, float, float, float]:
    """A window of the tile's grid, aligned on 60 m, whose north-west corner is near lon/lat."""
    x, y = tile.to_utm(lon, lat)
    t = tile.transform
    x0 = t.c + np.floor((x - t.c) / 60) * 60
    y1 = t.f - np.floor((t.f - y) / 60) * 60
    return (x0, y1 - height, x0 + width, y1)


# Two neighbouring tiles near Rennes (zone 30): 30UWU and, 100 km east, 30UXU.
T30UWU = Tile("30UWU", 32630, 500_000.0, 5_300_000.0)
T30UXU = Tile("30UXU", 32630, 600_000.0, 5_300_000.0)


@dataclass
class Scene:
    """One acquisition of one tile over a window (x0, y0, x1, y1 in UTM metres, aligned on the
    tile's 60 m grid). Pixels whose centre lies in a parcel get the crop spectrum plus the
    parcel's brightness; the rest is soil. ``raw`` adds the +1000 DN offset to the files."""

    tile: Tile
    window: tuple[float, float, float, float]
    when: datetime
    item_id: str = ""
    parcels: list[shapely.Geometry] = field(default_factory=list)   # UTM
    brightness: list[float] = field(default_factory=list)
    parcel_values: np.ndarray | None = None   # [parcels, 12] reflectance, BAND_RESOLUTION order
    baseline: str = "05.09"
    raw: bool = False                  # files hold DN + 1000
    offset_applied_flag: bool | None = True   # earthsearch:boa_offset_applied; None: absent
    clouds: list[tuple[float, float, float, float]] = field(default_factory=list)
    water: list[tuple[float, float, float, float]] = field(default_factory=list)
    nodata: list[tuple[float, float, float, float]] = field(default_factory=list)
    noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.item_id:
            self.item_id = f"S2B_{self.tile.name}_{self.when:%Y%m%d}_0_L2A"

    def grid(self, resolution: int) -> tuple[Affine, tuple[int, int]]:
        """(transform, shape) of the window at ``resolution`` metres."""
        x0, y0, x1, y1 = self.window
        return (Affine(resolution, 0, x0, 0, -resolution, y1),
                (round((y1 - y0) / resolution), round((x1 - x0) / resolution)))

    def reflectance(self, band: str, resolution: int) -> np.ndarray:
        transform, shape = self.grid(resolution)
        values = np.full(shape, SOIL[band])
        if self.parcels:
            labels = rasterio.features.rasterize(
                zip(self.parcels, range(1, len(self.parcels) + 1), strict=True),
                out_shape=shape, transform=transform, fill=0, dtype="int32")
            inside = labels > 0
            if self.parcel_values is not None:
                column = list(BAND_RESOLUTION).index(band)
                values[inside] = self.parcel_values[labels[inside] - 1, column]
            else:
                brightness = np.asarray(self.brightness or [0.0] * len(self.parcels))
                values[inside] = CROP[band] + brightness[labels[inside] - 1]
        if self.water:  # dark in the infrared: what the reflectance-offset check leans on
            water = self._mask(self.water, resolution)
            values[water] = 0.04 if band in ("B01", "B02", "B03") else 0.004
        if self.noise:
            rng = np.random.default_rng(self.seed * 100 + resolution + len(band))
            values = values + rng.normal(0, self.noise, shape)
        return values

    def _mask(self, boxes: list[tuple[float, float, float, float]], resolution: int
              ) -> np.ndarray:
        transform, shape = self.grid(resolution)
        if not boxes:
            return np.zeros(shape, bool)
        return rasterio.features.rasterize(
            [shapely.box(*b) for b in boxes], out_shape=shape, all_touched=False,
            transform=transform, fill=0, dtype="uint8") > 0

    def dn(self, band: str) -> np.ndarray:
        resolution = BAND_RESOLUTION[band]
        dn = np.clip(np.round(self.reflectance(band, resolution) * 10_000) +
                     (1000 if self.raw else 0), 1, 65535).astype(np.uint16)
        dn[self._mask(self.nodata, resolution)] = 0
        return dn

    def scl(self) -> np.ndarray:
        scl = np.full(self._mask([], 20).shape, 4, np.uint8)   # vegetation
        scl[self._mask(self.clouds, 20)] = 9                    # cloud, high probability
        scl[self._mask(self.nodata, 20)] = 0
        return scl


def write_cog(path: Path, array: np.ndarray, transform: Affine, epsg: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(path, "w", driver="COG", width=array.shape[1], height=array.shape[0],
                       count=1, dtype=array.dtype, crs=f"EPSG:{epsg}", transform=transform,
                       nodata=0, blocksize=128, compress="deflate", overview_count=2,
                       overview_resampling="nearest") as dst:
        dst.write(array, 1)


def write_scene(root: Path, scene: Scene, base_url: str) -> dict[str, Any]:
    """Write the scene's COGs under root/cogs/<item id>/ and return its STAC item."""
    x0, y0, x1, y1 = scene.window
    folder = root / "cogs" / scene.item_id
    for band, resolution in BAND_RESOLUTION.items():
        write_cog(folder / f"{band}.tif", scene.dn(band),
                  Affine(resolution, 0, x0, 0, -resolution, y1), scene.tile.epsg)
    write_cog(folder / "SCL.tif", scene.scl(), Affine(20, 0, x0, 0, -20, y1), scene.tile.epsg)

    item = fixture_item()
    item["id"] = scene.item_id
    footprint = scene.tile.to_lonlat(shapely.box(*scene.window))
    item["geometry"] = json.loads(shapely.to_geojson(footprint))
    item["bbox"] = list(shapely.bounds(footprint))
    props = item["properties"]
    zone = scene.tile.epsg % 100
    props.update({
        "datetime": scene.when.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "proj:epsg": scene.tile.epsg, "mgrs:utm_zone": zone,
        "mgrs:latitude_band": scene.tile.name[2], "mgrs:grid_square": scene.tile.name[3:],
        "grid:code": f"MGRS-{scene.tile.name}", "s2:processing_baseline": scene.baseline,
        "s2:product_uri": f"S2B_MSIL2A_{scene.when:%Y%m%dT%H%M%S}_N"
                          f"{scene.baseline.replace('.', '')}_R094_T{scene.tile.name}_"
                          f"{scene.when:%Y%m%dT%H%M%S}.SAFE"})
    if scene.offset_applied_flag is None:
        props.pop("earthsearch:boa_offset_applied", None)
    else:
        props["earthsearch:boa_offset_applied"] = scene.offset_applied_flag
    t = scene.tile.transform
    for band, key in ASSET_OF.items():
        asset = item["assets"][key]
        asset["href"] = f"{base_url}/cogs/{scene.item_id}/{band}.tif"
        r = BAND_RESOLUTION[band]
        asset["proj:transform"] = [r, 0, t.c, 0, -r, t.f]
        asset["proj:shape"] = [109_800 // r, 109_800 // r]
    item["assets"]["scl"]["href"] = f"{base_url}/cogs/{scene.item_id}/SCL.tif"
    item["assets"]["scl"]["proj:transform"] = [20, 0, t.c, 0, -20, t.f]
    for link in item["links"]:
        link["href"] = re.sub(r"S2A_39QTA_20230628_0_L2A", scene.item_id, link["href"])
    return item
