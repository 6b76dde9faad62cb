"""The `meteosat` feed: MTG FCI L1C or MSG SEVIRI Level 1.5 full discs from the EUMETSAT Data
Store, per coarse cell of the registered areas.

Each poll searches the collection (``EO:EUM:DAT:0662``, FCI L1C FDHSI) with the Data Store's
OpenSearch API (``search-products/1.0.0/os``, anonymous, paged with ``si`` and ``c``) for the
repeat cycles since the cursor. Each product lists its files (``sip-entries``): 40 body chunks,
bands of rows from south to north. Only the chunks over the areas are downloaded, with a bearer
token from the Data Store's OAuth endpoint (client credentials: the consumer key and secret of
an EUMETSAT account, from settings or a JSON file; never logged); each is read as
adapters/fci.py says, and per cell the feed publishes red (0.64 µm), NIR (0.865 µm) and SWIR
(1.61 µm) reflectance of the clear pixels, the red/SWIR water index, the clear share, the solar
zenith angle and the sensor (mtg-fci).

With ``product = seviri`` it reads the MSG satellites' SEVIRI Level 1.5 instead
(``EO:EUM:DAT:MSG:HRSEVIRI``): one native file per repeat cycle (adapters/seviri.py), of which
the header and the lines over the areas are fetched with HTTP range requests, or, where the
server answers a range request with the whole file, from a download deleted after the read;
per cell the same measures (0.6, 0.8 and 1.6 µm) and the sensor msg-seviri.

Credentials that are missing or refused stop the poll with a clear error, counted as
``eowatch_feed_errors_total{stage="auth"}``; an expired token is renewed once per request.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import requests
from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from eowatch.contract.feeds import (
    FeedContext,
    FeedHost,
    FeedMetrics,
    FeedSpec,
)
from eowatch.contract.messages import ObservationChunk
from eowatch.errors import EowatchError
from eowatch.models.flood_geo import GEO_BANDS

from .fci import Chunk, FciError, chunk_cells, chunk_number
from .geo_cells import CoarseArea, coarse_areas, geo_chunks, geo_rows, water_index
from .hdf5 import open_hdf5
from .http import fetch, retrying_session
from .item_feed import (
    ItemError,
    ItemFeed,
    ListingError,
    MetadataError,
    Polling,
    PollingSettings,
)
from .seviri import HEADER_WITH_ARCHIVE, NativeHeader, Reader, SeviriError, native_cells

log = logging.getLogger(__name__)
FEED = "meteosat"
FCI_COLLECTION = "EO:EUM:DAT:0662"
SEVIRI_COLLECTION = "EO:EUM:DAT:MSG:HRSEVIRI"
BODY = re.compile(r"CHK-BODY.*_(?P<chunk>\d{4})\.nc$")


class TokenError(EowatchError, RuntimeError):
    """The Data Store gave no token: credentials missing, refused, or the endpoint down."""

    stage = "auth"


@dataclass
class DataStoreAuth:
    """Bearer tokens from the Data Store's OAuth endpoint (client credentials), kept until a
    minute before they expire."""

    token_url: str
    key: SecretStr | None
    secret: SecretStr | None
    session: requests.Session
    timeout: float = 30.0
    _token: str | None = None
    _expires: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def token(self, renew: bool = False) -> str:
        with self._lock:
            if renew or self._token is None or time.monotonic() >= self._expires:
                self._token, self._expires = self._new()
            return self._token

    def _new(self) -> tuple[str, float]:
        if not self.key or not self.secret:
            raise TokenError("the EUMETSAT Data Store needs an account's consumer key and "
                             "secret: set EOWATCH_METEOSAT_CONSUMER_KEY and "
                             "EOWATCH_METEOSAT_CONSUMER_SECRET, or "
                             "EOWATCH_METEOSAT_CREDENTIALS_FILE")
        try:
            response = self.session.post(
                self.token_url, data={"grant_type": "client_credentials"},
                auth=(self.key.get_secret_value(), self.secret.get_secret_value()),
                timeout=self.timeout)
        except requests.RequestException as exc:
            raise TokenError(f"token endpoint {self.token_url}: {exc}") from None
        if response.status_code in (400, 401, 403):
            raise TokenError(f"the EUMETSAT Data Store refused the credentials "
                             f"(HTTP {response.status_code} from {self.token_url})")
        try:
            response.raise_for_status()
            body = response.json()
            return str(body["access_token"]), \
                time.monotonic() + float(body.get("expires_in", 3600)) - 60
        except (requests.RequestException, ValueError, KeyError) as exc:
            raise TokenError(f"token endpoint {self.token_url}: no token in its answer "
                             f"({exc.__class__.__name__})") from None


@dataclass(frozen=True)
class Product:
    """One repeat cycle as the Data Store lists it: its files by name."""

    id: str
    datetime: datetime
    entries: dict[str, str]          # file name -> download href

    def chunks(self) -> dict[int, str]:
        """Body chunk number -> file name."""
        found = {}
        for name in self.entries:
            match = BODY.search(name)
            if match:
                found[int(match["chunk"])] = name
        return found


def parse_products(body: dict[str, Any]) -> list[Product]:
    """The products of one page of an OpenSearch answer."""
    products = []
    for feature in body.get("features", []):
        try:
            props = feature["properties"]
            start = datetime.fromisoformat(props["date"].split("/")[0].replace("Z", "+00:00"))
            entries = {e["title"]: e["href"] for e in props["links"]["sip-entries"]}
            products.append(Product(str(feature["id"]), start.astimezone(UTC), entries))
        except (KeyError, TypeError, ValueError) as exc:
            raise ListingError(f"a Data Store product without a usable date or file list "
                               f"({exc!r})") from None
    return products


@dataclass(frozen=True)
class MeteosatConfig:
    api_url: str = "https://api.eumetsat.int"
    collection: str = FCI_COLLECTION
    page_size: int = 100
    product: Literal["fci", "seviri"] = "fci"
    timeout_seconds: float = 60.0

    @property
    def token_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/token"

    @property
    def search_url(self) -> str:
        return f"{self.api_url.rstrip('/')}/data/search-products/1.0.0/os"


class MeteosatFeed(ItemFeed):
    name = FEED
    band_names = GEO_BANDS
    targets = "cells"

    def __init__(self, host: FeedHost, shards: int, config: MeteosatConfig,
                 auth: DataStoreAuth, polling: Polling, interval_seconds: float,
                 metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(host, polling, interval_seconds, metrics, now)
        self.shards, self.config, self.auth = shards, config, auth
        self.session = auth.session

    def items(self, since: datetime) -> list[Product]:
        """The repeat cycles that began at or after ``since``, oldest first, every page."""
        found: list[Product] = []
        start = 0
        while True:
            query = {"format": "json", "pi": self.config.collection,
                     "dtstart": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "dtend": self.now().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                     "si": str(start), "c": str(self.config.page_size)}
            url = f"{self.config.search_url}?{urllib.parse.urlencode(query)}"
            try:
                body = json.loads(fetch(self.session, url, self.config.timeout_seconds))
            except ValueError as exc:
                raise ListingError(f"{url}: not JSON ({exc})") from None
            page = parse_products(body)
            found += page
            total = int(body.get("properties", {}).get("totalResults", len(found)))
            start += len(page)
            if not page or start >= total:
                break
        return sorted((p for p in found if p.datetime >= since), key=lambda p: p.datetime)

    def read(self, item: Product) -> list[ObservationChunk]:
        if self.config.product == "seviri":
            return self._read_native(item)
        chunks = item.chunks()
        if not chunks:
            raise MetadataError(f"{item.id}: the product lists no body chunk")
        areas = coarse_areas(self.host, self.shards)
        wanted = self._chunks_over(areas)
        if not wanted:
            return geo_chunks(FEED, self.metrics, item.id, item.datetime, [])
        parts = self._read_chunks(item, wanted & set(chunks), areas)
        # cells the nominal chunk layout placed wrongly: the neighbouring chunks hold them
        seen = {i for part in parts for i in part[0].tolist()}
        astray = [a for a in areas if not set(a.grid.cells()[0].tolist()) <= seen]
        extra = {n + d for n in self._chunks_over(astray) for d in (-1, 1)} - wanted
        if astray and extra & set(chunks):
            parts += self._read_chunks(item, extra & set(chunks), astray)
        return geo_chunks(FEED, self.metrics, item.id, item.datetime, parts)

    def _read_native(self, item: Product) -> list[ObservationChunk]:
        """A SEVIRI repeat cycle: its native file's header, then the lines over each area."""
        names = [n for n in item.entries if n.endswith(".nat")]
        if not names:
            raise MetadataError(f"{item.id}: the product lists no native (.nat) file")
        areas = coarse_areas(self.host, self.shards)
        parts = []
        if areas:
            with self._reader(item, names[0]) as read:
                try:
                    header = NativeHeader.parse(read(0, HEADER_WITH_ARCHIVE))
                    for area in areas:
                        cells = native_cells(header, read, item.datetime, area.grid,
                                             area.lon, area.lat)
                        if cells is not None:
                            parts.append(geo_rows(
                                area, item.datetime, "msg-seviri", cells["red"], cells["nir"],
                                cells["swir"], water_index(cells["red"], cells["swir"]),
                                cells["clear"], cells["valid"]))
                except SeviriError as exc:
                    raise ItemError(f"{item.id}: {names[0]}: {exc}") from None
        return geo_chunks(FEED, self.metrics, item.id, item.datetime, parts)

    @contextmanager
    def _reader(self, item: Product, name: str) -> Iterator[Reader]:
        """Reads of one file of a product: HTTP range requests where the Data Store honours
        them, else the whole file downloaded once (and deleted after)."""
        first = self._request(item, name, (0, HEADER_WITH_ARCHIVE))
        if first.status_code == 206:
            head = first.content

            def ranged(offset: int, length: int) -> bytes:
                if offset + length <= len(head):
                    return head[offset:offset + length]
                with self._request(item, name, (offset, offset + length)) as response:
                    if response.status_code != 206:
                        raise ItemError(f"{item.id}: {name}: the range request was answered "
                                        f"with HTTP {response.status_code}")
                    return response.content
            yield ranged
            return
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(name).name
            self._save(item, name, first, path)
            with open(path, "rb") as file:
                def local(offset: int, length: int) -> bytes:
                    file.seek(offset)
                    return file.read(length)
                yield local

    @staticmethod
    def _chunks_over(areas: list[CoarseArea]) -> set[int]:
        return {chunk_number(float(lat), float(lon)) for a in areas
                for lon, lat in zip(a.lon, a.lat, strict=True)}

    def _read_chunks(self, item: Product, numbers: set[int], areas: list[CoarseArea]
                     ) -> list[tuple[np.ndarray, ...]]:
        """The rows of ``areas``' cells in these body chunks, each downloaded, read, dropped."""
        chunks, parts = item.chunks(), []
        for number in sorted(numbers):
            with tempfile.TemporaryDirectory() as folder:
                path = self._download(item, chunks[number], Path(folder))
                try:
                    with open_hdf5(str(path), 1 << 20, FciError) as handle:
                        chunk = Chunk.of(handle)
                        for area in areas:
                            cells = chunk_cells(chunk, area.grid, area.lon, area.lat)
                            if cells is not None:
                                parts.append(self._rows(area, item, cells))
                except FciError as exc:
                    raise ItemError(f"{item.id}: chunk {number}: {exc}") from None
        return parts

    def _rows(self, area: CoarseArea, item: Product, cells: dict[str, np.ndarray]
              ) -> tuple[np.ndarray, ...]:
        return geo_rows(area, item.datetime, "mtg-fci", cells["red"], cells["nir"],
                        cells["swir"], water_index(cells["red"], cells["swir"]),
                        cells["clear"], cells["valid"])

    def _download(self, item: Product, name: str, folder: Path) -> Path:
        """One file of a product, whole."""
        path = folder / Path(name).name
        self._save(item, name, self._request(item, name), path)
        return path

    def _save(self, item: Product, name: str, response: requests.Response, path: Path) -> None:
        with response:
            try:
                with open(path, "wb") as out:
                    for block in response.iter_content(1 << 20):
                        out.write(block)
            except requests.RequestException as exc:
                raise ItemError(f"{item.id}: downloading {name}: {exc}") from None

    def _request(self, item: Product, name: str, span: tuple[int, int] | None = None
                 ) -> requests.Response:
        """GET one file of a product (bytes [start, end) of it), streamed, with a bearer
        token renewed once if refused."""
        href = item.entries[name]
        for renew in (False, True):
            headers = {"Authorization": f"Bearer {self.auth.token(renew)}"}
            if span is not None:
                headers["Range"] = f"bytes={span[0]}-{span[1] - 1}"
            try:
                response = self.session.get(href, headers=headers, stream=True,
                                            timeout=self.config.timeout_seconds)
            except requests.RequestException as exc:
                raise ItemError(f"{item.id}: downloading {name}: {exc}") from None
            if response.status_code == 401 and not renew:
                response.close()
                continue          # expired: a new token, once
            if response.status_code in (401, 403):
                response.close()
                raise TokenError(f"the Data Store refused the token for {name} "
                                 f"(HTTP {response.status_code})")
            if response.status_code >= 400:
                response.close()
                raise ItemError(f"{item.id}: downloading {name}: HTTP {response.status_code}")
            return response
        raise TokenError(f"the Data Store refused a renewed token for {name}")


