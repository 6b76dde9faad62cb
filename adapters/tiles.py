"""Registered parcels against Sentinel-2's tiling: which tile measures which parcel.

Sentinel-2 tiles are 109.8 km squares in UTM: the 100 km MGRS square plus 9.8 km more to the
east and south, so neighbouring tiles overlap, and tiles of neighbouring UTM zones overlap
more. A parcel in an overlap is imaged by several tiles in the same pass. To observe it once per
pass, each parcel has one home tile, found from its geometry alone:

- its UTM zone is the zone of its centre's longitude (the standard 6° zones);
- its home is the first tile, in the order own square, square to the north, to the west, to the
  north-west, whose nominal footprint holds the whole parcel; a parcel no tile holds whole
  (larger than the overlap) stays with its own square and its missing part counts as not valid.

An item is then read for the parcels whose home is its tile and no others.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import shapely
from affine import Affine

from eowatch.geometry import reproject, utm_epsg

MAX_SEARCH_VERTICES = 2000  # beyond this, the search area becomes its convex hull
SQUARE = 100_000.0   # MGRS 100 km square
TILE = 109_800.0     # Sentinel-2 tile side


def tile_square(transform: Affine | tuple[float, ...]) -> tuple[float, float]:
    """(easting, northing) of the south-west corner of the MGRS square of a tile, from the
    transform of its full grid (its upper-left corner lies within tens of metres of the square's
    north-west corner)."""
    t = transform if isinstance(transform, Affine) else Affine(*transform[:6])
    return round(t.c / SQUARE) * SQUARE, round(t.f / SQUARE) * SQUARE - SQUARE


def home_squares(bounds: np.ndarray) -> np.ndarray:
    """[n, 2] south-west corners of each parcel's home square, from [n, 4] UTM bounds."""
    minx, miny, maxx, maxy = bounds.T
    east = np.floor((minx + maxx) / 2 / SQUARE) * SQUARE
    north = np.floor((miny + maxy) / 2 / SQUARE) * SQUARE
    home = np.column_stack([east, north])
    decided = np.zeros(len(bounds), bool)
    for de, dn in ((0, 0), (0, SQUARE), (-SQUARE, 0), (-SQUARE, SQUARE)):
        e, n = east + de, north + dn
        inside = (minx >= e) & (maxx <= e + TILE) & (maxy <= n + SQUARE) & \
            (miny >= n + SQUARE - TILE) & ~decided
        home[inside] = np.column_stack([e, n])[inside]
        decided |= inside
    return home


@dataclass
class ParcelSet:
    """Parcels with geometries: ids, shards, WGS84 shapes, and their UTM shapes per zone."""

    ids: np.ndarray            # [n] str
    shards: np.ndarray         # [n] int64
    geometries: np.ndarray     # [n] shapely, WGS84 lon/lat
    epsg: np.ndarray = field(init=False)
    _projected: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(
        init=False, default_factory=dict)
    _area: dict | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        centre = shapely.centroid(shapely.envelope(self.geometries))
        self.epsg = utm_epsg(shapely.get_x(centre), shapely.get_y(centre))

    @classmethod
    def from_geojson(cls, ids: list[str], shards: list[int], geojson: list[str]) -> ParcelSet:
        geometries = shapely.from_geojson(geojson) if geojson else np.array([], dtype=object)
        return cls(np.array(ids, dtype=object), np.asarray(shards, np.int64),
                   np.asarray(geometries, dtype=object))

    def __len__(self) -> int:
        return len(self.ids)

    def search_area(self) -> dict:
        """``search_area`` of these parcels, computed once."""
        if self._area is None:
            self._area = search_area(self)
        return self._area

    def in_zone(self, epsg: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(parcel indices, UTM geometries, home squares) of the parcels whose zone is
        ``epsg``; computed once per zone."""
        if epsg not in self._projected:
            index = np.flatnonzero(self.epsg == epsg)
            projected = reproject(self.geometries[index], 4326, epsg)
            self._projected[epsg] = (index, projected, home_squares(shapely.bounds(projected)))
        return self._projected[epsg]

    def homed_in(self, epsg: int, square: tuple[float, float]
                 ) -> tuple[np.ndarray, np.ndarray]:
        """(parcel indices, UTM geometries) of the parcels whose home tile is ``square``."""
        index, projected, home = self.in_zone(epsg)
        mine = (home[:, 0] == square[0]) & (home[:, 1] == square[1])
        return index[mine], projected[mine]


def search_area(parcels: ParcelSet, cell_degrees: float = 0.1) -> dict:
    """A GeoJSON MultiPolygon of the cells (``cell_degrees`` grid) that hold parcels: what the
    STAC search asks for, instead of one box over a whole country. Parcels scattered so widely
    that the cells need more than ``MAX_SEARCH_VERTICES`` vertices get their convex hull:
    items it adds have no parcel homed on them and are passed over from their metadata."""
    cell = np.floor(shapely.bounds(parcels.geometries) / cell_degrees).astype(np.int64)
    # a parcel smaller than a cell touches at most the cells of its four corners
    corners = np.concatenate([cell[:, [0, 1]], cell[:, [2, 1]], cell[:, [0, 3]],
                              cell[:, [2, 3]]])
    cells = {(int(i), int(j)) for i, j in np.unique(corners, axis=0)}
    for x0, y0, x1, y1 in cell[(cell[:, 2] - cell[:, 0] > 1) | (cell[:, 3] - cell[:, 1] > 1)]:
        cells.update((i, j) for i in range(x0, x1 + 1) for j in range(y0, y1 + 1))
    corner = np.array(sorted(cells), dtype=np.float64) * cell_degrees
    boxes = shapely.box(corner[:, 0], corner[:, 1], corner[:, 0] + cell_degrees,
                        corner[:, 1] + cell_degrees)
    union = shapely.union_all(boxes).simplify(cell_degrees / 10)
    if shapely.get_num_coordinates(union) > MAX_SEARCH_VERTICES:
        union = union.convex_hull  # a request body an API accepts; extra items cost little
    return json.loads(shapely.to_geojson(union))
