"""Areas as grids of square cells, imported with the areas."""

from __future__ import annotations

import json

import numpy as np
import pytest
import shapely

from eowatch.cells import CellError, CellGrid, cell_rows
from eowatch.cli import main
from eowatch.contract.messages import shard_of
from eowatch.daemon.registry import TargetRegistry
from eowatch.daemon.store.store import Store
from eowatch.geometry import reproject

EPSG = 32630


def square(x: float, y: float, side: float) -> shapely.Geometry:
    """A square given in UTM 30N, returned in WGS 84."""
    return reproject(shapely.box(x, y, x + side, y + side), EPSG, 4326)


def test_an_aligned_square_kilometre_is_625_cells_of_40_m():
    grid = CellGrid.of("river", square(600_000, 5_300_000, 1000))
    assert (grid.epsg, grid.size, grid.count) == (EPSG, 40.0, 625)
    ids, rows, cols = grid.cells()
    assert ids[0] == "river/0-0" and len(set(ids)) == 625
    boxes = grid.boxes(rows, cols)
    assert shapely.union_all(boxes).area == pytest.approx(1e6, rel=1e-3)
    assert grid.definition()["x0"] % 40 == 0 and grid.definition()["y1"] % 40 == 0


def test_cells_are_the_same_on_every_import_and_belong_by_their_centre():
    shape = square(600_013, 5_300_007, 333)   # not aligned on the grid
    first, again = CellGrid.of("a", shape), CellGrid.of("a", shape)
    assert np.array_equal(first.inside, again.inside) and first.x0 == again.x0
    ids, rows, cols = first.cells()
    projected = reproject(shape, 4326, EPSG)
    centres = shapely.centroid(first.boxes(rows, cols))
    assert shapely.contains(projected, centres).all()
    rows_out = cell_rows(first, 64)  # an area's cells share its shard: one consumer holds it
    assert {r["shard"] for r in rows_out} == {shard_of("a", 64)}
    assert [r["id"] for r in rows_out] == ids.tolist()


def test_areas_that_cannot_be_laid_out_are_refused_with_the_fix():
    with pytest.raises(CellError, match="larger cell size"):
        CellGrid.of("huge", square(500_000, 5_200_000, 100_000), size=40)
    with pytest.raises(CellError, match="smaller cell size"):
        CellGrid.of("tiny", square(600_001, 5_300_001, 10), size=40)


def test_areas_import_stores_the_grid_and_cells_and_a_new_size_replaces_them(tmp_path):
    path = tmp_path / "areas.geojson"
    features = [{"type": "Feature", "properties": {"code": code},
                 "geometry": shapely.geometry.mapping(square(600_000 + 2000 * k, 5_300_000,
                                                             400))}
                for k, code in enumerate(("upstream", "town"))]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    env = ["--config", str(tmp_path / "eowatch.toml")]
    (tmp_path / "eowatch.toml").write_text(f'data_dir = "{tmp_path}"\nshards = 16\n')
    assert main(["areas", "import", str(path), "--id-field", "code", "--cell-size", "100",
                 *env]) == 0
    store = Store(f"sqlite:///{tmp_path / 'eowatch.db'}")
    grid, count = store.area_cells("town")
    assert count == 16 and grid["size"] == 100 and grid["epsg"] == EPSG
    # each 400 m square lies in one 2 km cell of its coarse grid, counted apart
    assert grid["coarse"]["size"] == 2000 and grid["coarse"]["fine_cells"] == [[16]]
    registry = TargetRegistry(store.cell_columns)
    assert len(registry.index) == 32 + 2
    assert registry.lookup(np.array(["town/0-0", "town#geo/0-0", "nowhere/0-0"],
                                    dtype=object)).tolist()[1:] == [33, -1]
    assert main(["areas", "import", str(path), "--id-field", "code", "--cell-size", "50",
                 *env]) == 0
    assert store.area_cells("town")[1] == 64 and len(store.cell_columns()[0]) == 128 + 2
    store.close()
