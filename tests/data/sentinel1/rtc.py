"""RTC products (calibrated, terrain-flattened and geocoded) as Planetary Computer's
``sentinel-1-rtc`` serves them: ``vv`` and ``vh`` float32 COGs in a UTM projection, gamma0
linear (or in dB, as some providers store it), NaN or -32768 where there is no data."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import transform_bounds

from eowatch.cells import CellGrid

from .grd import GrdScene

PIXEL_METRES = 10.0
NODATA = -32768.0


def write_rtc(root: Path, scene: GrdScene, base_url: str,
              scale: Literal["linear", "db"] = "linear") -> dict[str, Any]:
    """Write one RTC acquisition over the scene's areas (all in one UTM zone) and return its
    STAC item. Pixels outside the areas' cells are no data."""
    grids = [grid for grid, _ in scene.areas]
    epsg = grids[0].epsg
    x0 = min(g.x0 for g in grids) - 100
    y1 = max(g.y1 for g in grids) + 100
    x1 = max(g.x0 + g.inside.shape[1] * g.size for g in grids) + 100
    y0 = min(g.y1 - g.inside.shape[0] * g.size for g in grids) - 100
    width, height = int((x1 - x0) / PIXEL_METRES), int((y1 - y0) / PIXEL_METRES)
    transform = from_origin(x0, y1, PIXEL_METRES, PIXEL_METRES)
    xs = x0 + (np.arange(width) + 0.5) * PIXEL_METRES
    ys = y1 - (np.arange(height) + 0.5) * PIXEL_METRES
    folder = root / "cogs" / scene.product_id
    folder.mkdir(parents=True, exist_ok=True)
    assets: dict[str, Any] = {}
    for pol in scene.polarisations:
        db = np.full((height, width), np.nan)
        for grid, values in scene.areas:
            db = np.where(np.isnan(db), _cell_values(grid, values[pol], xs, ys), db)
        data = np.where(np.isnan(db), NODATA, 10 ** (db / 10) if scale == "linear" else db)
        path = folder / f"{pol.lower()}.tif"
        with rasterio.open(path, "w", driver="COG", width=width, height=height, count=1,
                           dtype="float32", crs=f"EPSG:{epsg}", transform=transform,
                           nodata=NODATA) as dataset:
            dataset.write(data.astype(np.float32), 1)
        assets[pol.lower()] = {"href": f"{base_url}/cogs/{scene.product_id}/{path.name}",
                               "type": "image/tiff; application=geotiff; "
                                       "profile=cloud-optimized", "roles": ["data"]}
    lon0, lat0, lon1, lat1 = transform_bounds(f"EPSG:{epsg}", "EPSG:4326",
                                                            x0, y0, x1, y1)
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Feature", "stac_version": "1.0.0", "id": scene.product_id,
            "collection": "sentinel-1-rtc",
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "bbox": [lon0, lat0, lon1, lat1],
            "properties": {"datetime": scene.acquired_at.isoformat().replace("+00:00", "Z"),
                           "sar:polarizations": list(scene.polarisations),
                           "sat:relative_orbit": scene.relative_orbit,
                           "sat:orbit_state": "ascending", "proj:epsg": epsg,
                           **scene.properties},
            "assets": assets, "links": []}


def _cell_values(grid: CellGrid, cell_db: np.ndarray, xs: np.ndarray, ys: np.ndarray
                 ) -> np.ndarray:
    rows = np.floor((grid.y1 - ys) / grid.size).astype(np.int64)[:, None]
    cols = np.floor((xs - grid.x0) / grid.size).astype(np.int64)[None, :]
    h, w = grid.inside.shape
    on = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    position = np.full(grid.inside.shape, -1, np.int64)
    position[grid.inside] = np.arange(grid.count)
    cell = np.where(on, position[np.clip(rows, 0, h - 1), np.clip(cols, 0, w - 1)], -1)
    return np.where(cell >= 0, cell_db[np.maximum(cell, 0)], np.nan)
