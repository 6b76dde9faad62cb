"""MSG SEVIRI Level 1.5 in the native format (``.nat``): the header fields reflectance and
geolocation need, the image lines over areas, 10-bit counts to radiance to reflectance factor.
The reading half of the Meteosat feed for the MSG satellites.

Layout (EUMETSAT, "MSG Level 1.5 Native Format File Definition"; the same records satpy's
``seviri_l1b_native`` reader declares): an optional ASCII archive header (the main product
header, 3,674 bytes, and the secondary one, 1,440: which bands and which rectangle of the
3,712 × 3,712 VIS/IR grid the file holds), a packet header (38 bytes), the 15_DATA_HEADER
(445,248 bytes), one record per image line from south to north, then the trailer. A line record
holds a line of each selected channel in channel order (three HRV lines after them when HRV is
selected), each a 65-byte line header and the counts packed in 10 bits, from east to west.

From the data header the reader takes the satellite, the sub-satellite longitude, the grid
step, the earth model (and whether the data carry the 1.5 km offset corrected in December 2017)
and the calibration: radiance = slope · count + offset, count 0 being no data. Reflectance
factor = π · L · d² / E, E the band's solar irradiance (EUMETSAT, "Conversion from radiances
to reflectances for SEVIRI warm channels"), d the Earth–Sun distance in AU. Only the lines over
the areas are read (from a file, or by HTTP range requests), and of them only the columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from eowatch.cells import CellGrid
from eowatch.errors import EowatchError
from eowatch.geometry import transformer
from eowatch.solar import earth_sun_distance

from .pixels import clear_means, projected

ARCHIVE_MARK = b"FormatName                  : NATIVE"
MAIN_HEADER, SECONDARY_HEADER, PACKET_HEADER, DATA_HEADER = 3674, 1440, 38, 445248
HEADER_WITH_ARCHIVE = MAIN_HEADER + SECONDARY_HEADER + PACKET_HEADER + DATA_HEADER
LINE_HEADER = 65
GRID = 3712                      # lines and columns of the full VIS/IR disc
HEIGHT_M = 35785831.0            # the satellite's height above the equator (geos' h)
# offsets in the 15_DATA_HEADER (its record layout; checked against satpy's in the tests)
SATELLITE_ID, SSP_LONGITUDE, REFERENCE_GRID = 1, 386894, 386898
CALIBRATION, EARTH_MODEL = 387066, 408145
CHANNELS = ("VIS006", "VIS008", "IR_016", "IR_039", "WV_062", "WV_073", "IR_087", "IR_097",
            "IR_108", "IR_120", "IR_134", "HRV")
BANDS = {"red": "VIS006", "nir": "VIS008", "swir": "IR_016"}
# π × band solar irradiance (mW m-2 (cm-1)-1) of VIS0.6, VIS0.8 and NIR1.6 per satellite
IRRADIANCE = {321: (65.2296, 73.0127, 62.3715),    # Meteosat-8
              322: (65.2065, 73.1869, 61.9923),    # Meteosat-9
              323: (65.5148, 73.1807, 62.0208),    # Meteosat-10
              324: (65.2656, 73.1692, 61.9416)}    # Meteosat-11
CLOUD_RED = 0.3                  # as FCI: Level 1.5 carries no cloud mask


class SeviriError(EowatchError, ValueError):
    """A file that cannot be read as SEVIRI Level 1.5 native."""


def _archive_values(block: bytes) -> dict[str, str]:
    """The secondary product header's records: 30 characters of name (with its colon), 50 of
    value."""
    values = {}
    for start in range(0, len(block) - 79, 80):
        name = block[start:start + 30].decode("ascii", "replace").split(":")[0].strip()
        values[name] = block[start + 30:start + 80].decode("ascii", "replace").strip()
    return values


@dataclass(frozen=True)
class NativeHeader:
    satellite: int
    ssp_lon: float
    column_step_m: float
    line_step_m: float
    offset_corrected: bool
    a: float
    b: float
    slopes: np.ndarray               # [12] per channel
    offsets: np.ndarray
    selected: str                    # 12 characters, X: the channel is in the file
    south: int                       # the rectangle, in lines (from the south) and columns
    east: int                        # (from the east) of the full disc, 1-based
    lines: int
    columns: int                     # per VIS/IR line in the file (a multiple of 4)
    hrv_columns: int
    size: int                        # bytes before the first line record

    @classmethod
    def parse(cls, head: bytes) -> NativeHeader:
        """The header from the file's first ``HEADER_WITH_ARCHIVE`` bytes (or fewer, for a
        file without an archive header)."""
        archive = head.startswith(ARCHIVE_MARK)
        size = HEADER_WITH_ARCHIVE if archive else HEADER_WITH_ARCHIVE - MAIN_HEADER \
            - SECONDARY_HEADER
        if len(head) < size:
            raise SeviriError(f"{len(head)} bytes: shorter than a native header ({size})")
        data = size - DATA_HEADER

        def field(offset: int, dtype: str, count: int = 1) -> np.ndarray:
            return np.frombuffer(head, dtype, count, data + offset)

        if archive:
            values = _archive_values(head[MAIN_HEADER:MAIN_HEADER + SECONDARY_HEADER])
            try:
                selected = values["SelectedBandIDs"]
                south, north = (int(values[k]) for k in ("SouthLineSelectedRectangle",
                                                         "NorthLineSelectedRectangle"))
                east, west = (int(values[k]) for k in ("EastColumnSelectedRectangle",
                                                       "WestColumnSelectedRectangle"))
                lines, columns = int(values["NumberLinesVISIR"]), \
                    int(values["NumberColumnsVISIR"])
                hrv = int(values["NumberColumnsHRV"])
            except (KeyError, ValueError) as exc:
                raise SeviriError(f"the secondary product header lacks {exc}") from None
        else:  # without an archive header the file is a whole disc of every channel
            selected, south, north, east, west = "X" * 12, 1, GRID, 1, GRID
            lines, columns, hrv = GRID, GRID, 11136
        if len(selected) != 12 or set(selected) - {"X", "-"}:
            raise SeviriError(f"selected bands {selected!r} are not 12 of X and -")
        if not (1 <= south <= north <= GRID and 1 <= east <= west <= GRID) or lines <= 0:
            raise SeviriError(f"rectangle lines {south}-{north}, columns {east}-{west} is not "
                              f"in the {GRID} × {GRID} grid")
        satellite = int(field(SATELLITE_ID, ">u2")[0])
        grid = np.frombuffer(head, np.dtype([("lines", ">i4"), ("columns", ">i4"),
                                             ("line_step", ">f4"), ("column_step", ">f4"),
                                             ("origin", "u1")]), 1, data + REFERENCE_GRID)[0]
        if int(grid["origin"]) != 2:
            raise SeviriError(f"grid origin {int(grid['origin'])}: only the south-east corner "
                              "(2), the format's, is read")
        calibration = field(CALIBRATION, ">f8", 24).reshape(12, 2)
        model = int(field(EARTH_MODEL, "u1")[0])
        radii = field(EARTH_MODEL + 1, ">f8", 3) * 1000.0
        if not (np.isfinite(radii).all() and 6.3e6 < radii[0] < 6.4e6):
            raise SeviriError(f"the earth model's radii {radii.tolist()} are not the Earth's")
        step_c, step_l = float(grid["column_step"]) * 1000, float(grid["line_step"]) * 1000
        if not (2900 < step_c < 3100 and 2900 < step_l < 3100):
            raise SeviriError(f"grid steps {step_c} m, {step_l} m are not the 3 km grid")
        hrv_columns = hrv if west - east + 1 < GRID else hrv // 2
        return cls(satellite, float(field(SSP_LONGITUDE, ">f4")[0]), step_c, step_l,
                   model == 2, float(radii[0]), float((radii[1] + radii[2]) / 2),
                   calibration[:, 0].copy(), calibration[:, 1].copy(), selected, south, east,
                   lines, columns, hrv_columns, size)

    @property
    def visir(self) -> list[str]:
        return [c for c, x in zip(CHANNELS[:11], self.selected, strict=False) if x == "X"]

    @property
    def line_size(self) -> int:
        size = len(self.visir) * (LINE_HEADER + self.columns * 5 // 4)
        if self.selected[11] == "X":
            size += 3 * (LINE_HEADER + self.hrv_columns * 5 // 4)
        return size

    def channel_at(self, channel: str) -> int:
        """The byte offset of ``channel``'s line in a line record."""
        if channel not in self.visir:
            raise SeviriError(f"the file holds no {channel} (selected bands {self.selected})")
        return self.visir.index(channel) * (LINE_HEADER + self.columns * 5 // 4)

    @property
    def proj4(self) -> str:
        return (f"+proj=geos +h={HEIGHT_M} +lon_0={self.ssp_lon} +a={self.a} +b={self.b} "
                "+units=m +no_defs")

    def scan_xy(self, lines: np.ndarray, columns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Projection metres (x east, y north) of the centres of file lines and columns
        (0-based). The sub-satellite point is the centre of the grid's 1856th line and column
        (Level 1.5 Image Data Format Description, figure 7); data from before the correction
        of December 2017 sit half a pixel further north and west."""
        line = self.south + np.asarray(lines, np.float64)          # 1-based, from the south
        column = self.east + np.asarray(columns, np.float64)       # 1-based, from the east
        shift = 0.0 if self.offset_corrected else 0.5
        return (GRID / 2 - column + shift) * self.column_step_m, \
            (line - GRID / 2 - shift) * self.line_step_m

    def lonlat(self, lines: slice, columns: slice) -> tuple[np.ndarray, np.ndarray]:
        x, y = self.scan_xy(np.arange(lines.start, lines.stop), np.arange(columns.start,
                                                                          columns.stop))
        gx, gy = np.meshgrid(x, y)
        lon, lat = transformer(self.proj4, "EPSG:4326").transform(gx, gy)
        lon, lat = np.asarray(lon, float), np.asarray(lat, float)
        off = ~np.isfinite(lon) | ~np.isfinite(lat) | (np.abs(lon) > 360)
        return np.where(off, np.nan, lon), np.where(off, np.nan, lat)

    def window_of(self, lon: np.ndarray, lat: np.ndarray, margin: int = 2
                  ) -> tuple[slice, slice] | None:
        """(lines, columns) of the file covering the points, or None when none is in it."""
        px, py = transformer("EPSG:4326", self.proj4).transform(lon, lat)
        px, py = np.asarray(px, float), np.asarray(py, float)
        seen = np.isfinite(px) & np.isfinite(py) & (np.abs(px) < 1e20)
        if not seen.any():
            return None
        shift = 0.0 if self.offset_corrected else 0.5
        columns = GRID / 2 + shift - px[seen] / self.column_step_m - self.east
        lines = py[seen] / self.line_step_m + GRID / 2 + shift - self.south
        l0 = max(int(np.floor(lines.min())) - margin, 0)
        l1 = min(int(np.ceil(lines.max())) + margin + 1, self.lines)
        c0 = max(int(np.floor(columns.min())) - margin, 0)
        c1 = min(int(np.ceil(columns.max())) + margin + 1, self.columns)
        return (slice(l0, l1), slice(c0, c1)) if l1 > l0 and c1 > c0 else None

    def reflectance(self, records: np.ndarray, channel: str, columns: slice, when: datetime
                    ) -> tuple[np.ndarray, np.ndarray]:
        """(reflectance factor, valid) of ``columns`` of one channel in line ``records``
        ([lines, line_size] uint8)."""
        at = self.channel_at(channel) + LINE_HEADER
        first, last = columns.start // 4 * 4, -(-columns.stop // 4) * 4    # whole 5-byte groups
        packed = records[:, at + first * 5 // 4:at + last * 5 // 4]
        counts = unpack10(packed)[:, columns.start - first:columns.stop - first]
        index = CHANNELS.index(channel)
        radiance = self.slopes[index] * counts + self.offsets[index]
        irradiance = IRRADIANCE.get(self.satellite)
        if irradiance is None:
            raise SeviriError(f"satellite id {self.satellite} is not a Meteosat of the second "
                              f"generation ({sorted(IRRADIANCE)})")
        factor = np.pi * earth_sun_distance(when) ** 2 / irradiance[index]
        return radiance * factor, counts > 0


def unpack10(packed: np.ndarray) -> np.ndarray:
    """[..., 5k] bytes of big-endian 10-bit counts -> [..., 4k] counts."""
    b = packed.reshape(*packed.shape[:-1], -1, 5).astype(np.uint16)
    counts = np.stack([(b[..., 0] << 2) | (b[..., 1] >> 6),
                       ((b[..., 1] & 0x3F) << 4) | (b[..., 2] >> 4),
                       ((b[..., 2] & 0x0F) << 6) | (b[..., 3] >> 2),
                       ((b[..., 3] & 0x03) << 8) | b[..., 4]], axis=-1)
    return counts.reshape(*packed.shape[:-1], -1)


Reader = Callable[[int, int], bytes]   # (offset, length) -> the file's bytes


def read_lines(header: NativeHeader, read: Reader, lines: slice) -> np.ndarray:
    """[lines, line_size] uint8: the line records of ``lines`` (one read)."""
    count = lines.stop - lines.start
    data = read(header.size + lines.start * header.line_size, count * header.line_size)
    if len(data) != count * header.line_size:
        raise SeviriError(f"lines {lines.start}-{lines.stop - 1}: {len(data)} bytes of "
                          f"{count * header.line_size} (a truncated file)")
    return np.frombuffer(data, np.uint8).reshape(count, header.line_size)


def native_cells(header: NativeHeader, read: Reader, when: datetime, grid: CellGrid,
                 lon: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray] | None:
    """Over ``grid``'s cells (``lon``, ``lat``: their centres): red, NIR and SWIR reflectance
    of the clear pixels (the CLOUD_RED test), the clear share and the valid share; None when
    the area is not in the file."""
    reach = grid.size / 111_000.0
    window = header.window_of(np.concatenate([lon - reach, lon + reach]),
                              np.concatenate([lat - reach, lat + reach]))
    if window is None:
        return None
    lines, columns = window
    records = read_lines(header, read, lines)
    read_bands = {name: header.reflectance(records, channel, columns, when)
                  for name, channel in BANDS.items()}
    x, y, on_earth = projected(*header.lonlat(lines, columns), grid.epsg)
    valid = on_earth & np.all([v for _, v in read_bands.values()], axis=0)
    return clear_means(x, y, {name: read_bands[name][0] for name in BANDS},
                       valid & (read_bands["red"][0] <= CLOUD_RED), valid, on_earth, grid)
