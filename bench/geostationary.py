"""Seconds to turn one GOES ABI RadC file into cell observations for 10 areas, against reading
the whole band array, in the same run.

    python bench/geostationary.py [--areas 10] [--repeats 5]

The file is written by the GOES test kit from the real RadC header (1500 x 2500 pixels at
2 km, chunked 226 x 226, compressed) with DN over the whole image; areas are 30 x 20 km boxes
spread over the CONUS sector, in 2 km cells. Local file, warm page cache.
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
from tests.data.goes import write_abi  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--areas", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "abi.nc"
        write_abi(path, lambda r, c: ((r * 7 + c * 3) % 4000).astype(np.uint16))
        with open_band(str(path)) as band:
            rng = np.random.default_rng(0)
            grids = []
            for k in range(args.areas):
                row, col = rng.integers(200, 1300), rng.integers(300, 2200)
                lon, lat = band.grid.lonlat(np.array([float(row)]), np.array([float(col)]))
                grids.append(CellGrid.of(f"a{k}", shapely.box(lon[0], lat[0], lon[0] + 0.3,
                                                              lat[0] + 0.2), 2000))
            windowed, whole = [], []
            for _ in range(args.repeats):
                started = time.perf_counter()
                cells = sum(len(cell_means(band, g).index) for g in grids)
                windowed.append(time.perf_counter() - started)
                started = time.perf_counter()
                band.reflectance(0, 0, band.grid.height, band.grid.width)
                whole.append(time.perf_counter() - started)
    best_windowed, best_whole = min(windowed), min(whole)
    print_table(["measure", "seconds"], [
        [f"{args.areas} areas -> {cells} cell observations (windows, calibration, geolocation, "
         "means)", f"{best_windowed:.3f}"],
        ["reading the whole band array and calibrating it (no geolocation)",
         f"{best_whole:.3f}"],
        ["windowed / whole", f"{best_windowed / best_whole:.2f}"]])


if __name__ == "__main__":
    main()
