"""DSCOVR EPIC: the API's real listings, the areas in view, the L1B product per cell."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import h5py
import numpy as np
import pytest
import shapely

from eowatch.adapters.epic import FACTORS, EpicError, cell_means, parse_days, parse_listing
from eowatch.cells import CellGrid
from tests.conftest import unavailable
from tests.data.epic import DAYS, LISTING, write_l1b


@pytest.fixture(scope="module")
def images():
    if not LISTING.is_file():
        unavailable("the shared EPIC fixtures", f"{LISTING} not found")
    return parse_listing(json.loads(LISTING.read_text()))


def test_the_listing_is_keyed_on_the_identifier_not_the_date(images):
    raw = json.loads(LISTING.read_text())
    assert len(images) == 12
    first = images[0]
    assert first.taken_at == datetime(2015, 10, 31, 0, 36, 33, tzinfo=UTC)
    assert raw[0]["date"] == "2015-10-31 00:31:45"   # the API's date is another time
    assert first.product == "epic_1b_20151031003633_03.h5"
    assert first.l1b_path() == "archive/l1b/2015/10/31/epic_1b_20151031003633_03.h5"
    days = parse_days(json.loads(DAYS.read_text()))
    assert days[0] <= days[-1] and "2021-11-29" in days


def test_an_area_is_in_view_near_the_sunlit_centre_only(images):
    image = images[0]
    lon, lat = image.centroid
    assert image.in_view(lon + 20, lat)
    assert not image.in_view(lon + 180, -lat)   # the night side


def test_cell_means_are_reflectance_of_the_pixels_in_each_cell(images, tmp_path):
    import pandas as pd

    image = images[0]
    lon0, lat0 = image.centroid
    path = tmp_path / image.product

    def counts(lon, lat):
        # count rates of a 0.19-0.20 reflectance at 680 nm, varying cell to cell
        return 20000 + 100 * (np.floor(lon * 3) % 10) + 50 * (np.floor(lat * 3) % 10)

    write_l1b(path, image.centroid, counts, size=2048)   # the real image size
    grid = CellGrid.of("atoll", shapely.box(lon0 + 2, lat0 - 2, lon0 + 5, lat0 + 1), 10_000)
    with h5py.File(path) as f:
        means = cell_means(f, "Band680nm", grid)
        lon = f["Band680nm/Geolocation/Earth/Longitude"][...].astype(float)
        lat = f["Band680nm/Geolocation/Earth/Latitude"][...].astype(float)
        raw = f["Band680nm/Image"][...].astype(float)
        with pytest.raises(EpicError, match="no EPIC band"):
            cell_means(f, "Band999nm", grid)
        far = CellGrid.of("far", shapely.box(lon0 + 170, -lat0 - 1, lon0 + 171, -lat0), 10_000)
        assert cell_means(f, "Band780nm", far) is None   # not on the image
    assert means is not None and len(means.index) > 0.9 * grid.count   # ~6 km pixels
    # the reference: every pixel of the whole image into the grid, with pandas
    import pyproj

    on = np.abs(lat) <= 90
    x, y = pyproj.Transformer.from_crs(4326, grid.epsg, always_xy=True).transform(
        np.where(on, lon, 0), np.where(on, lat, 0))
    row = np.floor((grid.y1 - y) / grid.size)
    col = np.floor((x - grid.x0) / grid.size)
    keep = on & (row >= 0) & (row < grid.inside.shape[0]) & (col >= 0) & \
        (col < grid.inside.shape[1])
    frame = pd.DataFrame({"row": row[keep], "col": col[keep],
                          "value": raw[keep] * FACTORS["Band680nm"]})
    reference = frame.groupby(["row", "col"])["value"].mean()
    _, rows, cols = grid.cells()
    got = {(float(rows[i]), float(cols[i])): v
           for i, v in zip(means.index, means.power, strict=True)}
    assert max(abs(got[k] - reference[k]) for k in got) < 1e-9
    assert 0.15 < np.nanmean(means.power) < 0.3              # plausible reflectance
