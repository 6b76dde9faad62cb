"""DSCOVR EPIC: the API's listings and the L1B HDF5 product, read for the areas in view. The
reading half of the EPIC feed.

The API lists a day's images (``api/natural/date/YYYY-MM-DD``) with an ``identifier`` (the scan
time, UTC) and the sunlit disk's centroid; an area is in view when it lies well inside that
disk. The L1B product holds, per band (``Band317nm`` ... ``Band780nm``), the image as count
rates and its geolocation (``Geolocation/Earth/Latitude``, ``Longitude``); reflectance = count
rate × the band's calibration factor. h5py reads it (the product is HDF5; satpy's
``epic_l1b_h5`` reader would bring xarray and dask for four arrays).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from eowatch.cells import CellGrid
from eowatch.errors import EowatchError
from eowatch.geometry import transformer

from .s1_geolocation import CellMeans, bin_to_cells

# count rate -> reflectance, per band (EPIC L1B calibration, as the fixtures' README lists)
FACTORS = {"Band317nm": 1.216e-4, "Band325nm": 1.111e-4, "Band340nm": 1.975e-5,
           "Band388nm": 2.685e-5, "Band443nm": 8.34e-6, "Band551nm": 6.66e-6,
           "Band680nm": 9.3e-6, "Band688nm": 2.02e-5, "Band764nm": 2.36e-5,
           "Band780nm": 1.435e-5}
IN_VIEW_DEGREES = 65.0   # farther from the disk's centre, pixels are too oblique to use


class EpicError(EowatchError, ValueError):
    """An EPIC listing or product that cannot be used."""


@dataclass(frozen=True)
class EpicImage:
    identifier: str
    image: str
    version: str
    taken_at: datetime         # from the identifier: the API's ``date`` differs from it
    centroid: tuple[float, float]   # lon, lat

    @property
    def product(self) -> str:
        """The L1B file name (``epic_1b_<identifier>_<version>.h5``)."""
        return f"{self.image}_{self.version}.h5"

    def l1b_path(self) -> str:
        return f"archive/l1b/{self.taken_at:%Y/%m/%d}/{self.product}"

    def in_view(self, lon: float, lat: float) -> bool:
        return angular_distance(self.centroid, (lon, lat)) <= IN_VIEW_DEGREES


def angular_distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle angle between two lon/lat points, degrees."""
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    cos = (math.sin(lat1) * math.sin(lat2)
           + math.cos(lat1) * math.cos(lat2) * math.cos(lon1 - lon2))
    return math.degrees(math.acos(max(-1.0, min(1.0, cos))))


def parse_listing(items: Iterable[dict[str, Any]]) -> list[EpicImage]:
    """A day's images from the API's JSON, oldest first, keyed on ``identifier``."""
    found = []
    for item in items:
        try:
            identifier = str(item["identifier"])
            taken = datetime.strptime(identifier, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            centre = item["centroid_coordinates"]
            found.append(EpicImage(identifier, str(item["image"]), str(item.get("version", "")),
                                   taken, (float(centre["lon"]), float(centre["lat"]))))
        except (KeyError, TypeError, ValueError) as exc:
            raise EpicError(f"an EPIC listing item without a usable identifier, image or "
                            f"centroid ({exc!r})") from None
    return sorted(found, key=lambda i: i.taken_at)


def parse_days(items: Iterable[dict[str, Any]]) -> list[str]:
    """The days the API has images for (``api/natural/all``), oldest first."""
    return sorted(str(item["date"]) for item in items)


def cell_means(handle: Any, band: str, grid: CellGrid) -> CellMeans | None:
    """Reflectance of ``band`` averaged into ``grid``'s cells (each pixel into the cell holding
    its centre); None when no pixel of the image falls on the area."""
    if band not in FACTORS:
        raise EpicError(f"{band!r} is no EPIC band; the bands are {', '.join(FACTORS)}")
    try:
        group = handle[band]
        image = group["Image"]
        lat_ds, lon_ds = group["Geolocation/Earth/Latitude"], group["Geolocation/Earth/Longitude"]
    except KeyError as exc:
        raise EpicError(f"not an EPIC L1B product: no {exc}") from None
    to_lonlat = transformer(grid.epsg, 4326)
    rows_n, cols_n = grid.inside.shape
    lon0, lat0, lon1, lat1 = to_lonlat.transform_bounds(
        grid.x0, grid.y1 - rows_n * grid.size, grid.x0 + cols_n * grid.size, grid.y1)
    # the window: rows and columns whose geolocation (read every 16th pixel) falls on the area
    step = 16
    lat_s, lon_s = lat_ds[::step, ::step], lon_ds[::step, ::step]
    near = ((lat_s >= lat0 - 1) & (lat_s <= lat1 + 1) & (lon_s >= lon0 - 1)
            & (lon_s <= lon1 + 1))
    if not near.any():
        return None
    rows, cols = np.nonzero(near)
    r0, r1 = max(0, (rows.min() - 1) * step), min(image.shape[0], (rows.max() + 2) * step)
    c0, c1 = max(0, (cols.min() - 1) * step), min(image.shape[1], (cols.max() + 2) * step)
    counts = image[r0:r1, c0:c1].astype(np.float64)
    lat, lon = lat_ds[r0:r1, c0:c1], lon_ds[r0:r1, c0:c1]
    on_earth = np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    valid = on_earth & np.isfinite(counts) & (counts > 0)   # no signal: not valid, but counted
    x, y = transformer(4326, grid.epsg).transform(
        np.where(on_earth, lon, 0.0), np.where(on_earth, lat, 0.0))
    x = np.where(on_earth, x, np.inf)
    means = bin_to_cells(np.asarray(x), np.asarray(y), counts * FACTORS[band], valid, grid)
    return means if len(means.index) else None
