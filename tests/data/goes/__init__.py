"""ABI L1b files written from the real header in ../shared/fixtures (the serving half is the
Sentinel-2 kit's server: it serves any file under ``cogs/`` with range requests).

``write_abi`` parses the CDL header of a real GOES-16 RadC file (variables, their types, shapes
and attributes: scale factors, fill values, ``_Unsigned``, ``goes_imager_projection``) and writes
a netCDF-4 file with them (h5netcdf), chunked as ABI files are, with DN chosen per pixel. The
header is an emissive band's (C13); a reflective band's file adds ``kappa0`` and ``esun``, so
the kit writes those too (``band``: the band id written)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from tests.conftest import SHARED

HEADER = SHARED / "fixtures" / "goes16_abi_l1b_RadC_M3C13_header.cdl"
TYPES = {"short": np.int16, "byte": np.int8, "int": np.int32, "float": np.float32,
         "double": np.float64}
VARIABLES = ("Rad", "DQF", "t", "y", "x", "goes_imager_projection", "band_id")


def parse_cdl(text: str) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """(dimensions, variables: type, dims, attrs) of an ``ncdump -h`` header."""
    dims = {m[1]: int(m[2]) for m in re.finditer(r"^\t(\w+) = (\d+) ;", text, re.M)}
    variables: dict[str, dict[str, Any]] = {}
    for m in re.finditer(r"^\t(\w+) (\w+)(?:\(([^)]*)\))? ;", text, re.M):
        variables[m[2]] = {"type": m[1], "dims": [d.strip() for d in (m[3] or "").split(",")
                                                  if d.strip()], "attrs": {}}
    for m in re.finditer(r"^\t\t(\w+):(\w+) = (.*) ;$", text, re.M):
        if m[1] in variables:
            variables[m[1]]["attrs"][m[2]] = _value(m[3], variables[m[1]]["type"])
    return dims, variables


def _value(text: str, kind: str) -> Any:
    """An attribute value with the type its CDL suffix gives (f float, s short, b byte; a
    number with a point or exponent and no suffix is a double, without one an int)."""
    if text.startswith('"'):
        return text.strip('"')
    numbers = [n.strip() for n in text.split(",")]
    last = numbers[-1]
    if last.endswith("f"):
        dtype: Any = np.float32
    elif last.endswith("s"):
        dtype = np.int16
    elif last.endswith("b"):
        dtype = np.int8
    elif any(c in last for c in ".eE"):
        dtype = np.float64
    else:
        dtype = np.int32
    values = np.array([float(n.rstrip("fsbL")) for n in numbers]).astype(dtype)
    return values[0] if len(values) == 1 else values


# the full disk (RadF) at 2 km: the CONUS header's variables on the full disk's fixed grid
FULL_DISK = {"size": 5424, "x_offset": -0.151844, "y_offset": 0.151844}


def header(full_disk: bool = False) -> tuple[dict[str, int], dict[str, dict[str, Any]]]:
    """The real header's dimensions and variables; ``full_disk``: moved onto the 2 km full
    disk's grid (5424 x 5424, scan angles ±0.151844 rad, as RadF files have)."""
    dims, variables = parse_cdl(HEADER.read_text())
    if full_disk:
        dims = {**dims, "y": FULL_DISK["size"], "x": FULL_DISK["size"]}
        variables["x"]["attrs"]["add_offset"] = np.float32(FULL_DISK["x_offset"])
        variables["y"]["attrs"]["add_offset"] = np.float32(FULL_DISK["y_offset"])
    return dims, variables


def write_abi(path: Path, dn: Callable[[np.ndarray, np.ndarray], np.ndarray], band: int = 3,
              seconds_since_2000: float = 8.1e8, kappa0: float | None = 0.0018,
              esun: float = 1631.3, full_disk: bool = False) -> dict[str, Any]:
    """Write an ABI L1b file (CONUS, or ``full_disk``) whose DN at (rows, cols) is
    ``dn(rows, cols)`` (4095 = fill); returns the header's variables (as parsed)."""
    import h5netcdf

    dims, variables = header(full_disk)
    height, width = dims["y"], dims["x"]
    rows, cols = np.mgrid[0:height, 0:width]
    values = np.asarray(dn(rows, cols), np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"y": height, "x": width, "band": 1}
        for name in VARIABLES:
            var = _header_variable(f, name, variables[name], width, height,
                                   seconds_since_2000)
            if name == "Rad":
                var[...] = values.view(np.int16)
            elif name == "DQF":
                var[...] = np.where(values == 4095, 3, 0).astype(np.int8)
            elif name == "band_id":
                var[...] = np.array([band], np.int8)
        if kappa0 is not None:
            for name, value in (("kappa0", kappa0), ("esun", esun)):
                var = f.create_variable(name, (), np.float32)
                var[...] = value
    return variables


def _header_variable(f: Any, name: str, spec: dict[str, Any], width: int, height: int,
                     seconds_since_2000: float) -> Any:
    """A variable as the header declares it (type, dimensions, fill, attributes; images
    chunked as ABI files are), holding the fixed grid's values when it is ``x``, ``y`` or
    ``t``."""
    chunks = (226, 226) if spec["dims"] == ["y", "x"] else None
    var = f.create_variable(name, tuple(spec["dims"]), TYPES[spec["type"]], chunks=chunks,
                            compression="gzip" if chunks else None,
                            fillvalue=spec["attrs"].get("_FillValue"))
    for key, value in spec["attrs"].items():
        if key != "_FillValue":
            var.attrs[key] = value
    if name == "x":
        var[...] = np.arange(width, dtype=np.int16)
    elif name == "y":
        var[...] = np.arange(height, dtype=np.int16)
    elif name == "t":
        var[...] = seconds_since_2000
    return var


def write_mask(path: Path, bcm: Callable[[np.ndarray, np.ndarray], np.ndarray],
               seconds_since_2000: float = 8.1e8, full_disk: bool = False) -> None:
    """Write an ABI L2 clear-sky mask (ACM) on the header's fixed grid (the CONUS 2 km grid of
    ABI-L2-ACMC) whose binary cloud mask at (rows, cols) is ``bcm(rows, cols)`` (0 clear,
    1 cloudy, 255 fill), with the variables and attributes of the product (GOES-R PUG L2+,
    vol. 5: ``BCM`` byte, ``_Unsigned``, fill 255, flag values 0 and 1)."""
    import h5netcdf

    dims, variables = header(full_disk)
    height, width = dims["y"], dims["x"]
    rows, cols = np.mgrid[0:height, 0:width]
    values = np.asarray(bcm(rows, cols), np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"y": height, "x": width}
        for name in ("t", "y", "x", "goes_imager_projection"):
            _header_variable(f, name, variables[name], width, height, seconds_since_2000)
        var = f.create_variable("BCM", ("y", "x"), np.int8, chunks=(250, 250),
                                compression="gzip", fillvalue=np.int8(-1))
        var.attrs.update({"long_name": "ABI L2+ Clear Sky Mask",
                          "standard_name": "cloud_binary_mask", "_Unsigned": "true",
                          "valid_range": np.array([0, 1], np.int8),
                          "units": "1", "flag_values": np.array([0, 1], np.int8),
                          "flag_meanings": "clear_or_probably_clear cloudy_or_probably_cloudy",
                          "grid_mapping": "goes_imager_projection"})
        var[...] = values.view(np.int8)
        dqf = f.create_variable("DQF", ("y", "x"), np.int8, chunks=(250, 250),
                                compression="gzip", fillvalue=np.int8(-1))
        dqf[...] = np.where(values == 255, 1, 0).astype(np.int8)
