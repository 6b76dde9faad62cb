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

from .pixels import clear_means, projected
from .s1_geolocation import CellMeans, bin_to_cells

# count rate -> reflectance, per band (EPIC L1B calibration, as the fixtures' README lists)
FACTORS = {"Band317nm": 1.216e-4, "Band325nm": 1.111e-4, "Band340nm": 1.975e-5,
           "Band388nm": 2.685e-5, "Band443nm": 8.34e-6, "Band551nm": 6.66e-6,
           "Band680nm": 9.3e-6, "Band688nm": 2.02e-5, "Band764nm": 2.36e-5,
           "Band780nm": 1.435e-5}
IN_VIEW_DEGREES = 65.0   # farther from the disk's centre, pixels are too oblique to use
# the bands the feed reads: green and NIR make its water index (EPIC has no SWIR band), red
# its cloud test
GREEN, RED, NIR = "Band551nm", "Band680nm", "Band780nm"
# L1B carries no cloud mask: a pixel brighter than this at 680 nm is taken for cloud (water
# and vegetation reflect under 0.1 in red, bare soils 0.1-0.25, clouds and snow more)
CLOUD_RED = 0.25


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
    def id(self) -> str:
        return self.identifier

    @property
    def datetime(self) -> datetime:
        return self.taken_at

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


@dataclass(frozen=True)
class Window:
    """The pixels of an L1B product over an area: rows and columns, their geolocation."""

    rows: slice
    cols: slice
    lon: np.ndarray
    lat: np.ndarray


def area_window(handle: Any, band: str, grid: CellGrid) -> Window | None:
    """The rows and columns whose geolocation (read every 16th pixel) falls near ``grid``'s
    area, with the geolocation of that window; None when no pixel of the image does."""
    try:
        group = handle[band]
        image = group["Image"]
        lat_ds, lon_ds = group["Geolocation/Earth/Latitude"], group["Geolocation/Earth/Longitude"]
    except KeyError as exc:
        raise EpicError(f"not an EPIC L1B product: no {exc}") from None
    rows_n, cols_n = grid.inside.shape
    lon0, lat0, lon1, lat1 = transformer(grid.epsg, 4326).transform_bounds(
        grid.x0, grid.y1 - rows_n * grid.size, grid.x0 + cols_n * grid.size, grid.y1)
    step = 16
    lat_s, lon_s = lat_ds[::step, ::step], lon_ds[::step, ::step]
    near = ((lat_s >= lat0 - 1) & (lat_s <= lat1 + 1) & (lon_s >= lon0 - 1)
            & (lon_s <= lon1 + 1))
    if not near.any():
        return None
    rows, cols = np.nonzero(near)
    r = slice(max(0, (rows.min() - 1) * step), min(image.shape[0], (rows.max() + 2) * step))
    c = slice(max(0, (cols.min() - 1) * step), min(image.shape[1], (cols.max() + 2) * step))
    return Window(r, c, lon_ds[r, c].astype(np.float64), lat_ds[r, c].astype(np.float64))


def reflectance(handle: Any, band: str, window: Window) -> np.ndarray:
    """Reflectance of ``band`` over ``window`` (count rate × the band's factor); NaN where
    there is no signal."""
    if band not in FACTORS:
        raise EpicError(f"{band!r} is no EPIC band; the bands are {', '.join(FACTORS)}")
    try:
        counts = handle[f"{band}/Image"][window.rows, window.cols].astype(np.float64)
    except KeyError as exc:
        raise EpicError(f"not an EPIC L1B product: no {exc}") from None
    return np.where(np.isfinite(counts) & (counts > 0), counts * FACTORS[band], np.nan)


def cell_means(handle: Any, band: str, grid: CellGrid) -> CellMeans | None:
    """Reflectance of ``band`` averaged into ``grid``'s cells (each pixel into the cell holding
    its centre); None when no pixel of the image falls on the area."""
    if band not in FACTORS:
        raise EpicError(f"{band!r} is no EPIC band; the bands are {', '.join(FACTORS)}")
    window = area_window(handle, band, grid)
    if window is None:
        return None
    values = reflectance(handle, band, window)
    x, y, on_earth = projected(window.lon, window.lat, grid.epsg)
    means = bin_to_cells(x, y, np.nan_to_num(values), on_earth & np.isfinite(values), grid)
    return means if len(means.index) else None


def area_cells(handle: Any, grid: CellGrid) -> dict[str, np.ndarray] | None:
    """Over ``grid``'s cells (arrays in cells() order, NaN where a cell has no pixel): green,
    red and NIR reflectance of the clear pixels (CLOUD_RED test), the clear share and the
    valid share of the pixels; None when the area is not on the image."""
    window = area_window(handle, RED, grid)   # the bands share one geolocation grid
    if window is None:
        return None
    bands = {b: reflectance(handle, b, window) for b in (GREEN, RED, NIR)}
    x, y, on_earth = projected(window.lon, window.lat, grid.epsg)
    valid = on_earth & np.all([np.isfinite(v) for v in bands.values()], axis=0)
    return clear_means(x, y, {"green": bands[GREEN], "red": bands[RED], "nir": bands[NIR]},
                       valid & (bands[RED] <= CLOUD_RED), valid, on_earth, grid)