class MeteosatSettings(PollingSettings):
    """Settings of the Meteosat feed: EOWATCH_METEOSAT_<NAME>, or meteosat_<name> in TOML."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_METEOSAT_", frozen=True,
                                      extra="forbid")

    api_url: str = Field("https://api.eumetsat.int", description="the EUMETSAT Data Store API")
    product: Literal["fci", "seviri"] = Field(
        "fci", description="fci: MTG FCI L1C FDHSI; seviri: MSG SEVIRI Level 1.5 (native)")
    collection: str | None = Field(None, description=f"the Data Store collection (default: "
                                   f"{FCI_COLLECTION} for fci, {SEVIRI_COLLECTION} for seviri)")
    consumer_key: SecretStr | None = Field(None, description="an EUMETSAT account's API key")
    consumer_secret: SecretStr | None = Field(None, description="... and its secret")
    credentials_file: Path | None = Field(None, description="a JSON file with consumer_key "
                                          "and consumer_secret (instead of the two above)")
    lookback_hours: float = Field(2.0, gt=0, description="late-listed products within this "
                                  "are still read")
    poll_seconds: float = Field(600.0, gt=0, description="interval between polls")

    def credentials(self) -> tuple[SecretStr | None, SecretStr | None]:
        if self.credentials_file is None:
            return self.consumer_key, self.consumer_secret
        try:
            stored = json.loads(self.credentials_file.read_text())
            return SecretStr(stored["consumer_key"]), SecretStr(stored["consumer_secret"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise TokenError(f"{self.credentials_file}: no consumer_key and consumer_secret "
                             f"({exc.__class__.__name__})") from None


def _build(settings: MeteosatSettings, context: FeedContext) -> MeteosatFeed:
    config = MeteosatConfig(settings.api_url, settings.collection or (
        SEVIRI_COLLECTION if settings.product == "seviri" else FCI_COLLECTION),
        product=settings.product)
    key, secret = settings.credentials()
    auth = DataStoreAuth(config.token_url, key, secret, retrying_session())
    return MeteosatFeed(context.host, context.shards, config, auth, settings.polling(),
                        settings.poll_seconds, context.metrics)


FEED_SPEC = FeedSpec(FEED, MeteosatSettings, _build,
                     "MTG FCI L1C or MSG SEVIRI Level 1.5 from the EUMETSAT Data Store "
                     "(account needed): red, NIR, "
                     "SWIR reflectance, a water index and the clear share per coarse cell of "
                     "the areas (floods)")
