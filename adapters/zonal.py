"""Per-parcel band statistics on a raster grid: which pixels belong to which parcel, then means.

The pixel rule (docs/sentinel2.md): a pixel belongs to a parcel when its centre lies inside the
parcel (GDAL's rasterisation rule, the one rasterstats uses by default). A parcel that holds
fewer than ``min_pixels`` pixel centres at a grid's resolution takes every pixel it touches
instead, so that small parcels still get a value on the 20 m and 60 m bands.

Membership is computed once per grid as (parcel, pixel) pairs by rasterising all parcels
together, in as many layers as overlapping parcels need; every band on that grid then reduces
to one ``np.bincount``. No Python loop runs over parcels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio import features

MIN_PIXELS = 3  # below this many pixel centres, a parcel is measured all-touched


@dataclass(frozen=True)
class Membership:
    """Which pixels of a grid each parcel covers.

    parcel: [m] parcel index (into the geometries given) of each pair; pixel: [m] flat index
    into the grid (row * width + col); n_parcels: how many parcels were given.
    """

    parcel: np.ndarray
    pixel: np.ndarray
    n_parcels: int

    def counts(self, weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(self.parcel, weights=weights, minlength=self.n_parcels)

    def means(self, grid: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(per-parcel mean of ``grid`` over its valid pixels, valid pixel count); NaN where a
        parcel has no valid pixel. ``grid`` and ``valid`` have the grid's shape."""
        ok = valid.ravel()[self.pixel]
        values = grid.ravel()[self.pixel].astype(np.float64)
        n = self.counts(ok.astype(np.float64))
        total = self.counts(np.where(ok, values, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / n, n


def _layers(geometries: np.ndarray) -> list[np.ndarray]:
    """Split parcel indices into layers whose members' interiors do not overlap (greedy
    colouring), so that one label raster per layer assigns every pixel to at most one parcel."""
    tree = shapely.STRtree(geometries)
    left, right = tree.query(geometries, predicate="intersects")
    pairs = left < right
    left, right = left[pairs], right[pairs]
    if len(left):  # touching neighbours share an edge, not a pixel centre: only overlaps count
        overlap = shapely.relate_pattern(geometries[left], geometries[right], "T********")
        left, right = left[overlap], right[overlap]
    if not len(left):
        return [np.arange(len(geometries))]
    layer = np.zeros(len(geometries), np.int64)
    neighbours: dict[int, list[int]] = {}
    for a, b in zip(left.tolist(), right.tolist(), strict=True):
        neighbours.setdefault(b, []).append(a)
    for i in sorted(neighbours):
        taken = {int(layer[j]) for j in neighbours[i]}
        layer[i] = next(k for k in range(len(taken) + 1) if k not in taken)
    return [np.flatnonzero(layer == k) for k in range(int(layer.max()) + 1)]


def _rasterize(geometries: np.ndarray, index: np.ndarray, transform: Affine,
               shape: tuple[int, int], all_touched: bool) -> tuple[np.ndarray, np.ndarray]:
    """(parcel index, flat pixel) pairs of the parcels ``index`` (which must not overlap)."""
    labels = features.rasterize(
        zip(geometries[index], range(1, len(index) + 1), strict=True), out_shape=shape,
        transform=transform, fill=0, all_touched=all_touched, dtype="int32")
    pixel = np.flatnonzero(labels)
    return index[labels.ravel()[pixel] - 1], pixel


def membership(geometries: np.ndarray, transform: Affine, shape: tuple[int, int],
               min_pixels: int = MIN_PIXELS) -> Membership:
    """Pixel membership of ``geometries`` (shapely, in the grid's CRS) on a grid of ``shape``
    whose upper-left pixel is placed by ``transform``."""
    n = len(geometries)
    pairs = [_rasterize(geometries, layer, transform, shape, False)
             for layer in _layers(geometries)]
    parcel = np.concatenate([p for p, _ in pairs]) if pairs else np.zeros(0, np.int64)
    pixel = np.concatenate([q for _, q in pairs]) if pairs else np.zeros(0, np.int64)
    small = np.flatnonzero(np.bincount(parcel, minlength=n) < min_pixels)
    if len(small):
        keep = ~np.isin(parcel, small)
        parcel, pixel = [parcel[keep]], [pixel[keep]]
        for layer in _layers(geometries[small]):
            p, q = _rasterize(geometries, small[layer], transform, shape, True)
            parcel.append(p)
            pixel.append(q)
        parcel, pixel = np.concatenate(parcel), np.concatenate(pixel)
    order = np.argsort(parcel, kind="stable")
    return Membership(parcel[order].astype(np.int64), pixel[order].astype(np.int64), n)
