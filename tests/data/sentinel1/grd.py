"""GRD products as Planetary Computer serves them (``sentinel-1-grd``), on the real SAFE XML.

``write_grd`` writes, under ``<root>/cogs/<product id>/``, the fixture's real annotation,
calibration and noise XML for VV (and the same files relabelled VH: the fixture is a VV-only
excerpt), and per polarisation a measurement GeoTIFF of the real size in radar geometry, tiled
and sparse: only the windows over the given areas hold data, DN generated from the backscatter
wanted per cell through the product's own LUTs (DN² = sigma0 · A² + noise), so that reading
them back through calibration and geolocation must give those values. Everything else is
DN 0, no data, as outside a real swath.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyproj
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.windows import Window

from eowatch.adapters.s1_calibration import Calibration
from eowatch.adapters.s1_geolocation import Geolocation
from eowatch.cells import CellGrid
from tests.conftest import SHARED

SAFE = (SHARED / "fixtures" / "sentinel1" /
        "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE")
BACKGROUND_DB = {"VV": -11.0, "VH": -17.0}   # pixels of the window outside the area's cells


@dataclass
class GrdScene:
    """One GRD acquisition: per area, the backscatter (dB) of each of its cells."""

    product_id: str
    acquired_at: datetime
    relative_orbit: int
    areas: list[tuple[CellGrid, dict[str, np.ndarray]]]   # grid, {"VV": [cells], "VH": ...}
    polarisations: tuple[str, ...] = ("VV", "VH")
    omit_assets: tuple[str, ...] = ()                     # asset keys left out of the item
    properties: dict[str, Any] = field(default_factory=dict)


def _files(pol: str) -> dict[str, Path]:
    name = {"product": next((SAFE / "annotation").glob("s1b-*-vv-*.xml")),
            "calibration": next((SAFE / "annotation" / "calibration").glob("calibration-*.xml")),
            "noise": next((SAFE / "annotation" / "calibration").glob("noise-*.xml"))}
    return name if pol == "VV" else {k: v.with_name(v.name.replace("-vv-", "-vh-"))
                                     for k, v in name.items()}


def _relabel(text: str, pol: str) -> str:
    return re.sub(r"<polarisation>VV</polarisation>", f"<polarisation>{pol}</polarisation>",
                  text)


def write_grd(root: Path, scene: GrdScene, base_url: str) -> dict[str, Any]:
    """Write the product's files and return its STAC item (Planetary Computer's layout)."""
    folder = root / "cogs" / scene.product_id
    geo = Geolocation.from_safe(SAFE, "vv")
    assets: dict[str, Any] = {}
    for pol in scene.polarisations:
        for kind, source in _files("VV").items():
            target = folder / _files(pol)[kind].relative_to(SAFE)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_relabel(source.read_text(), pol))
            assets[f"schema-{kind}-{pol.lower()}"] = {
                "href": f"{base_url}/cogs/{scene.product_id}/{target.relative_to(folder)}",
                "type": "application/xml", "roles": ["metadata"]}
        calibration = Calibration.from_safe(SAFE, "vv")
        measurement = folder / "measurement" / f"{pol.lower()}.tiff"
        measurement.parent.mkdir(parents=True, exist_ok=True)
        _write_measurement(measurement, scene, pol, geo, calibration)
        assets[pol.lower()] = {
            "href": f"{base_url}/cogs/{scene.product_id}/measurement/{measurement.name}",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"]}
    for key in scene.omit_assets:
        assets.pop(key, None)
    corners_lon, corners_lat = geo.lonlat(np.array([0, 0, geo.shape[0], geo.shape[0], 0.0]),
                                          np.array([0, geo.shape[1], geo.shape[1], 0, 0.0]))
    ring = [[float(x), float(y)] for x, y in zip(corners_lon, corners_lat, strict=True)]
    return {
        "type": "Feature", "stac_version": "1.0.0", "id": scene.product_id,
        "collection": "sentinel-1-grd",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": [min(corners_lon), min(corners_lat), max(corners_lon), max(corners_lat)],
        "properties": {"datetime": scene.acquired_at.isoformat().replace("+00:00", "Z"),
                       "platform": "SENTINEL-1B", "constellation": "Sentinel-1",
                       "sar:instrument_mode": "IW", "sar:product_type": "GRD",
                       "sar:polarizations": list(scene.polarisations),
                       "sat:relative_orbit": scene.relative_orbit,
                       "sat:orbit_state": "descending", **scene.properties},
        "assets": assets, "links": [],
        "stac_extensions": ["https://stac-extensions.github.io/sar/v1.0.0/schema.json",
                            "https://stac-extensions.github.io/sat/v1.0.0/schema.json"]}


def _write_measurement(path: Path, scene: GrdScene, pol: str, geo: Geolocation,
                       calibration: Calibration) -> None:
    height, width = geo.shape
    with warnings.catch_warnings():  # radar geometry: no geotransform, on purpose
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        _write_windows(path, scene, pol, geo, calibration, height, width)


def _write_windows(path: Path, scene: GrdScene, pol: str, geo: Geolocation,
                   calibration: Calibration, height: int, width: int) -> None:
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=1,
                       dtype="uint16", tiled=True, blockxsize=512, blockysize=512,
                       compress="deflate", sparse_ok=True) as dataset:
        for grid, values in scene.areas:
            window = geo.window_of(_bounds(grid))
            assert window is not None, "the area lies outside the fixture's scene"
            row0, col0, h, w = window
            db = _pixel_db(grid, values[pol], BACKGROUND_DB[pol], geo, row0, col0, h, w)
            rows = np.arange(row0, row0 + h, dtype=np.float64)
            cols = np.arange(col0, col0 + w, dtype=np.float64)
            power = 10 ** (db / 10) * calibration.sigma.window(rows, cols) ** 2 \
                + calibration.noise(rows, cols)
            dn = np.clip(np.rint(np.sqrt(power)), 1, 65535).astype(np.uint16)
            dataset.write(dn, 1, window=Window(col0, row0, w, h))


def _bounds(grid: CellGrid) -> tuple[float, float, float, float]:
    rows, cols = grid.inside.shape
    to_lonlat = pyproj.Transformer.from_crs(grid.epsg, 4326, always_xy=True)
    return to_lonlat.transform_bounds(grid.x0, grid.y1 - rows * grid.size,
                                      grid.x0 + cols * grid.size, grid.y1)


def _pixel_db(grid: CellGrid, cell_db: np.ndarray, background: float, geo: Geolocation,
              row0: int, col0: int, h: int, w: int) -> np.ndarray:
    """The backscatter of each pixel of the window: that of the cell holding its centre."""
    rows, cols = np.mgrid[row0:row0 + h, col0:col0 + w]
    lon, lat = geo.lonlat(rows + 0.5, cols + 0.5)
    x, y = pyproj.Transformer.from_crs(4326, grid.epsg, always_xy=True).transform(lon, lat)
    r = np.floor((grid.y1 - y) / grid.size).astype(np.int64)
    c = np.floor((x - grid.x0) / grid.size).astype(np.int64)
    inside = (r >= 0) & (r < grid.inside.shape[0]) & (c >= 0) & (c < grid.inside.shape[1])
    position = np.full(grid.inside.shape, -1, np.int64)
    position[grid.inside] = np.arange(grid.count)
    cell = np.where(inside, position[np.clip(r, 0, grid.inside.shape[0] - 1),
                                     np.clip(c, 0, grid.inside.shape[1] - 1)], -1)
    return np.where(cell >= 0, cell_db[np.maximum(cell, 0)], background)


def truncate(path: Path, keep: float = 0.3) -> None:
    """Cut a file short, as an interrupted upload leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])



