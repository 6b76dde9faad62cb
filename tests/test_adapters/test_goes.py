"""GOES-R ABI L1b reading: the fixed grid against its test vector, radiance to reflectance,
windows over areas read over HTTP, the NOAA bucket listing."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime

import numpy as np
import pytest

from eowatch.adapters.goes import (
    FixedGrid,
    GoesError,
    hour_prefixes,
    list_bucket,
    open_band,
    parse_key,
)
from tests.conftest import unavailable
from tests.data.goes import HEADER, parse_cdl, write_abi


@pytest.fixture(scope="module", autouse=True)
def header():
    if not HEADER.is_file():
        unavailable("the shared GOES header", f"{HEADER} not found")


def test_the_fixed_grid_meets_its_test_vector():
    """GRS80, lon_0 = -75: x = -0.024052, y = 0.095340 -> lat 33.846162, lon -84.690932."""
    grid = FixedGrid(1.0, 0.0, 1.0, 0.0, 1, 1, 35786023.0, -75.0, 6378137.0, 6356752.31414,
                     "x")
    lon, lat = grid.lonlat(np.array([0.095340]), np.array([-0.024052]))
    assert abs(lat[0] - 33.846162) < 1e-6 and abs(lon[0] + 84.690932) < 1e-6
    off, _ = grid.lonlat(np.array([0.2]), np.array([0.2]))   # beyond the limb
    assert np.isnan(off).all()


def dn_pattern(rows, cols):
    return ((rows * 7 + cols * 3) % 4000).astype(np.uint16)


def test_reflectance_is_kappa0_times_calibrated_radiance(tmp_path):
    path = tmp_path / "cogs" / "abi.nc"
    _, variables = parse_cdl(HEADER.read_text())
    write_abi(path, dn_pattern, kappa0=0.0018)
    scale = float(variables["Rad"]["attrs"]["scale_factor"])
    offset = float(variables["Rad"]["attrs"]["add_offset"])
    with open_band(str(path)) as band:
        assert band.band == 3 and band.start == datetime(2025, 9, 1, 12, tzinfo=UTC)
        reflectance, valid = band.reflectance(700, 1200, 40, 60)
    rows, cols = np.mgrid[700:740, 1200:1260]
    expected = 0.0018 * (dn_pattern(rows, cols) * scale + offset)
    assert valid.all() and np.abs(reflectance - expected).max() < 1e-6


def test_a_window_over_an_area_is_read_over_http_and_fill_is_not_valid(tmp_path):
    from tests.data.sentinel2 import StacServer

    path = tmp_path / "cogs" / "OR_ABI-L1b-RadC-M6C03_G16_s20252441200000_e1_c1.nc"
    write_abi(path, lambda r, c: np.where(c < 1250, dn_pattern(r, c), 4095))
    with StacServer(tmp_path) as server, open_band(f"{server.url}/cogs/{path.name}") as band:
        lon, lat = band.grid.lonlat(np.array([750.0]), np.array([1240.0]))
        area = (lon[0] - 0.2, lat[0] - 0.15, lon[0] + 0.2, lat[0] + 0.15)
        row0, col0, height, width = band.grid.window_of(area)
        assert 0 < height < 40 and 0 < width < 40            # ~2 km pixels: a small window
        reflectance, valid = band.reflectance(row0, col0, height, width)
        rows, cols = np.mgrid[row0:row0 + height, col0:col0 + width]
        assert (valid == (cols < 1250)).all()                # fill is not valid
        plon, plat = band.grid.lonlat(rows + 0.0, cols + 0.0)
        inside = (plon > area[0]) & (plon < area[2]) & (plat > area[1]) & (plat < area[3])
        assert inside.sum() > 0.5 * inside.size               # the window is the area's
        requests = [r for r in server.requests if r[1].startswith("/cogs/")]
    assert len(requests) < 20                                 # ranges, not the whole file
    assert band.grid.window_of((100.0, 10.0, 101.0, 11.0)) is None   # off the disk


def test_a_corrupt_file_is_a_clear_error(tmp_path):
    path = tmp_path / "broken.nc"
    path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with pytest.raises(GoesError, match="not a readable HDF5 file"):
        with open_band(str(path)):
            pass


def test_the_bucket_listing_is_read_page_by_page():
    keys = [f"ABI-L1b-RadC/2025/244/12/OR_ABI-L1b-RadC-M6C0{b}_G16_s2025244120{m}171_"
            f"e2025244120{m + 2}544_c2025244120{m + 3}011.nc" for m in range(0, 6, 2)
            for b in (2, 3, 5)]

    def page(url: str) -> bytes:
        query = urllib.parse.parse_qs(urllib.parse.urlparse(url).query)
        start = int(query.get("continuation-token", ["0"])[0])
        chunk = keys[start:start + 4]
        more = start + 4 < len(keys)
        contents = "".join(f"<Contents><Key>{k}</Key><Size>1</Size></Contents>" for k in chunk)
        token = f"<NextContinuationToken>{start + 4}</NextContinuationToken>" if more else ""
        return (f'<?xml version="1.0" encoding="UTF-8"?><ListBucketResult xmlns='
                f'"http://s3.amazonaws.com/doc/2006-03-01/"><Name>noaa-goes16</Name>'
                f"<Prefix>{query['prefix'][0]}</Prefix><KeyCount>{len(chunk)}</KeyCount>"
                f"<IsTruncated>{'true' if more else 'false'}</IsTruncated>{contents}{token}"
                "</ListBucketResult>").encode()

    found = list(list_bucket(page, "https://noaa-goes16.s3.amazonaws.com",
                             "ABI-L1b-RadC/2025/244/12/"))
    assert found == keys
    listed = parse_key(found[1])
    assert (listed.band, listed.product, listed.satellite) == (3, "RadC", "G16")
    assert listed.start == datetime(2025, 9, 1, 12, 0, 17, tzinfo=UTC)
    assert parse_key("ABI-L2-ACMC/2025/244/12/other.nc") is None
    assert list(hour_prefixes("RadC", datetime(2025, 9, 1, 11, 30, tzinfo=UTC),
                              datetime(2025, 9, 1, 12, 5, tzinfo=UTC))) == [
        "ABI-L1b-RadC/2025/244/11/", "ABI-L1b-RadC/2025/244/12/"]


def test_cell_means_equal_a_reference_read_whole_with_another_reader(tmp_path):
    """The windowed h5py read, averaged into a 2 km grid, against the whole band read with
    h5netcdf and averaged with pandas."""
    import h5netcdf
    import pandas as pd
    import pyproj
    import shapely

    from eowatch.adapters.goes import cell_means
    from eowatch.cells import CellGrid

    path = tmp_path / "abi.nc"
    write_abi(path, lambda r, c: np.where((r + c) % 17 == 0, 4095, dn_pattern(r, c)))
    with open_band(str(path)) as band:
        lon, lat = band.grid.lonlat(np.array([700.0]), np.array([1300.0]))
        grid = CellGrid.of("plain", shapely.box(lon[0], lat[0], lon[0] + 0.3, lat[0] + 0.2),
                           2000)
        means = cell_means(band, grid)
    with h5netcdf.File(path, "r") as f:
        rad = f["Rad"]
        dn = np.asarray(f.variables["Rad"]._h5ds[...]).view(np.uint16)   # raw, unmasked
        scale, offset = rad.attrs["scale_factor"], rad.attrs["add_offset"]
        p = dict(f["goes_imager_projection"].attrs)
        xs, ys = dict(f["x"].attrs), dict(f["y"].attrs)
        crs = pyproj.CRS.from_proj4(
            f"+proj=geos +h={p['perspective_point_height']} "
            f"+lon_0={p['longitude_of_projection_origin']} +a={p['semi_major_axis']} "
            f"+b={p['semi_minor_axis']} +sweep={p['sweep_angle_axis']}")
        kappa0 = float(f["kappa0"][...])
    rows, cols = np.mgrid[0:dn.shape[0], 0:dn.shape[1]]
    h = p["perspective_point_height"]
    px = (cols * xs["scale_factor"] + xs["add_offset"]) * h
    py = (rows * ys["scale_factor"] + ys["add_offset"]) * h
    ex, ey = pyproj.Transformer.from_crs(crs, grid.epsg, always_xy=True).transform(px, py)
    cell_row = np.floor((grid.y1 - ey) / grid.size)
    cell_col = np.floor((ex - grid.x0) / grid.size)
    inside = (cell_row >= 0) & (cell_row < grid.inside.shape[0]) & (cell_col >= 0) & \
        (cell_col < grid.inside.shape[1]) & (dn != 4095)
    frame = pd.DataFrame({"row": cell_row[inside], "col": cell_col[inside],
                          "value": kappa0 * (dn[inside] * scale + offset)})
    reference = frame.groupby(["row", "col"])["value"].mean()
    _, grid_rows, grid_cols = grid.cells()
    got = {(float(grid_rows[i]), float(grid_cols[i])): v
           for i, v in zip(means.index, means.power, strict=True) if np.isfinite(v)}
    in_area = {(float(r), float(c)) for r, c in zip(grid_rows, grid_cols, strict=True)}
    assert set(got) == set(reference.index) & in_area and len(got) > 20
    assert max(abs(got[k] - reference[k]) for k in got) < 1e-6


def test_a_full_disk_file_reads_on_its_own_grid(tmp_path):
    """RadF: the sub-satellite point is the image's centre, the limb its edge, and an area's
    window is read there as in CONUS files."""
    import shapely

    from eowatch.adapters.goes import cell_means
    from eowatch.cells import CellGrid

    path = tmp_path / "OR_ABI-L1b-RadF-M6C03_G16_s20252441200000_e1_c1.nc"
    write_abi(path, dn_pattern, full_disk=True)
    with open_band(str(path)) as band:
        assert (band.grid.height, band.grid.width) == (5424, 5424)
        lon, lat = band.grid.lonlat(np.array([2711.5]), np.array([2711.5]))
        # the header is GOES-16 in its checkout position, over 89.5 W
        assert abs(lon[0] - band.grid.lon_0) < 0.01 and abs(lat[0]) < 0.01
        corner, _ = band.grid.lonlat(np.array([0.0]), np.array([0.0]))
        assert np.isnan(corner).all()                                # off the Earth's disk
        # pixels are ~2.5 km here, 30 degrees off nadir: 5 km cells each hold several
        grid = CellGrid.of("pampa", shapely.box(-60.3, -35.2, -60.0, -35.0), 5000)
        means = cell_means(band, grid)
    assert means is not None and len(means.index) == grid.count
    assert parse_key(path.name).product == "RadF"
