"""Reading windows of cloud-optimised GeoTIFFs, local or over HTTP, with GDAL set up once.

Every raster read of the feeds goes through ``gdal_env``: the options below are the ones that
make /vsicurl/ fast and robust on object stores (no directory listing on open, a block cache,
retries with back-off on 5xx and timeouts, merged range requests).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.session import Session
from rasterio.windows import Window

from eowatch.errors import EowatchError

GDAL_OPTIONS: dict[str, str | int] = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",   # no listing of the asset's "directory"
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.TIFF,.jp2,.JP2",  # JP2: CDSE
    "GDAL_HTTP_MAX_RETRY": "4",                     # 429/5xx and connection errors
    "GDAL_HTTP_RETRY_DELAY": "0.5",                 # seconds, doubled on each retry
    "GDAL_HTTP_TIMEOUT": "30",
    "GDAL_HTTP_CONNECTTIMEOUT": "10",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIPLEX": "YES",
    "GDAL_CACHEMAX": 256,                           # MB of decoded blocks
    "VSI_CACHE": "TRUE",
    "VSI_CACHE_SIZE": "67108864",                   # bytes of raw ranges per open file
    "CPL_VSIL_CURL_CACHE_SIZE": "134217728",
}


class RasterError(EowatchError, RuntimeError):
    """An asset that cannot be read (missing, truncated, not a raster, wrong CRS)."""


@contextmanager
def gdal_env(extra: Mapping[str, str] | None = None, session: Session | None = None
             ) -> Iterator[None]:
    """GDAL set up for reading assets; ``extra`` and ``session``: a source's options (its S3
    endpoint) and credentials."""
    with rasterio.Env(session=session, **{**GDAL_OPTIONS, **(extra or {})}):
        yield


def gdal_path(href: str) -> str:
    """What GDAL opens for an asset href: http(s) through /vsicurl/, s3:// through /vsis3/."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return "/vsis3/" + href[len("s3://"):]
    return href


class Raster:
    """One open single-band raster; windows outside it read as its nodata value."""

    def __init__(self, href: str) -> None:
        self.href = href
        try:
            self.dataset = rasterio.open(gdal_path(href))
        except RasterioError as exc:
            raise RasterError(f"{href}: cannot open ({exc})") from None
        self.transform: Affine = self.dataset.transform
        self.crs = self.dataset.crs
        self.nodata = self.dataset.nodata if self.dataset.nodata is not None else 0
        self.resolution = float(self.transform.a)

    def __enter__(self) -> Raster:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.dataset.close()

    def read(self, row: int, col: int, height: int, width: int) -> np.ndarray:
        """The pixels [row, row+height) × [col, col+width) of the raster's grid; the part
        outside the raster is nodata."""
        out = np.full((height, width), self.nodata, dtype=self.dataset.dtypes[0])
        r0, c0 = max(row, 0), max(col, 0)
        r1 = min(row + height, self.dataset.height)
        c1 = min(col + width, self.dataset.width)
        if r1 <= r0 or c1 <= c0:
            return out
        try:
            out[r0 - row:r1 - row, c0 - col:c1 - col] = self.dataset.read(
                1, window=Window(c0, r0, c1 - c0, r1 - r0))
        except RasterioError as exc:
            raise RasterError(f"{self.href}: read failed ({exc})") from None
        return out
