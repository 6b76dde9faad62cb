"""MTG FCI L1C (FDHSI) body chunks: the fixed grid, effective radiance to reflectance factor,
windows over areas. The reading half of the Meteosat feed.

A repeat cycle's full disc comes in 40 body chunks, each a band of rows holding every channel
(FCI L1 PUG, EUM/MTG/USR/13/719113): per channel ``data/<channel>/measured/effective_radiance``
(uint16 counts with ``scale_factor``, ``add_offset``, ``valid_range``), its ``x`` and ``y`` scan
angles (radians, packed; x positive towards the west, y towards the north, row 0 the
southernmost of the chunk), ``start_position_row`` and ``end_position_row`` in the full disc,
``pixel_quality`` and ``channel_effective_solar_irradiance``; ``data/mtg_geos_projection`` holds
the projection and ``state/celestial/earth_sun_distance`` the Earth-Sun distance in km.
Reflectance factor = π · L · d² / E_sun with d in AU. h5py reads the windows (satpy's
``fci_l1c_nc`` reader resamples whole segments through xarray and dask: docs/feeds.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from eowatch.cells import CellGrid
from eowatch.errors import EowatchError
from eowatch.geometry import transformer

from .pixels import clear_means, projected

AU_KM = 149597870.7
CHANNELS = {"red": "vis_06", "nir": "nir_08", "swir": "nir_16"}
CHUNKS = 40                 # body chunks of a full disc
CLOUD_RED = 0.3             # L1C has no cloud mask: a pixel brighter than this at 0.64 µm is
                            # taken for cloud (clear land and water reflect under 0.25 there)


class FciError(EowatchError, ValueError):
    """A chunk that cannot be used as FCI L1C."""


def _scalar(value: Any) -> float:
    return float(np.asarray(value).ravel()[0])


def _unpacked(variable: Any, values: np.ndarray) -> np.ndarray:
    return (values.astype(np.float64) * _scalar(variable.attrs.get("scale_factor", 1.0))
            + _scalar(variable.attrs.get("add_offset", 0.0)))


@dataclass
class Chunk:
    """One open body chunk: its rows of the full disc and its projection."""

    handle: Any
    proj4: str
    height_m: float
    first_row: int          # start_position_row (1-based, counted from the south)
    last_row: int

    @classmethod
    def of(cls, handle: Any) -> Chunk:
        try:
            projection = handle["data/mtg_geos_projection"]
            measured = handle[f"data/{CHANNELS['red']}/measured"]
            first = int(_scalar(measured["start_position_row"][()]))
            last = int(_scalar(measured["end_position_row"][()]))
            attrs = {k: projection.attrs[k] for k in (
                "perspective_point_height", "longitude_of_projection_origin",
                "semi_major_axis", "inverse_flattening", "sweep_angle_axis")}
        except (KeyError, OSError, IndexError) as exc:
            raise FciError(f"not an FCI L1C body chunk ({exc})") from None
        sweep = attrs["sweep_angle_axis"]
        sweep = sweep.decode() if isinstance(sweep, bytes) else str(sweep)
        h = _scalar(attrs["perspective_point_height"])
        proj4 = (f"+proj=geos +h={h} +lon_0={_scalar(attrs['longitude_of_projection_origin'])} "
                 f"+a={_scalar(attrs['semi_major_axis'])} "
                 f"+rf={_scalar(attrs['inverse_flattening'])} +sweep={sweep} +units=m +no_defs")
        return cls(handle, proj4, h, first, last)

    def angles(self, channel: str) -> tuple[np.ndarray, np.ndarray]:
        measured = self.handle[f"data/{channel}/measured"]
        x, y = measured["x"], measured["y"]
        return _unpacked(x, x[...]), _unpacked(y, y[...])

    def window_of(self, channel: str, lon: np.ndarray, lat: np.ndarray, margin: int = 2
                  ) -> tuple[slice, slice] | None:
        """(rows, cols) of this chunk covering the points, or None when none is in it."""
        x_angle, y_angle = self.angles(channel)
        px, py = transformer("EPSG:4326", self.proj4).transform(lon, lat)
        px, py = np.asarray(px, float), np.asarray(py, float)
        seen = np.isfinite(px) & np.isfinite(py) & (np.abs(px) < 1e20)
        if not seen.any():
            return None
        # proj's x is positive towards the east: FCI's azimuth angle is its opposite
        ax, ay = -px[seen] / self.height_m, py[seen] / self.height_m
        cols = np.interp(ax, x_angle[::-1], np.arange(len(x_angle))[::-1]) \
            if x_angle[0] > x_angle[-1] else np.interp(ax, x_angle, np.arange(len(x_angle)))
        step = (y_angle[-1] - y_angle[0]) / max(1, len(y_angle) - 1)
        rows = (ay - y_angle[0]) / step
        inside = (rows >= -margin) & (rows <= len(y_angle) - 1 + margin)
        if not inside.any():
            return None
        r0 = max(int(np.floor(rows[inside].min())) - margin, 0)
        r1 = min(int(np.ceil(rows[inside].max())) + margin + 1, len(y_angle))
        c0 = max(int(np.floor(cols[inside].min())) - margin, 0)
        c1 = min(int(np.ceil(cols[inside].max())) + margin + 1, len(x_angle))
        return (slice(r0, r1), slice(c0, c1)) if r1 > r0 and c1 > c0 else None

    def reflectance(self, channel: str, rows: slice, cols: slice
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(reflectance factor, valid) of a window: fill, out of ``valid_range`` and a pixel
        quality other than 0 (good) are not valid."""
        measured = self.handle[f"data/{channel}/measured"]
        radiance = measured["effective_radiance"]
        counts = radiance[rows, cols]
        low, high = np.asarray(radiance.attrs.get("valid_range", [0, 4095])).ravel()[:2]
        valid = (counts >= low) & (counts <= high)
        if "pixel_quality" in measured:
            valid &= measured["pixel_quality"][rows, cols] == 0
        irradiance = _scalar(measured["channel_effective_solar_irradiance"][()])
        distance = float(np.nanmean(self.handle["state/celestial/earth_sun_distance"][...]))
        factor = np.pi * (distance / AU_KM) ** 2 / irradiance
        return _unpacked(radiance, counts) * factor, valid

    def lonlat(self, channel: str, rows: slice, cols: slice) -> tuple[np.ndarray, np.ndarray]:
        x_angle, y_angle = self.angles(channel)
        ax, ay = np.meshgrid(x_angle[cols], y_angle[rows])
        lon, lat = transformer(self.proj4, "EPSG:4326").transform(
            -ax * self.height_m, ay * self.height_m)
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        off = ~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lon) > 360)
        return np.where(off, np.nan, lon), np.where(off, np.nan, lat)


