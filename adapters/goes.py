"""GOES-R ABI L1b: the fixed grid, radiance to reflectance, windows over areas, and the NOAA
bucket listing. The reading half of the GOES feed.

ABI L1b files are netCDF-4 (HDF5) with the image chunked: ``h5py`` reads only the chunks a window
needs, from a local path or, over HTTP, through ``fsspec``'s range-request file (the NOAA
buckets are public S3 over HTTPS). satpy's ``abi_l1b`` reader would load whole bands through
xarray and dask to resample them; per-cell means of a few windows need neither, so h5py reads
the variables as the product defines them (docs/feeds.md).

- ``Rad = scale_factor × DN + add_offset`` (DN unsigned 12-bit, fill 4095); reflectance factor of
  bands 1-6 = ``kappa0 × Rad``.
- Fixed grid: ``x`` and ``y`` are scan angles in radians; projection metres = angle ×
  ``perspective_point_height`` in ``+proj=geos +sweep=x``.
"""

from __future__ import annotations

import re
import urllib.parse
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import shapely

from eowatch.cells import CellGrid
from eowatch.errors import EowatchError
from eowatch.geometry import reproject, transformer

from .hdf5 import open_hdf5
from .pixels import projected
from .s1_geolocation import CellMeans, bin_to_cells

FILL_DN = 4095
REFLECTIVE_BANDS = range(1, 7)       # bands with a kappa0: reflectance factor = kappa0 × Rad
KEY = re.compile(r"OR_ABI-L1b-(?P<product>Rad[CFM]\d?)-M(?P<mode>\d)C(?P<band>\d\d)_"
                 r"(?P<satellite>G\d\d)_s(?P<start>\d{13})\d?_e\d+_c\d+\.nc$")
# the L2 clear-sky mask of the same scan: ABI-L2-ACMC (CONUS), ACMF (full disk)
MASK_KEY = re.compile(r"OR_ABI-L2-ACM(?P<region>[CFM]\d?)-M(?P<mode>\d)_"
                      r"(?P<satellite>G\d\d)_s(?P<start>\d{13})\d?_e\d+_c\d+\.nc$")
MASK_BAND = 0          # Listed.band of a clear-sky mask file


class GoesError(EowatchError, ValueError):
    """A file or listing that cannot be used as ABI L1b."""


@dataclass(frozen=True)
class FixedGrid:
    """The ABI fixed grid of one file: scan angle of each column and row, and the projection."""

    x_scale: float
    x_offset: float
    y_scale: float
    y_offset: float
    width: int
    height: int
    height_m: float            # perspective_point_height
    lon_0: float
    semi_major: float
    semi_minor: float
    sweep: str

    @property
    def proj4(self) -> str:
        return (f"+proj=geos +h={self.height_m} +lon_0={self.lon_0} +a={self.semi_major} "
                f"+b={self.semi_minor} +sweep={self.sweep} +units=m +no_defs")

    def lonlat(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of pixel centres; NaN off the Earth's disk."""
        x = (self.x_scale * cols + self.x_offset) * self.height_m
        y = (self.y_scale * rows + self.y_offset) * self.height_m
        lon, lat = transformer(self.proj4, "EPSG:4326").transform(x, y)
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        off_disk = ~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lon) > 360)
        return np.where(off_disk, np.nan, lon), np.where(off_disk, np.nan, lat)

    def window_of(self, bounds: tuple[float, float, float, float], margin: int = 2
                  ) -> tuple[int, int, int, int] | None:
        """(row0, col0, height, width) covering a lon/lat box, or None when it is off the
        image (or off the disk)."""
        minx, miny, maxx, maxy = bounds
        lons, lats = np.meshgrid(np.linspace(minx, maxx, 9), np.linspace(miny, maxy, 9))
        x, y = transformer("EPSG:4326", self.proj4).transform(lons, lats)
        x, y = np.asarray(x, float), np.asarray(y, float)
        seen = np.isfinite(x) & np.isfinite(y) & (np.abs(x) < 1e20)
        if not seen.any():
            return None
        cols = (x[seen] / self.height_m - self.x_offset) / self.x_scale
        rows = (y[seen] / self.height_m - self.y_offset) / self.y_scale
        r0 = max(int(np.floor(rows.min())) - margin, 0)
        c0 = max(int(np.floor(cols.min())) - margin, 0)
        r1 = min(int(np.ceil(rows.max())) + margin + 1, self.height)
        c1 = min(int(np.ceil(cols.max())) + margin + 1, self.width)
        return (r0, c0, r1 - r0, c1 - c0) if r1 > r0 and c1 > c0 else None


def _attr(variable: Any, name: str) -> Any:
    value = variable.attrs.get(name)
    if value is None:
        raise GoesError(f"{variable.name} has no {name} attribute")
    value = np.asarray(value).ravel()
    return value[0].item() if value.size == 1 else value


