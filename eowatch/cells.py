"""Areas as grids of square cells: the targets of per-area models, as parcels are the crop
model's.

An area's cells lie on a grid in the UTM zone of the area's centre, aligned on multiples of the
cell size (so that two imports of the same area give the same cells, and neighbouring areas of
one zone share a grid). A cell belongs to the area when its centre lies inside the area, the
rule the feeds' pixels follow too. Cell ids are ``<area id>/<row>-<col>``, row and column
counted from the grid's north-west corner. Every cell of an area lies in the area's shard
(crc32 of the area id mod N_SHARDS): one consumer then holds a whole area, which is what
turning its cells' states into one flood event per area needs.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

from .contract.messages import shard_of
from .errors import EowatchError
from .geometry import reproject, utm_epsg

DEFAULT_CELL_METRES = 40.0
# the coarse grid of an area, for the weather satellites' 0.5-10 km pixels: its cells are
# targets too, with ids <area id>#geo/<row>-<col>, in the area's shard
DEFAULT_COARSE_METRES = 2000.0
COARSE = "#geo"
MAX_CELLS = 5_000_000  # per area: 8,000 km² at 40 m; a larger area wants larger cells


class CellError(EowatchError, ValueError):
    """An area that cannot be laid out in cells (too large for its cell size, or empty)."""


@dataclass(frozen=True)
class CellGrid:
    """The cells of one area: grid origin (north-west corner) and size in the area's UTM zone,
    and which cells of the bounding grid belong to the area."""

    area_id: str
    epsg: int
    size: float
    x0: float
    y1: float
    inside: np.ndarray  # [rows, cols] bool

    @classmethod
    def of(cls, area_id: str, geometry: shapely.Geometry,
           size: float = DEFAULT_CELL_METRES) -> CellGrid:
        """The grid of an area given in WGS 84 (lon, lat)."""
        if size <= 0:
            raise CellError(f"area {area_id}: cell size must be positive, not {size}")
        centre = geometry.centroid
        epsg = int(utm_epsg(centre.x, centre.y))
        projected = reproject(geometry, 4326, epsg)
        minx, miny, maxx, maxy = projected.bounds
        x0, y1 = math.floor(minx / size) * size, math.ceil(maxy / size) * size
        cols = max(1, math.ceil((maxx - x0) / size))
        rows = max(1, math.ceil((y1 - miny) / size))
        if rows * cols > MAX_CELLS:
            raise CellError(f"area {area_id}: {rows * cols:,} cells of {size:g} m exceed "
                            f"{MAX_CELLS:,}; import it with a larger cell size")
        ys, xs = np.mgrid[0:rows, 0:cols]
        shapely.prepare(projected)
        inside = shapely.contains_xy(projected, x0 + (xs + 0.5) * size,
                                     y1 - (ys + 0.5) * size)
        if not inside.any():
            raise CellError(f"area {area_id}: no cell of {size:g} m has its centre inside the "
                            "area; use a smaller cell size")
        return cls(area_id, epsg, float(size), float(x0), float(y1), inside)

    @property
    def count(self) -> int:
        return int(self.inside.sum())

    def cells(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(ids, rows, cols) of the area's cells, row by row."""
        rows, cols = np.nonzero(self.inside)
        ids = np.array([f"{self.area_id}/{r}-{c}" for r, c in zip(rows.tolist(), cols.tolist(),
                                                                      strict=True)],
                       dtype=object)
        return ids, rows, cols

    def boxes(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The cells as polygons in the grid's UTM zone."""
        x = self.x0 + cols * self.size
        y = self.y1 - rows * self.size
        return shapely.box(x, y - self.size, x + self.size, y)

    def definition(self) -> dict[str, Any]:
        """What the store keeps of the grid (the cells themselves are rows of their own)."""
        return {"epsg": self.epsg, "size": self.size, "x0": self.x0, "y1": self.y1,
                "rows": int(self.inside.shape[0]), "cols": int(self.inside.shape[1])}


def coarse_grid(grid: CellGrid, size: float = DEFAULT_COARSE_METRES) -> CellGrid:
    """The coarse grid over an area's cells (same UTM zone, aligned on multiples of ``size``):
    a coarse cell belongs to it when it holds the centre of one of the area's cells."""
    if size < grid.size:
        raise CellError(f"area {grid.area_id}: coarse cells of {size:g} m are smaller than its "
                        f"{grid.size:g} m cells")
    x0, y1 = math.floor(grid.x0 / size) * size, math.ceil(grid.y1 / size) * size
    r, c = np.nonzero(grid.inside)
    coarse_r, coarse_c = coarse_place(grid.definition(), {"x0": x0, "y1": y1, "size": size},
                                      r, c)
    inside = np.zeros((coarse_r.max() + 1, coarse_c.max() + 1), bool)
    inside[coarse_r, coarse_c] = True
    return CellGrid(grid.area_id + COARSE, grid.epsg, float(size), x0, y1, inside)


def coarse_place(fine: dict[str, Any], coarse: dict[str, Any], rows: np.ndarray,
                 cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column in the coarse grid of the cells (rows, cols) of the fine grid (both as
    ``definition``): the coarse cell holding each one's centre."""
    x = fine["x0"] + (np.asarray(cols) + 0.5) * fine["size"]
    y = fine["y1"] - (np.asarray(rows) + 0.5) * fine["size"]
    return (np.floor((coarse["y1"] - y) / coarse["size"]).astype(np.int64),
            np.floor((x - coarse["x0"]) / coarse["size"]).astype(np.int64))


def parent_area(area_id: str) -> str:
    """The area a grid belongs to: itself, or the area of a coarse grid."""
    return area_id.removesuffix(COARSE)


def cell_rows(grid: CellGrid, shards: int) -> list[dict[str, Any]]:
    """Store rows of a grid's cells: id, area, shard (the area's), row, column."""
    ids, rows, cols = grid.cells()
    area = parent_area(grid.area_id)
    shard = shard_of(area, shards)
    return [{"id": i, "area_id": area, "shard": shard, "row": int(r), "col": int(c)}
            for i, r, c in zip(ids.tolist(), rows.tolist(), cols.tolist(), strict=True)]


def area_cell_rows(grid: CellGrid, shards: int, coarse_size: float = DEFAULT_COARSE_METRES
                   ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """What the store keeps of an area: its grid definition (with its coarse grid's, and the
    number of the area's cells under each coarse cell, row by row) and both grids' cells."""
    coarse = coarse_grid(grid, coarse_size)
    definition = coarse.definition()
    r, c = coarse_place(grid.definition(), definition, *np.nonzero(grid.inside))
    counts = np.zeros(coarse.inside.shape, np.int64)
    np.add.at(counts, (r, c), 1)
    return ({**grid.definition(), "coarse": {**definition, "fine_cells": counts.tolist()}},
            cell_rows(grid, shards) + cell_rows(coarse, shards))


def stored_coarse_grid(area_id: str, definition: dict[str, Any]) -> CellGrid | None:
    """An area's coarse grid from its stored grid definition (``area_cell_rows``); None when
    it was imported without one."""
    coarse = definition.get("coarse")
    if coarse is None:
        return None
    return CellGrid(area_id + COARSE, int(coarse["epsg"]), float(coarse["size"]),
                    float(coarse["x0"]), float(coarse["y1"]),
                    np.asarray(coarse["fine_cells"]) > 0)


def grid_of(area_id: str, geojson: str, size: float = DEFAULT_CELL_METRES) -> CellGrid:
    return CellGrid.of(area_id, shapely.geometry.shape(json.loads(geojson)), size)


def parse_cell_ids(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(area ids, rows, cols) of cell ids ``<area id>/<row>-<col>`` (area ids may hold '/')."""
    parts = [i.rpartition("/") for i in ids.tolist()]
    position = [p[2].partition("-") for p in parts]
    return (np.array([p[0] for p in parts], dtype=object),
            np.array([int(p[0]) for p in position], np.int64),
            np.array([int(p[2]) for p in position], np.int64))


def extent(grid: dict[str, Any], rows: np.ndarray, cols: np.ndarray) -> dict[str, Any]:
    """The cells (rows, cols of the grid ``definition``) dissolved into one GeoJSON
    MultiPolygon in WGS 84, coordinates to 1e-6° (0.1 m)."""
    from rasterio.features import shapes
    from rasterio.transform import Affine

    if len(rows) == 0:
        return {"type": "MultiPolygon", "coordinates": []}
    r0, c0 = int(rows.min()), int(cols.min())
    mask = np.zeros((int(rows.max()) - r0 + 1, int(cols.max()) - c0 + 1), np.uint8)
    mask[rows - r0, cols - c0] = 1
    size = grid["size"]
    transform = Affine(size, 0, grid["x0"] + c0 * size, 0, -size, grid["y1"] - r0 * size)
    polygons = [shapely.geometry.shape(g) for g, _ in shapes(mask, mask.astype(bool),
                                                                 transform=transform)]
    dissolved = shapely.set_precision(
        reproject(shapely.MultiPolygon(polygons), grid["epsg"], 4326), 1e-6)
    if dissolved.geom_type == "Polygon":
        dissolved = shapely.MultiPolygon([dissolved])
    return shapely.geometry.mapping(dissolved)
