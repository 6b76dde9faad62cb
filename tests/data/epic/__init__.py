"""EPIC L1B products in the real group layout (``Band<nm>nm/Image`` and
``Band<nm>nm/Geolocation/Earth/{Latitude,Longitude}``), with the sunlit disk drawn in an
orthographic view centred on a listing item's centroid (the API's real JSON is in
../shared/fixtures). The real images are 2048 x 2048; the kit writes ``size`` x ``size``."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pyproj

from tests.conftest import SHARED

LISTING = SHARED / "fixtures" / "epic_api_natural_date_2015-10-31.json"
DAYS = SHARED / "fixtures" / "epic_api_natural_all_sample.json"
FILL = -1.0e30   # where the view misses the Earth


def write_l1b(path: Path, centroid: tuple[float, float], counts, size: int = 512,
              bands: tuple[str, ...] = ("Band680nm", "Band780nm")) -> None:
    """An L1B file whose count rate at (lon, lat) is ``counts(lon, lat)``."""
    lon0, lat0 = centroid
    radius = 6371000.0
    rows, cols = np.mgrid[0:size, 0:size]
    u = (cols + 0.5) / size * 2 - 1
    v = 1 - (rows + 0.5) / size * 2
    disk = u ** 2 + v ** 2 < 0.98
    ortho = pyproj.Transformer.from_crs(
        f"+proj=ortho +lat_0={lat0} +lon_0={lon0} +R={radius}", "EPSG:4326", always_xy=True)
    lon, lat = ortho.transform(np.where(disk, u * radius, 0.0), np.where(disk, v * radius, 0.0))
    lon = np.where(disk, lon, FILL).astype(np.float32)
    lat = np.where(disk, lat, FILL).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        for band in bands:
            group = f.create_group(band)
            image = np.where(disk, counts(lon.astype(float), lat.astype(float)), 0.0)
            group.create_dataset("Image", data=image.astype(np.float32), chunks=(128, 128),
                                 compression="gzip")
            earth = group.create_group("Geolocation/Earth")
            earth.create_dataset("Latitude", data=lat, chunks=(128, 128), compression="gzip")
            earth.create_dataset("Longitude", data=lon, chunks=(128, 128), compression="gzip")
