"""What the weather-satellite readers share once their pixels are geolocated: the pixels in an
area's grid, and the per-cell means of the clear ones."""

from __future__ import annotations

import numpy as np

from eowatch.cells import CellGrid
from eowatch.geometry import transformer

from .s1_geolocation import bin_to_cells


def projected(lon: np.ndarray, lat: np.ndarray, epsg: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, y, on_earth) of pixel centres in ``epsg``; off the Earth (NaN or out-of-range
    lon/lat): x = +inf, so that no cell holds them."""
    on_earth = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180)
    x, y = transformer(4326, epsg).transform(np.where(on_earth, lon, 0.0),
                                             np.where(on_earth, lat, 0.0))
    return np.where(on_earth, np.asarray(x), np.inf), np.asarray(y), on_earth


def clear_means(x: np.ndarray, y: np.ndarray, bands: dict[str, np.ndarray], clear: np.ndarray,
                valid: np.ndarray, on_earth: np.ndarray, grid: CellGrid
                ) -> dict[str, np.ndarray] | None:
    """Over ``grid``'s cells (arrays in cells() order, NaN where a cell has no pixel): each
    band's mean over the clear pixels, the clear share of the valid pixels and the valid share
    of the pixels; None when no pixel falls in the grid."""
    out = {name: np.full(grid.count, np.nan) for name in (*bands, "clear", "valid")}
    means = bin_to_cells(x, y, np.nan_to_num(np.stack(list(bands.values()))), clear, grid)
    for k, name in enumerate(bands):
        out[name][means.index] = means.power[:, k]
    shares = bin_to_cells(x, y, np.stack([clear, valid]).astype(float), on_earth, grid)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["clear"][shares.index] = shares.power[:, 0] / shares.power[:, 1]
    out["valid"][shares.index] = shares.power[:, 1]
    return out if len(shares.index) else None
