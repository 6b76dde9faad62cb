"""Coordinate helpers shared by the parcel import, area cells and the feeds."""

from __future__ import annotations

import functools
from typing import TypeVar

import numpy as np
import pyproj
import shapely

Geometries = TypeVar("Geometries", shapely.Geometry, np.ndarray)


def utm_zone(lon: np.ndarray) -> np.ndarray:
    return np.clip(np.floor((np.asarray(lon) + 180.0) / 6.0).astype(np.int64) + 1, 1, 60)


def utm_epsg(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """WGS 84 / UTM EPSG code of each point: 326zz north of the equator, 327zz south."""
    return np.where(np.asarray(lat) >= 0, 32600, 32700) + utm_zone(lon)


@functools.lru_cache(maxsize=64)
def transformer(source: pyproj.CRS | int | str, target: pyproj.CRS | int | str
                ) -> pyproj.Transformer:
    """A transformer from ``source`` to ``target`` (lon, lat order), built once per pair:
    building one costs milliseconds, more than transforming a window of pixels."""
    return pyproj.Transformer.from_crs(source, target, always_xy=True)


def reproject(geometries: Geometries, source: pyproj.CRS | int | str,
              target: pyproj.CRS | int | str) -> Geometries:
    """Geometries (one, or an array of them) from ``source`` to ``target``, lon/lat order,
    every vertex in one vectorised call."""
    change = transformer(source, target)
    return shapely.transform(
        geometries, lambda xy: np.column_stack(change.transform(xy[:, 0], xy[:, 1])))
