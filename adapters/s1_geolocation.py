"""Sentinel-1 GRD geolocation from the product annotation, and per-cell means of a window.

GRD measurement rasters are in radar geometry (lines × pixels) with no map transform. The
annotation's ``geolocationGrid`` gives latitude, longitude and incidence angle on a regular grid
of lines and pixels (about 10 × 21 points per scene): between them they are interpolated
bilinearly (what SNAP and GDAL's GCP transformer do at this density). The reverse, map → image,
is only needed to choose the window of lines and pixels that covers an area, and is
interpolated linearly over the same points.

``cell_means`` then averages a window of linear backscatter into the cells of an area: each
pixel falls into the cell that holds its centre, so nothing is resampled twice.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from eowatch.cells import CellGrid
from eowatch.errors import EowatchError
from eowatch.geometry import transformer

if TYPE_CHECKING:
    from scipy.interpolate import LinearNDInterpolator


class GeolocationError(EowatchError, ValueError):
    """An annotation whose geolocation grid cannot be used."""


@dataclass(frozen=True)
class Geolocation:
    lines: np.ndarray        # [l] grid lines, ascending
    pixels: np.ndarray       # [p] grid pixels, ascending
    lat: np.ndarray          # [l, p]
    lon: np.ndarray          # [l, p]
    incidence: np.ndarray    # [l, p] degrees
    shape: tuple[int, int]   # lines, pixels of the image
    pass_direction: str      # Ascending or Descending

    @classmethod
    def from_xml(cls, text: str | bytes) -> Geolocation:
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise GeolocationError(f"annotation: not XML ({exc})") from None
        points = root.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
        if len(points) < 4:
            raise GeolocationError("annotation has no geolocation grid")
        rows = np.array([[float(p.findtext(tag, "nan")) for tag in
                          ("line", "pixel", "latitude", "longitude", "incidenceAngle")]
                         for p in points])
        lines, pixels = np.unique(rows[:, 0]), np.unique(rows[:, 1])
        if len(lines) * len(pixels) != len(rows):
            raise GeolocationError(f"geolocation grid of {len(rows)} points is not regular "
                                   f"({len(lines)} lines × {len(pixels)} pixels)")
        order = np.lexsort((rows[:, 1], rows[:, 0]))
        grid = rows[order].reshape(len(lines), len(pixels), 5)
        shape = (int(root.findtext("imageAnnotation/imageInformation/numberOfLines", "0")),
                 int(root.findtext("imageAnnotation/imageInformation/numberOfSamples", "0")))
        return cls(lines, pixels, grid[..., 2], grid[..., 3], grid[..., 4], shape,
                   root.findtext("generalAnnotation/productInformation/pass", ""))

    @classmethod
    def from_safe(cls, safe: Path, polarisation: str) -> Geolocation:
        found = sorted((safe / "annotation").glob(f"*-{polarisation.lower()}-*.xml"))
        if not found:
            raise GeolocationError(f"{safe.name}: no annotation for {polarisation.upper()}")
        return cls.from_xml(found[0].read_bytes())

    # scipy is imported where it is used: the feed registry imports every adapter module at
    # start-up, and this one is only needed once a Sentinel-1 scene is read
    def _at(self, values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        from scipy.interpolate import RegularGridInterpolator

        interpolate = RegularGridInterpolator((self.lines, self.pixels), values,
                                              bounds_error=False, fill_value=None)
        return interpolate(np.column_stack([np.ravel(rows), np.ravel(cols)])).reshape(
            np.shape(rows))

    def lonlat(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude of image positions (line, pixel; centres at +0.5)."""
        return self._at(self.lon, rows, cols), self._at(self.lat, rows, cols)

    def incidence_at(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self._at(self.incidence, rows, cols)

    @cached_property
    def _to_image(self) -> LinearNDInterpolator:
        """lon, lat -> line, pixel over the grid's points, triangulated once per scene (a scene
        covers many areas)."""
        from scipy.interpolate import LinearNDInterpolator

        lines, pixels = np.meshgrid(self.lines, self.pixels, indexing="ij")
        return LinearNDInterpolator(np.column_stack([self.lon.ravel(), self.lat.ravel()]),
                                    np.column_stack([lines.ravel(), pixels.ravel()]))

    def window_of(self, bounds: tuple[float, float, float, float], margin: int = 20
                  ) -> tuple[int, int, int, int] | None:
        """(row0, col0, height, width) of the image window that covers a lon/lat box, or None
        when the box lies outside the scene. ``margin``: pixels added on every side, for the
        error of interpolating map -> image linearly over the coarse grid (up to about ten
        pixels between its points; 4 left cells along a 5 km area's edge without a pixel)."""
        minx, miny, maxx, maxy = bounds
        xs, ys = np.meshgrid(np.linspace(minx, maxx, 5), np.linspace(miny, maxy, 5))
        image = self._to_image(np.column_stack([xs.ravel(), ys.ravel()]))
        inside = np.isfinite(image).all(axis=1)
        if not inside.any():
            return None
        r0, c0 = np.floor(image[inside].min(axis=0)).astype(int) - margin
        r1, c1 = np.ceil(image[inside].max(axis=0)).astype(int) + margin
        r0, c0 = max(r0, 0), max(c0, 0)
        r1, c1 = min(r1, self.shape[0]), min(c1, self.shape[1])
        return (int(r0), int(c0), int(r1 - r0), int(c1 - c0)) if r1 > r0 and c1 > c0 else None


@dataclass(frozen=True)
class CellMeans:
    """Per-cell statistics of one window: only cells with at least one pixel."""

    index: np.ndarray        # [n] positions in grid.cells() order
    power: np.ndarray        # [n] (or [n, k] for k rasters) mean of the valid pixels
    valid_fraction: np.ndarray  # [n] valid pixels / pixels
    incidence: np.ndarray    # [n] mean incidence angle, degrees (NaN where not known)


def bin_to_cells(x: np.ndarray, y: np.ndarray, power: np.ndarray, valid: np.ndarray,
                 grid: CellGrid, incidence: np.ndarray | None = None) -> CellMeans:
    """Average pixels into ``grid``'s cells, each pixel going to the cell that holds its centre
    (``x``, ``y``: pixel centres in the grid's CRS). ``power``: [h, w] or [k, h, w] linear
    values; ``valid``: [h, w] usable pixels (in every raster)."""
    stack = power[None] if power.ndim == 2 else power
    cell_row = np.floor((grid.y1 - y) / grid.size).astype(np.int64)
    cell_col = np.floor((x - grid.x0) / grid.size).astype(np.int64)
    height, width = grid.inside.shape
    on_grid = (cell_row >= 0) & (cell_row < height) & (cell_col >= 0) & (cell_col < width)
    position = np.full(grid.inside.shape, -1, np.int64)
    position[grid.inside] = np.arange(grid.count)  # cells() order: row by row
    cell = np.where(on_grid, position[np.clip(cell_row, 0, height - 1),
                                      np.clip(cell_col, 0, width - 1)], -1).ravel()
    keep = cell >= 0
    cell, ok = cell[keep], valid.ravel()[keep]
    pixels = np.bincount(cell, minlength=grid.count)
    good = np.bincount(cell, weights=ok, minlength=grid.count)
    seen = np.flatnonzero(pixels > 0)
    totals = np.stack([np.bincount(cell, weights=np.where(ok, band.ravel()[keep], 0.0),
                                   minlength=grid.count)[seen] for band in stack], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(good[seen, None] > 0, totals / good[seen, None], np.nan)
    angle = (np.full(len(seen), np.nan) if incidence is None else
             np.bincount(cell, weights=incidence.ravel()[keep], minlength=grid.count)[seen]
             / pixels[seen])
    return CellMeans(seen, mean[:, 0] if power.ndim == 2 else mean,
                     (good[seen] / pixels[seen]).astype(np.float32), angle)


def cell_means(power: np.ndarray, valid: np.ndarray, row0: int, col0: int,
               geolocation: Geolocation, grid: CellGrid) -> CellMeans:
    """Average a window of linear backscatter in radar geometry (``power``: [h, w] or
    [k, h, w]; ``valid``: usable pixels) into ``grid``'s cells, each pixel going to the cell
    that holds its centre."""
    rows, cols = np.mgrid[row0:row0 + power.shape[-2], col0:col0 + power.shape[-1]]
    lon, lat = geolocation.lonlat(rows + 0.5, cols + 0.5)
    x, y = transformer(4326, grid.epsg).transform(lon, lat)
    return bin_to_cells(x, y, power, valid, grid,
                        geolocation.incidence_at(rows + 0.5, cols + 0.5))