@dataclass
class Band:
    """One open ABI L1b file: its band, time, grid and the calibration to reflectance."""

    band: int
    start: datetime
    grid: FixedGrid
    scale: float
    offset: float
    kappa0: float | None
    handle: Any                # the open h5py.File

    def reflectance(self, row0: int, col0: int, height: int, width: int
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(reflectance factor, valid) of a window: fill and DQF no-value or out-of-range are
        not valid."""
        if self.kappa0 is None:
            raise GoesError(f"band {self.band} is emissive: it has no reflectance factor")
        window = (slice(row0, row0 + height), slice(col0, col0 + width))
        dn = self.handle["Rad"][window].view(np.uint16)   # _Unsigned = "true"
        dqf = self.handle["DQF"][window].view(np.uint8)
        valid = (dn != FILL_DN) & (dqf <= 1)
        return self.kappa0 * (self.scale * dn.astype(np.float64) + self.offset), valid


def read_band(handle: Any) -> Band:
    """The band, time, fixed grid and calibration of an open ABI L1b file."""
    try:
        rad, x, y = handle["Rad"], handle["x"], handle["y"]
        projection = handle["goes_imager_projection"]
        band = int(np.asarray(handle["band_id"][()]).ravel()[0])
        seconds = float(np.asarray(handle["t"][()]).ravel()[0])
    except (KeyError, OSError, IndexError, TypeError) as exc:
        raise GoesError(f"not an ABI L1b file ({exc})") from None
    kappa0 = None
    if band in REFLECTIVE_BANDS and "kappa0" in handle:
        kappa0 = float(np.asarray(handle["kappa0"][()]).ravel()[0])
    grid = _fixed_grid(x, y, projection)
    start = datetime(2000, 1, 1, 12, tzinfo=UTC) + timedelta(seconds=seconds)
    return Band(band, start, grid, float(_attr(rad, "scale_factor")),
                float(_attr(rad, "add_offset")), kappa0, handle)


def _fixed_grid(x: Any, y: Any, projection: Any) -> FixedGrid:
    return FixedGrid(float(_attr(x, "scale_factor")), float(_attr(x, "add_offset")),
                     float(_attr(y, "scale_factor")), float(_attr(y, "add_offset")),
                     int(x.shape[0]), int(y.shape[0]),
                     float(_attr(projection, "perspective_point_height")),
                     float(_attr(projection, "longitude_of_projection_origin")),
                     float(_attr(projection, "semi_major_axis")),
                     float(_attr(projection, "semi_minor_axis")),
                     _decode(_attr(projection, "sweep_angle_axis")))


def _decode(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextmanager
def open_band(href: str, block_size: int = 1 << 20) -> Iterator[Band]:
    """An ABI L1b file, local or over HTTP(S)."""
    with open_hdf5(href, block_size, GoesError) as handle:
        yield read_band(handle)


@contextmanager
def open_mask(href: str, block_size: int = 1 << 20) -> Iterator[CloudMask]:
    """An ABI L2 clear-sky mask (ACM) file, local or over HTTP(S)."""
    with open_hdf5(href, block_size, GoesError) as handle:
        yield read_mask(handle)


@dataclass(frozen=True)
class Listed:
    key: str
    band: int
    product: str
    satellite: str
    start: datetime


def parse_key(key: str) -> Listed | None:
    """A bucket key's product, band, satellite and scan start; None for other files. A
    clear-sky mask (L2 ACM) is listed as band MASK_BAND of its region's Rad product."""
    found = KEY.search(key)
    if found:
        band, product = int(found["band"]), found["product"]
    else:
        found = MASK_KEY.search(key)
        if not found:
            return None
        band, product = MASK_BAND, "Rad" + found["region"]
    start = datetime.strptime(found["start"], "%Y%j%H%M%S").replace(tzinfo=UTC)
    return Listed(key, band, product, found["satellite"], start)


def list_bucket(get: Any, bucket_url: str, prefix: str, page_size: int = 1000
                ) -> Iterator[str]:
    """Every key under ``prefix`` (S3 ListObjectsV2, anonymous, over HTTPS), page by page
    (``continuation-token``). ``get(url) -> bytes`` fetches a page."""
    token: str | None = None
    namespace = "{http://s3.amazonaws.com/doc/2006-03-01/}"
    while True:
        query = {"list-type": "2", "prefix": prefix, "max-keys": str(page_size)}
        if token:
            query["continuation-token"] = token
        body = get(f"{bucket_url.rstrip('/')}/?{urllib.parse.urlencode(query)}")
        try:
            root = ET.fromstring(body)
        except ET.ParseError as exc:
            raise GoesError(f"{bucket_url}: the listing is not S3 XML ({exc})") from None
        for contents in root.iter(f"{namespace}Contents"):
            key = contents.findtext(f"{namespace}Key")
            if key:
                yield key
        if root.findtext(f"{namespace}IsTruncated") != "true":
            return
        token = root.findtext(f"{namespace}NextContinuationToken")
        if not token:
            raise GoesError(f"{bucket_url}: a truncated listing page without a continuation "
                            "token")


def hour_prefixes(product: str, since: datetime, until: datetime, level: str = "L1b"
                  ) -> Iterator[str]:
    """``ABI-L1b-RadC/YYYY/DDD/HH/`` (``level`` L2: ``ABI-L2-ACMC/...``, the clear-sky mask)
    of every hour from ``since`` to ``until``."""
    region = product.rstrip("0123456789").removeprefix("Rad")
    name = f"ABI-L1b-Rad{region}" if level == "L1b" else f"ABI-L2-ACM{region}"
    hour = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour <= until:
        yield f"{name}/{hour:%Y/%j/%H}/"
        hour += timedelta(hours=1)


@dataclass
class CloudMask:
    """An open L2 clear-sky mask (ACM): its fixed grid and the binary cloud mask ``BCM`` (0
    clear, 1 cloudy, 255 fill), which other files' pixels are looked up in by scan angle."""

    grid: FixedGrid
    handle: Any

    def clear_at(self, x_angle: np.ndarray, y_angle: np.ndarray) -> np.ndarray:
        """1.0 where the mask says clear, 0.0 cloudy, NaN where it has no value."""
        g = self.grid
        cols = np.round((x_angle - g.x_offset) / g.x_scale).astype(np.int64)
        rows = np.round((y_angle - g.y_offset) / g.y_scale).astype(np.int64)
        inside = (rows >= 0) & (rows < g.height) & (cols >= 0) & (cols < g.width)
        out = np.full(x_angle.shape, np.nan)
        if not inside.any():
            return out
        r0, r1 = rows[inside].min(), rows[inside].max() + 1
        c0, c1 = cols[inside].min(), cols[inside].max() + 1
        bcm = self.handle["BCM"][r0:r1, c0:c1].view(np.uint8)
        found = bcm[rows[inside] - r0, cols[inside] - c0]
        out[inside] = np.where(found == 0, 1.0, np.where(found == 1, 0.0, np.nan))
        return out


def read_mask(handle: Any) -> CloudMask:
    try:
        x, y, projection = handle["x"], handle["y"], handle["goes_imager_projection"]
        handle["BCM"]
    except (KeyError, OSError) as exc:
        raise GoesError(f"not an ABI L2 clear-sky mask ({exc})") from None
    return CloudMask(_fixed_grid(x, y, projection), handle)


@dataclass(frozen=True)
class BandCells:
    """One band over the cells of a grid (arrays in grid.cells() order; NaN where a cell has
    no pixel): mean reflectance of its clear valid pixels, the clear share of the pixels the
    mask has a value for (NaN without a mask), and the valid (not fill) share of its pixels."""

    reflectance: np.ndarray
    clear: np.ndarray
    valid: np.ndarray


def band_cells(band: Band, grid: CellGrid, mask: CloudMask | None) -> BandCells | None:
    """``band`` read over ``grid``'s window, each pixel to the cell holding its centre, cloudy
    pixels (by the clear-sky ``mask``) left out of the means; None when the area is off the
    image."""
    window = _area_window(band, grid)
    if window is None:
        return None
    row0, col0, height, width = window
    reflectance, valid = band.reflectance(row0, col0, height, width)
    rows, cols = np.mgrid[row0:row0 + height, col0:col0 + width].astype(float)
    g = band.grid
    clear = (np.ones(valid.shape) if mask is None else
             mask.clear_at(g.x_scale * cols + g.x_offset, g.y_scale * rows + g.y_offset))
    x, y, on_disk = projected(*band.grid.lonlat(rows, cols), grid.epsg)
    out = np.full((3, grid.count), np.nan)
    means = bin_to_cells(x, y, reflectance, valid & on_disk & (clear == 1.0), grid)
    out[0, means.index] = means.power
    known = bin_to_cells(x, y, np.nan_to_num(clear), valid & np.isfinite(clear), grid)
    if mask is not None:
        out[1, known.index] = np.where(known.valid_fraction > 0, known.power, np.nan)
    pixels = bin_to_cells(x, y, valid.astype(float), on_disk, grid)
    out[2, pixels.index] = pixels.power
    return BandCells(*out)


def _area_window(band: Band, grid: CellGrid) -> tuple[int, int, int, int] | None:
    rows_n, cols_n = grid.inside.shape
    outline = reproject(shapely.box(
        grid.x0, grid.y1 - rows_n * grid.size, grid.x0 + cols_n * grid.size, grid.y1),
        grid.epsg, 4326)
    return band.grid.window_of(outline.bounds)


def cell_means(band: Band, grid: CellGrid) -> CellMeans | None:
    """Reflectance of ``band`` averaged into the cells of ``grid`` (an area's coarse
    eowatch.cells.CellGrid), each pixel going to the cell that holds its centre: the cells
    with a pixel; None when the area is off the image."""
    cells = band_cells(band, grid, None)
    if cells is None:
        return None
    seen = np.flatnonzero(np.isfinite(cells.valid))
    return CellMeans(seen, cells.reflectance[seen], cells.valid[seen].astype(np.float32),
                     np.full(len(seen), np.nan))
