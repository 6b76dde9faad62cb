"""Per-parcel band statistics on a raster grid: which pixels belong to which parcel, then means.

The pixel rule (docs/sentinel2.md): a pixel belongs to a parcel when its centre lies inside the
parcel (GDAL's rasterisation rule, the one rasterstats uses by default). A parcel that holds
fewer than ``min_pixels`` pixel centres at a grid's resolution takes every pixel it touches
instead, so that small parcels still get a value on the 20 m and 60 m bands.

Membership is computed once per grid as (parcel, pixel) pairs: the pixel centres inside each
parcel's bounding box are tested against the parcel in one vectorised point-in-polygon call
(shapely, prepared geometries), which is several times faster than rasterising through GDAL;
overlapping parcels simply share pixels. Every band on that grid then reduces to one
``np.bincount``. No Python loop runs over parcels.
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

    def means(self, grid: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Per-parcel mean of ``grid`` over its valid pixels; NaN where a parcel has no valid
        pixel. ``grid`` and ``valid`` have the grid's shape."""
        ok = valid.ravel()[self.pixel]
        values = grid.ravel()[self.pixel].astype(np.float64)
        n = self.counts(ok.astype(np.float64))
        total = self.counts(np.where(ok, values, 0.0))
        with np.errstate(invalid="ignore", divide="ignore"):
            return total / n


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
               shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """All-touched (parcel index, flat pixel) pairs of the parcels ``index`` (not overlapping),
    through GDAL: the rule rasterstats' ``all_touched=True`` applies."""
    labels = features.rasterize(
        zip(geometries[index], range(1, len(index) + 1), strict=True), out_shape=shape,
        transform=transform, fill=0, all_touched=True, dtype="int32")
    pixel = np.flatnonzero(labels)
    return index[labels.ravel()[pixel] - 1], pixel


def _centres(geometries: np.ndarray, transform: Affine, shape: tuple[int, int],
             batch: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """(parcel index, flat pixel) pairs of the pixel centres inside each parcel, testing at
    most ``batch`` candidate centres at a time."""
    height, width = shape
    res, x0, y1 = transform.a, transform.c, transform.f
    minx, miny, maxx, maxy = shapely.bounds(geometries).T
    c0 = np.maximum(np.ceil((minx - x0) / res - 0.5), 0).astype(np.int64)
    c1 = np.minimum(np.floor((maxx - x0) / res - 0.5), width - 1).astype(np.int64)
    r0 = np.maximum(np.ceil((y1 - maxy) / res - 0.5), 0).astype(np.int64)
    r1 = np.minimum(np.floor((y1 - miny) / res - 0.5), height - 1).astype(np.int64)
    ncols, nrows = np.maximum(c1 - c0 + 1, 0), np.maximum(r1 - r0 + 1, 0)
    candidates = ncols * nrows
    shapely.prepare(geometries)
    ends = np.cumsum(candidates)
    parcels, pixels = [], []
    first = 0
    while first < len(geometries):
        last = max(int(np.searchsorted(ends, ends[first] - candidates[first] + batch)),
                   first + 1)
        part = np.arange(first, min(last, len(geometries)))
        counts = candidates[part]
        parcel = np.repeat(part, counts)
        k = np.arange(int(counts.sum())) - np.repeat(np.cumsum(counts) - counts, counts)
        row = r0[parcel] + k // ncols[parcel]
        col = c0[parcel] + k % ncols[parcel]
        inside = shapely.contains_xy(geometries[parcel], x0 + (col + 0.5) * res,
                                     y1 - (row + 0.5) * res)
        parcels.append(parcel[inside])
        pixels.append((row * width + col)[inside])
        first = int(part[-1]) + 1
    if not parcels:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(parcels), np.concatenate(pixels)


def membership(geometries: np.ndarray, transform: Affine, shape: tuple[int, int],
               min_pixels: int = MIN_PIXELS) -> Membership:
    """Pixel membership of ``geometries`` (shapely, in the grid's CRS) on a grid of ``shape``
    whose upper-left pixel is placed by ``transform``."""
    n = len(geometries)
    parcel, pixel = _centres(geometries, transform, shape)
    small = np.flatnonzero(np.bincount(parcel, minlength=n) < min_pixels)
    if len(small):  # few parcels: GDAL's all-touched rule, in layers that do not overlap
        keep = ~np.isin(parcel, small)
        parts = [(parcel[keep], pixel[keep])]
        parts += [_rasterize(geometries, small[layer], transform, shape)
                  for layer in _layers(geometries[small])]
        parcel = np.concatenate([p for p, _ in parts])
        pixel = np.concatenate([q for _, q in parts])
    order = np.argsort(parcel, kind="stable")
    return Membership(parcel[order].astype(np.int64), pixel[order].astype(np.int64), n)
