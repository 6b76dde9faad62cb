"""MTG FCI L1C body chunks in the product's layout (FCI L1 PUG: ``data/<channel>/measured/``
effective radiance, packed scan angles, rows of the full disc, pixel quality, solar
irradiance; ``data/mtg_geos_projection``; ``state/celestial/earth_sun_distance``), and a local
EUMETSAT Data Store: the OAuth token endpoint (client credentials, Basic auth), the OpenSearch
product search (paged with ``si`` and ``c``; features with ``date`` and ``sip-entries``, the
shape the Data Store answers with) and entry downloads that need a live bearer token."""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlparse

import h5py
import numpy as np

COLUMNS = 11136                     # the 1 km full disc (FDHSI vis_06, nir_08, nir_16)
ROWS_PER_CHUNK = COLUMNS // 40
STEP = 2.7949e-05                   # radians per pixel
FIRST = (COLUMNS - 1) / 2 * STEP    # angle of the first column (west) and row (south)
SCALE = {"vis_06": 0.0153, "nir_08": 0.0083, "nir_16": 0.0035}   # radiance per count
IRRADIANCE = {"vis_06": 52.0, "nir_08": 31.0, "nir_16": 7.0}
EARTH_SUN_KM = 149597870.7 * 1.0084


def chunk_name(start: datetime, number: int) -> str:
    return ("W_XX-EUMETSAT-Darmstadt,IMG+SAT,MTI1+FCI-1C-RRAD-FDHSI-FD--CHK-BODY---NC4E_C_"
            f"EUMT_{start:%Y%m%d%H%M%S}_IDPFI_OPE_{start:%Y%m%d%H%M%S}_"
            f"{(start + timedelta(minutes=10)):%Y%m%d%H%M%S}_N__O_0072_{number:04d}.nc")


def write_chunk(path: Path, number: int,
                reflectance: Callable[[str, np.ndarray, np.ndarray], np.ndarray]) -> None:
    """Body chunk ``number`` (1-40, from the south) whose reflectance factor in each channel at
    the scan angles (x west-positive, y north-positive) is ``reflectance(channel, x, y)``."""
    first_row = (number - 1) * ROWS_PER_CHUNK + 1
    rows = np.arange(ROWS_PER_CHUNK)
    y = -FIRST + (first_row - 1 + rows) * STEP
    x = FIRST - np.arange(COLUMNS) * STEP
    factor = np.pi * (EARTH_SUN_KM / 149597870.7) ** 2
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        projection = f.create_dataset("data/mtg_geos_projection", data=np.int32(-2147483647))
        projection.attrs.update({
            "grid_mapping_name": "geostationary", "perspective_point_height": 35786400.0,
            "longitude_of_projection_origin": 0.0, "semi_major_axis": 6378137.0,
            "inverse_flattening": 298.257223563, "sweep_angle_axis": "y"})
        f.create_dataset("state/celestial/earth_sun_distance",
                         data=np.full(3, EARTH_SUN_KM, np.float64))
        for channel in ("vis_06", "nir_08", "nir_16"):
            group = f.create_group(f"data/{channel}/measured")
            ax, ay = np.meshgrid(x, y)
            value = reflectance(channel, ax, ay)
            counts = np.where(np.isfinite(value), np.round(
                value * IRRADIANCE[channel] / factor / SCALE[channel]), 65535)
            radiance = group.create_dataset(
                "effective_radiance", data=np.clip(counts, 0, 65535).astype(np.uint16),
                chunks=(ROWS_PER_CHUNK, 1392), compression="gzip")
            radiance.attrs.update({"scale_factor": SCALE[channel], "add_offset": 0.0,
                                   "valid_range": np.array([0, 4095], np.uint16),
                                   "_FillValue": np.uint16(65535),
                                   "units": "mW.m-2.sr-1.(cm-1)-1",
                                   "ancillary_variables": "pixel_quality"})
            quality = np.where(np.isfinite(value), 0, 3).astype(np.uint8)
            group.create_dataset("pixel_quality", data=quality, chunks=(ROWS_PER_CHUNK, 1392),
                                 compression="gzip")
            for name, angles in (("x", x), ("y", y)):
                scale = -STEP if name == "x" else STEP
                offset = angles[0]
                packed = group.create_dataset(name, data=np.round(
                    (angles - offset) / scale).astype(np.uint16))
                packed.attrs.update({"scale_factor": scale, "add_offset": offset,
                                     "units": "radian"})
            group.create_dataset("start_position_row", data=np.int32(first_row))
            group.create_dataset("end_position_row", data=np.int32(first_row + len(rows) - 1))
            group.create_dataset("channel_effective_solar_irradiance",
                                 data=np.float32(IRRADIANCE[channel]))


