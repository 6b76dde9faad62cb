"""MSG SEVIRI Level 1.5 native files (``.nat``) in their real structure, written with satpy's
declaration of the format's records (``seviri_l1b_native_hdr``: the archive header, the
15_DATA_HEADER, the line records, the trailer): a region of interest of the 3 km grid holding
VIS0.6, VIS0.8 and NIR1.6, whose counts the test chooses."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np

GRID = 3712
STEP_KM = 3.0004031658172607
EPOCH = datetime(1958, 1, 1, tzinfo=UTC)   # of the format's day counts
BANDS = "XXX---------"


def _pack10(counts: np.ndarray) -> np.ndarray:
    """[n, 4k] counts -> [n, 5k] bytes, big-endian 10-bit words."""
    c = counts.astype(np.uint16).reshape(counts.shape[0], -1, 4)
    packed = np.stack([c[..., 0] >> 2,
                       ((c[..., 0] & 0x03) << 6) | (c[..., 1] >> 4),
                       ((c[..., 1] & 0x0F) << 4) | (c[..., 2] >> 6),
                       ((c[..., 2] & 0x3F) << 2) | (c[..., 3] >> 8),
                       c[..., 3] & 0xFF], axis=-1).astype(np.uint8)
    return packed.reshape(counts.shape[0], -1)


def _ascii(record: np.ndarray, name: str, value: str) -> None:
    record["Name"] = f"{name:<28}: ".encode()
    record["Value"] = f"{value:<49}\n".encode()


def _cds(record: np.ndarray, when: datetime) -> None:
    delta = when - EPOCH
    record["Days"] = delta.days
    record["Milliseconds"] = delta.seconds * 1000 + delta.microseconds // 1000


def write_native(path: Path, when: datetime, south: int, east: int, counts: list[np.ndarray],
                 slopes: tuple[float, float, float], offsets: tuple[float, float, float],
                 satellite: int = 324, ssp_lon: float = 0.0, offset_corrected: bool = True
                 ) -> Path:
    """A file of the rectangle whose south-east corner is (``south``, ``east``) (1-based,
    lines from the south, columns from the east) holding ``counts`` ([lines, columns], row 0
    the southernmost, column 0 the easternmost) of VIS0.6, VIS0.8 and NIR1.6."""
    from satpy.readers.core.eum import time_cds_short
    from satpy.readers.seviri_l1b_native_hdr import (
        GSDTRecords,
        get_native_header,
        native_trailer,
    )

    lines, columns = counts[0].shape
    assert columns % 4 == 0, "a native file's lines hold a multiple of 4 columns"
    header = np.zeros(1, get_native_header(True))
    main, secondary = header["15_MAIN_PRODUCT_HEADER"], header["15_SECONDARY_PRODUCT_HEADER"]
    _ascii(main["FormatName"], "FormatName", "NATIVE")
    _ascii(main["QQOV"], "QQOV", "OK")
    for name, value in {
            "SelectedBandIDs": BANDS, "SouthLineSelectedRectangle": south,
            "NorthLineSelectedRectangle": south + lines - 1,
            "EastColumnSelectedRectangle": east,
            "WestColumnSelectedRectangle": east + columns - 1,
            "NumberLinesVISIR": lines, "NumberColumnsVISIR": columns,
            "NumberLinesHRV": 3 * lines, "NumberColumnsHRV": 3 * columns}.items():
        _ascii(secondary[name], name, str(value))
    data = header["15_DATA_HEADER"]
    data["SatelliteStatus"]["SatelliteDefinition"]["SatelliteId"] = satellite
    data["SatelliteStatus"]["SatelliteDefinition"]["NominalLongitude"] = ssp_lon
    _cds(data["ImageAcquisition"]["PlannedAcquisitionTime"]["TrueRepeatCycleStart"], when)
    _cds(data["ImageAcquisition"]["PlannedAcquisitionTime"]["PlannedRepeatCycleEnd"], when)
    description = data["ImageDescription"]
    description["ProjectionDescription"]["TypeOfProjection"] = 1
    description["ProjectionDescription"]["LongitudeOfSSP"] = ssp_lon
    grid = description["ReferenceGridVIS_IR"]
    grid["NumberOfLines"] = grid["NumberOfColumns"] = GRID
    grid["LineDirGridStep"] = grid["ColumnDirGridStep"] = STEP_KM
    grid["GridOrigin"] = 2                  # the south-east corner, as in every MSG file
    calibration = data["RadiometricProcessing"]["Level15ImageCalibration"]
    calibration["CalSlope"][0, :3] = slopes
    calibration["CalOffset"][0, :3] = offsets
    earth = data["GeometricProcessing"]["EarthModel"]
    earth["TypeOfEarthModel"] = 2 if offset_corrected else 1
    earth["EquatorialRadius"] = 6378.169
    earth["NorthPolarRadius"] = earth["SouthPolarRadius"] = 6356.5838

    packet = np.dtype([("GP_PK_HEADER", GSDTRecords.gp_pk_header),
                       ("GP_PK_SH1", GSDTRecords.gp_pk_sh1)])
    line = np.dtype([("gp_pk", packet), ("version", np.uint8), ("satid", np.uint16),
                     ("time", (np.uint16, 5)), ("lineno", np.uint32), ("chan_id", np.uint8),
                     ("acq_time", time_cds_short), ("line_validity", np.uint8),
                     ("line_rquality", np.uint8), ("line_gquality", np.uint8),
                     ("line_data", (np.uint8, columns * 5 // 4))]).newbyteorder(">")
    records = np.zeros(lines, np.dtype([("visir", line, (3,))]))
    for k in range(3):
        channel = records["visir"][:, k]
        channel["satid"] = satellite
        channel["lineno"] = south + np.arange(lines)
        channel["chan_id"] = k + 1
        channel["line_validity"] = 3
        channel["line_data"] = _pack10(counts[k])
        delta = when - EPOCH
        channel["acq_time"]["Days"] = delta.days
        channel["acq_time"]["Milliseconds"] = delta.seconds * 1000
    trailer = np.zeros(1, native_trailer)
    scan = trailer["15TRAILER"]["ImageProductionStats"]["ActualScanningSummary"]
    _cds(scan["ForwardScanStart"], when)
    _cds(scan["ForwardScanEnd"], when)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(header.tobytes())
        out.write(records.tobytes())
        out.write(trailer.tobytes())
    return path


def native_name(when: datetime, satellite: int = 324) -> str:
    number = {321: 1, 322: 2, 323: 3, 324: 4}[satellite]
    return f"MSG{number}-SEVI-MSG15-0100-NA-{when:%Y%m%d%H%M%S}.000000000Z-NA.nat"