def chunk_cells(chunk: Chunk, grid: CellGrid, lon: np.ndarray, lat: np.ndarray
                ) -> dict[str, np.ndarray] | None:
    """Over ``grid``'s cells (``lon``, ``lat``: their centres; arrays in cells() order, NaN
    where a cell has no pixel in this chunk): red, NIR and SWIR reflectance of the clear pixels
    (the CLOUD_RED test), the clear share and the valid share; None when the area is not in
    this chunk. Each channel is read on its own grid (FDHSI: all three at 1 km)."""
    reach = grid.size / 111_000.0          # half a cell and more, in degrees
    corners_lon = np.concatenate([lon - reach, lon + reach])
    corners_lat = np.concatenate([lat - reach, lat + reach])
    window = chunk.window_of(CHANNELS["red"], corners_lon, corners_lat)
    if window is None:
        return None
    read = {name: chunk.reflectance(channel, *window) for name, channel in CHANNELS.items()}
    x, y, on_earth = projected(*chunk.lonlat(CHANNELS["red"], *window), grid.epsg)
    valid = on_earth & np.all([v for _, v in read.values()], axis=0)
    return clear_means(x, y, {name: read[name][0] for name in CHANNELS},
                       valid & (read["red"][0] <= CLOUD_RED), valid, on_earth, grid)


def chunk_number(lat: float, lon: float, lon_0: float = 0.0) -> int:
    """The body chunk (1-40, from the south) of the nominal FDHSI full disc that holds a point:
    a first guess; the feed checks the rows the chunk says it holds."""
    h, a = 35786400.0, 6378137.0
    proj4 = f"+proj=geos +h={h} +lon_0={lon_0} +a={a} +rf=298.257223563 +sweep=y +units=m"
    _, y = transformer("EPSG:4326", proj4).transform(lon, lat)
    extent = 5567999.994    # half the nominal 1 km full disc, metres at the sub-satellite point
    fraction = (float(y) + extent) / (2 * extent)
    return int(min(CHUNKS, max(1, np.floor(fraction * CHUNKS) + 1)))
