"""Sentinel-1 GRD geolocation from the real annotation, and per-cell means of a window."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pyproj
import pytest
import shapely

from eowatch.adapters.s1_geolocation import Geolocation, GeolocationError, cell_means
from eowatch.cells import CellGrid
from tests.conftest import unavailable

from .test_s1_calibration import SAFE


@pytest.fixture(scope="module")
def geo() -> Geolocation:
    if not SAFE.is_dir():
        unavailable("the shared Sentinel-1 fixture", f"{SAFE} not found")
    return Geolocation.from_safe(SAFE, "vv")


def test_the_grid_points_are_the_annotation_and_the_scene_is_described(geo):
    point = ET.parse(next((SAFE / "annotation").glob("s1b-*.xml"))).getroot().find(
        "geolocationGrid/geolocationGridPointList")[25]
    row, col = float(point.findtext("line")), float(point.findtext("pixel"))
    lon, lat = geo.lonlat(np.array([row]), np.array([col]))
    assert (lon[0], lat[0]) == (float(point.findtext("longitude")),
                                float(point.findtext("latitude")))
    assert geo.shape == (16705, 26102) and geo.pass_direction == "Descending"
    assert 29 < geo.incidence.min() < geo.incidence.max() < 47  # IW's range of angles


def test_the_window_of_a_box_holds_its_pixels(geo):
    row, col = 7000.0, 13000.0
    lon, lat = geo.lonlat(np.array([row]), np.array([col]))
    box = (lon[0] - 0.005, lat[0] - 0.005, lon[0] + 0.005, lat[0] + 0.005)
    row0, col0, height, width = geo.window_of(box)
    assert row0 <= row < row0 + height and col0 <= col < col0 + width
    assert 50 < height < 200 and 50 < width < 200   # ~1 km at 10 m pixels, plus the margin
    assert geo.window_of((0.0, 0.0, 0.1, 0.1)) is None  # far from the scene


def test_cell_means_follow_each_pixels_cell(geo):
    """A window whose west half is dark (water) and east half bright: cells away from the edge
    take their half's value exactly."""
    row, col = 8000, 12000
    lon, lat = geo.lonlat(np.array([row]), np.array([col]))
    area = shapely.box(lon[0] - 0.004, lat[0] - 0.003, lon[0] + 0.004, lat[0] + 0.003)
    grid = CellGrid.of("lake", area, 40)
    row0, col0, height, width = geo.window_of(area.bounds)
    rows, cols = np.mgrid[row0:row0 + height, col0:col0 + width]
    pixel_lon, _ = geo.lonlat(rows + 0.5, cols + 0.5)
    power = np.where(pixel_lon < lon[0], 0.003, 0.08)
    means = cell_means(power, np.ones_like(power, bool), row0, col0, geo, grid)
    ids, cell_rows, cell_cols = grid.cells()
    centres = shapely.centroid(grid.boxes(cell_rows, cell_cols))
    centre_lon, _ = pyproj.Transformer.from_crs(grid.epsg, 4326, always_xy=True).transform(
        shapely.get_x(centres), shapely.get_y(centres))
    far_west = centre_lon[means.index] < lon[0] - 0.0008
    far_east = centre_lon[means.index] > lon[0] + 0.0008
    assert far_west.sum() > 50 and far_east.sum() > 50
    assert np.allclose(means.power[far_west], 0.003) and np.allclose(means.power[far_east], 0.08)
    assert len(means.index) >= 0.95 * grid.count
    assert (means.valid_fraction == 1).all()
    assert 30 < means.incidence.mean() < 46


def test_invalid_pixels_lower_the_valid_fraction_and_stay_out_of_the_mean(geo):
    row, col = 8000, 12000
    lon, lat = geo.lonlat(np.array([row]), np.array([col]))
    area = shapely.box(lon[0] - 0.002, lat[0] - 0.002, lon[0] + 0.002, lat[0] + 0.002)
    grid = CellGrid.of("a", area, 40)
    row0, col0, height, width = geo.window_of(area.bounds)
    power = np.full((height, width), 0.05)
    valid = np.ones_like(power, bool)
    valid[:, ::2] = False   # every other pixel unusable (noise above the signal, say)
    power[~valid] = 99.0    # and what it holds must not count
    means = cell_means(power, valid, row0, col0, geo, grid)
    assert np.allclose(means.power[means.valid_fraction > 0], 0.05)
    assert 0.3 < means.valid_fraction.mean() < 0.7


def test_an_annotation_without_a_grid_is_a_clear_error():
    with pytest.raises(GeolocationError, match="no geolocation grid"):
        Geolocation.from_xml(b"<product/>")


@pytest.mark.parametrize("row, col", [(3000, 9000), (3000, 21000)])
def test_the_window_of_a_large_area_reaches_every_one_of_its_cells(geo, row, col):
    """Map -> image is interpolated linearly over the coarse geolocation grid: the window's
    margin must cover that error, or cells along an area's edge get no pixel."""
    lon, lat = geo.lonlat(np.array([float(row)]), np.array([float(col)]))
    area = shapely.box(lon[0], lat[0], lon[0] + 0.045, lat[0] + 0.045)   # ~4 x 5 km
    grid = CellGrid.of("big", area, 40)
    row0, col0, height, width = geo.window_of(area.bounds)
    power = np.ones((height, width))
    means = cell_means(power, np.ones_like(power, bool), row0, col0, geo, grid)
    assert len(means.index) == grid.count
