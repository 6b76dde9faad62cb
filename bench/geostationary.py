"""Seconds to turn one GOES ABI file, CONUS (RadC) and full disk (RadF), and one Meteosat SEVIRI
Level 1.5 native full disc into cell observations for 10 areas, against reading the whole band
array, in the same run.

    python bench/geostationary.py [--areas 10] [--repeats 5]

The files are written by the GOES test kit from the real RadC header (RadC: 1500 x 2500 pixels
at 2 km; RadF: the same variables on the 5424 x 5424 full disk), chunked 226 x 226,
compressed, with DN over the whole image; areas are 30 x 20 km boxes spread over the image's
land, in 2 km cells. The SEVIRI file (3712 x 3712, VIS0.6, VIS0.8, NIR1.6) is written by the
Meteosat test kit with satpy's declaration of the format. Local files, warm page cache.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import shapely  # noqa: E402

from eowatch.adapters.goes import cell_means, open_band  # noqa: E402
from eowatch.cells import CellGrid  # noqa: E402
from eowatch.geometry import transformer  # noqa: E402
from tests.data.goes import write_abi  # noqa: E402


def measure(full_disk: bool, areas: int, repeats: int) -> tuple[float, float, int]:
    """(best windowed seconds, best whole-band seconds, cell observations) for one file."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "abi.nc"
        write_abi(path, lambda r, c: ((r * 7 + c * 3) % 4000).astype(np.uint16),
                  full_disk=full_disk)
        with open_band(str(path)) as band:
            rng = np.random.default_rng(0)
            grids = []
            while len(grids) < areas:
                row = rng.integers(0.1 * band.grid.height, 0.9 * band.grid.height)
                col = rng.integers(0.1 * band.grid.width, 0.9 * band.grid.width)
                lon, lat = band.grid.lonlat(np.array([float(row)]), np.array([float(col)]))
                if not np.isfinite(lon[0]) or abs(lat[0]) > 60:
                    continue                  # off the disk, or too oblique to be watched
                grids.append(CellGrid.of(f"a{len(grids)}", shapely.box(
                    lon[0], lat[0], lon[0] + 0.3, lat[0] + 0.2), 2000))
            windowed, whole = [], []
            for _ in range(repeats):
                started = time.perf_counter()
                cells = sum(len(cell_means(band, g).index) for g in grids)
                windowed.append(time.perf_counter() - started)
                started = time.perf_counter()
                band.reflectance(0, 0, band.grid.height, band.grid.width)
                whole.append(time.perf_counter() - started)
    return min(windowed), min(whole), cells


def measure_seviri(areas: int, repeats: int) -> tuple[float, float, int]:
    """The same for a SEVIRI native full disc (reads through the feed's byte-range reader)."""
    from datetime import UTC, datetime

    from eowatch.adapters.seviri import (
        HEADER_WITH_ARCHIVE,
        NativeHeader,
        native_cells,
        read_lines,
    )
    from tests.data.meteosat.seviri import write_native

    when = datetime(2025, 6, 2, 12, tzinfo=UTC)
    grid = np.add.outer(np.arange(3712) * 7, np.arange(3712) * 3) % 900 + 60
    with tempfile.TemporaryDirectory() as folder:
        path = write_native(Path(folder) / "full.nat", when, 1, 1, [grid] * 3,
                            (0.0232, 0.0296, 0.0228), (-1.18, -1.51, -1.16))
        with open(path, "rb") as file:
            def read(offset: int, length: int) -> bytes:
                file.seek(offset)
                return file.read(length)
            header = NativeHeader.parse(read(0, HEADER_WITH_ARCHIVE))
            rng = np.random.default_rng(0)
            grids = []
            while len(grids) < areas:
                lon, lat = rng.uniform(-50, 50), rng.uniform(-55, 55)
                grids.append(CellGrid.of(f"a{len(grids)}", shapely.box(
                    lon, lat, lon + 0.3, lat + 0.2), 2000))
            centres = []
            for g in grids:
                _, rows, cols = g.cells()
                lon, lat = transformer(g.epsg, 4326).transform(g.x0 + (cols + 0.5) * g.size,
                                                               g.y1 - (rows + 0.5) * g.size)
                centres.append((np.asarray(lon), np.asarray(lat)))
            windowed, whole = [], []
            cells = 0
            for _ in range(repeats):
                started = time.perf_counter()
                cells = 0
                for g, (lon, lat) in zip(grids, centres, strict=True):
                    found = native_cells(header, read, when, g, lon, lat)
                    cells += 0 if found is None else int(np.isfinite(found["valid"]).sum())
                windowed.append(time.perf_counter() - started)
                started = time.perf_counter()
                records = read_lines(header, read, slice(0, header.lines))
                header.reflectance(records, "VIS006", slice(0, header.columns), when)
                whole.append(time.perf_counter() - started)
    return min(windowed), min(whole), cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--areas", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rows = []
    for name, full_disk in (("RadC", False), ("RadF", True)):
        windowed, whole, cells = measure(full_disk, args.areas, args.repeats)
        rows.append([name, f"{args.areas} areas -> {cells} cell observations", f"{windowed:.3f}",
                     f"{whole:.3f}", f"{windowed / whole:.2f}"])
    windowed, whole, cells = measure_seviri(args.areas, args.repeats)
    rows.append(["SEVIRI native", f"{args.areas} areas -> {cells} cell observations",
                 f"{windowed:.3f}", f"{whole:.3f}", f"{windowed / whole:.2f}"])
    print_table(["file", "work", "windowed s (windows, calibration, geolocation, means)",
                 "whole band s (read and calibrate, no geolocation)", "windowed / whole"],
                rows)


if __name__ == "__main__":
    main()