class DataStore:
    """The Data Store's token, search and download endpoints, on 127.0.0.1."""

    def __init__(self, root: Path, key: str = "consumer-key", secret: str = "consumer-secret",
                 collection: str = "EO:EUM:DAT:0662") -> None:
        self.root, self.key, self.secret, self.collection = root, key, secret, collection
        self.products: list[dict[str, Any]] = []
        self.tokens: dict[str, float] = {}     # token -> expiry (monotonic)
        self.token_seconds = 3600.0
        self.requests: list[tuple[str, str]] = []
        self.ranges = True                  # answer Range requests (206), as S3-backed stores do
        self.bytes_sent = 0
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> DataStore:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def add(self, start: datetime, files: list[Path], product: str | None = None) -> str:
        product = product or chunk_name(start, 0).replace("-CHK-BODY---", "--x-x---x"
                                                          ).rsplit("_", 1)[0]
        base = (f"{self.url}/data/download/1.0.0/collections/{quote(self.collection, '')}/"
                f"products/{quote(product, '')}")
        self.products.append({
            "type": "Feature", "id": product, "geometry": None,
            "properties": {
                "identifier": product, "parentIdentifier": self.collection,
                "title": product, "type": "Feature",
                "date": f"{start:%Y-%m-%dT%H:%M:%S}.000Z/"
                        f"{start + timedelta(minutes=10):%Y-%m-%dT%H:%M:%S}.000Z",
                "updated": f"{start + timedelta(minutes=12):%Y-%m-%dT%H:%M:%S}.000Z",
                "productInformation": {"size": sum(p.stat().st_size for p in files) // 1024},
                "links": {"data": [{"href": base, "mediaType": "application/zip",
                                    "title": "Product download"}],
                          "sip-entries": [{"title": p.name, "href": f"{base}/entry?name="
                                           f"{quote(p.name)}", "mediaType": "application/"
                                           "x-netcdf"} for p in files]}}})
        for path in files:
            target = self.root / product / path.name
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
        return product

    def expire_tokens(self) -> None:
        self.tokens = {t: 0.0 for t in self.tokens}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        store = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: object) -> None:
                pass

            def _send(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                url = urlparse(self.path)
                store.requests.append(("POST", url.path))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                expected = base64.b64encode(f"{store.key}:{store.secret}".encode()).decode()
                if url.path != "/token" or "grant_type=client_credentials" not in body:
                    self._send(400, b'{"error": "invalid_request"}', "application/json")
                elif self.headers.get("Authorization") != f"Basic {expected}":
                    self._send(401, b'{"error": "invalid_client"}', "application/json")
                else:
                    token = secrets.token_hex(16)
                    store.tokens[token] = time.monotonic() + store.token_seconds
                    self._send(200, json.dumps({
                        "access_token": token, "scope": "am_application_scope default",
                        "token_type": "Bearer", "expires_in": int(store.token_seconds)}
                    ).encode(), "application/json")

            def do_GET(self) -> None:
                url = urlparse(self.path)
                store.requests.append(("GET", url.path))
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if url.path == "/data/search-products/1.0.0/os":
                    self._search(query)
                elif url.path.startswith("/data/download/1.0.0/collections/"):
                    self._download(url.path, query)
                else:
                    self._send(404, b"not found", "text/plain")

            def _search(self, query: dict[str, str]) -> None:
                start, count = int(query.get("si", 0)), int(query.get("c", 10))
                since = datetime.fromisoformat(query["dtstart"].replace("Z", "+00:00"))
                until = datetime.fromisoformat(query["dtend"].replace("Z", "+00:00"))
                found = [p for p in store.products if query.get("pi") == store.collection
                         and since <= datetime.fromisoformat(p["properties"]["date"].split(
                             "/")[0].replace("Z", "+00:00")) <= until]
                page = found[start:start + count]
                self._send(200, json.dumps({
                    "type": "FeatureCollection",
                    "properties": {"totalResults": len(found), "startIndex": start,
                                   "itemsPerPage": count},
                    "features": page}).encode(), "application/json")

            def _download(self, path: str, query: dict[str, str]) -> None:
                auth = self.headers.get("Authorization", "")
                token = auth.removeprefix("Bearer ")
                if not auth.startswith("Bearer ") or store.tokens.get(token, 0) < \
                        time.monotonic():
                    self._send(401, b'{"message": "Invalid Credentials"}', "application/json")
                    return
                product = re.search(r"/products/([^/]+)/entry$", path)
                name = query.get("name", "")
                file = store.root / unquote(product[1] if product else "") / name
                if not product or not name or not file.is_file():
                    self._send(404, b"no such entry", "text/plain")
                    return
                body = file.read_bytes()
                ranged = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                if ranged and store.ranges:
                    start, end = int(ranged[1]), min(int(ranged[2]), len(body) - 1)
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
                    self.send_header("Content-Length", str(max(0, end - start + 1)))
                    self.end_headers()
                    self.wfile.write(body[start:end + 1])
                    store.bytes_sent += max(0, end - start + 1)
                    return
                store.bytes_sent += len(body)
                self._send(200, body, "application/octet-stream")

        return Handler
