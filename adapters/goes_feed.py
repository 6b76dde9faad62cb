"""The `goes` feed: GOES-East or GOES-West ABI scans from the public NOAA buckets, per coarse
cell of the registered areas.

Each poll lists the bucket's hourly prefixes since the cursor (anonymous S3 ListObjectsV2 over
HTTPS, page by page) for the L1b radiances (ABI-L1b-RadC or RadF) and the L2 clear-sky mask of
the same scans (ABI-L2-ACMC or ACMF), and groups the files by scan start. A scan is read once
its bands 2 (0.64 µm), 3 (0.86 µm) and 5 (1.61 µm) and its mask are all listed: for each area in
view, only the windows over the area's coarse cells are read (HTTP range requests), radiance
becomes reflectance factor (kappa0), each pixel goes to the cell holding its centre, the pixels
the mask calls cloudy are left out of the means (the mask is looked up by scan angle, so its
2 km grid serves the 0.5 and 1 km bands). Per cell it publishes the reflectances, the red/SWIR
water index, the clear share, the solar zenith angle and the sensor (goes-east, goes-west).

A scan whose mask or bands are still missing an hour after it began is skipped with its reason
(counted: ``eowatch_feed_items_total{outcome="skipped"}``); a file that cannot be read is
retried at the next polls, then skipped; cells at night are not published.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from eowatch.contract.feeds import (
    FeedContext,
    FeedHost,
    FeedMetrics,
    FeedSpec,
)
from eowatch.contract.messages import ObservationChunk
from eowatch.models.flood_geo import GEO_BANDS

from .geo_cells import CoarseArea, coarse_areas, geo_chunks, geo_rows, water_index
from .goes import (
    MASK_BAND,
    GoesError,
    band_cells,
    hour_prefixes,
    list_bucket,
    open_band,
    open_mask,
    parse_key,
)
from .http import fetch, retrying_session
from .item_feed import (
    ItemError,
    ItemFeed,
    ListingError,
    MetadataError,
    Polling,
    PollingSettings,
)

log = logging.getLogger(__name__)
FEED = "goes"
READ_BANDS = (2, 3, 5)                 # red, NIR, SWIR 1.6 µm
BUCKETS = {"east": ("goes-east", "https://noaa-goes19.s3.amazonaws.com"),
           "west": ("goes-west", "https://noaa-goes18.s3.amazonaws.com")}


@dataclass(frozen=True)
class Scan:
    """One scan: its files by band (MASK_BAND: the clear-sky mask), as the bucket lists them."""

    id: str
    datetime: datetime
    keys: dict[int, str] = field(default_factory=dict)

    def missing(self) -> list[str]:
        wanted = {**{b: f"band {b}" for b in READ_BANDS}, MASK_BAND: "the clear-sky mask"}
        return [name for band, name in wanted.items() if band not in self.keys]


@dataclass(frozen=True)
class GoesConfig:
    satellite: Literal["east", "west"] = "east"
    bucket_url: str = ""                     # empty: the satellite's NOAA bucket
    product: Literal["RadC", "RadF"] = "RadC"
    complete_within: timedelta = timedelta(hours=1)  # a scan's files are all listed by then
    page_size: int = 1000
    block_size: int = 1 << 20                # bytes per HTTP range request
    timeout_seconds: float = 30.0

    @property
    def sensor(self) -> str:
        return BUCKETS[self.satellite][0]

    @property
    def bucket(self) -> str:
        return (self.bucket_url or BUCKETS[self.satellite][1]).rstrip("/")


class GoesFeed(ItemFeed):
    name = FEED
    band_names = GEO_BANDS
    targets = "cells"

    def __init__(self, host: FeedHost, shards: int, config: GoesConfig, polling: Polling,
                 interval_seconds: float, metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(host, polling, interval_seconds, metrics, now)
        self.shards, self.config = shards, config
        self.session = retrying_session()

    def _get(self, url: str) -> bytes:
        return fetch(self.session, url, self.config.timeout_seconds)

    def _keys(self, since: datetime, until: datetime) -> Iterator[str]:
        c = self.config
        for level in ("L1b", "L2"):
            for prefix in hour_prefixes(c.product, since, until, level):
                yield from list_bucket(self._get, c.bucket, prefix, c.page_size)

    def items(self, since: datetime) -> list[Scan]:
        """Scans since ``since``: complete ones, and incomplete ones old enough to give up."""
        now = self.now()
        files: dict[datetime, dict[int, str]] = defaultdict(dict)
        try:
            for key in self._keys(since, now):
                listed = parse_key(key)
                if listed and listed.product == self.config.product and \
                        listed.start >= since and (listed.band in READ_BANDS
                                                   or listed.band == MASK_BAND):
                    files[listed.start][listed.band] = key
        except GoesError as exc:
            raise ListingError(str(exc)) from None
        scans = [Scan(f"{self.config.sensor}_{self.config.product}_{start:%Y%j%H%M%S}", start,
                      keys) for start, keys in sorted(files.items())]
        return [s for s in scans
                if not s.missing() or now - s.datetime > self.config.complete_within]

    def read(self, item: Scan) -> list[ObservationChunk]:
        if item.missing():
            raise MetadataError(f"{item.id}: {', '.join(item.missing())} never appeared")
        areas = coarse_areas(self.host, self.shards)
        if not areas:
            return []
        url = f"{self.config.bucket}/"
        try:
            with ExitStack() as stack:
                mask = stack.enter_context(open_mask(url + item.keys[MASK_BAND],
                                                     self.config.block_size))
                bands = {b: stack.enter_context(open_band(url + item.keys[b],
                                                          self.config.block_size))
                         for b in READ_BANDS}
                parts = [self._area_rows(area, item, bands, mask) for area in areas]
        except GoesError as exc:
            raise ItemError(f"{item.id}: {exc}") from None
        return geo_chunks(FEED, self.metrics, item.id, item.datetime, parts)

    def _area_rows(self, area: CoarseArea, scan: Scan, bands: dict[int, Any], mask: Any
                   ) -> tuple[np.ndarray, ...]:
        read = [band_cells(bands[b], area.grid, mask) for b in READ_BANDS]
        if any(c is None for c in read):
            empty = np.empty(0)
            return empty, empty, empty, empty      # off this satellite's image
        red, nir, swir = (c for c in read if c is not None)
        valid = np.fmin(np.fmin(red.valid, nir.valid), swir.valid)
        return geo_rows(area, scan.datetime, self.config.sensor, red.reflectance,
                        nir.reflectance, swir.reflectance,
                        water_index(red.reflectance, swir.reflectance), red.clear, valid)


class GoesSettings(PollingSettings):
    """Settings of the GOES feed: EOWATCH_GOES_<NAME>, or goes_<name> in TOML."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_GOES_", frozen=True, extra="forbid")

    satellite: Literal["east", "west"] = Field(
        "east", description="GOES-East (GOES-19, 75.2 W) or GOES-West (GOES-18, 137.0 W)")
    bucket_url: str = Field("", description="bucket to list (empty: the satellite's NOAA "
                            "bucket, noaa-goes19 or noaa-goes18, anonymous HTTPS)")
    product: Literal["RadC", "RadF"] = Field(
        "RadC", description="RadC: CONUS every 5 min; RadF: full disk every 10 min")
    lookback_hours: float = Field(2.0, gt=0, description="late-listed files within this are "
                                  "still read")
    poll_seconds: float = Field(300.0, gt=0, description="interval between polls")


def _build(settings: GoesSettings, context: FeedContext) -> GoesFeed:
    config = GoesConfig(settings.satellite, settings.bucket_url, settings.product)
    return GoesFeed(context.host, context.shards, config, settings.polling(),
                    settings.poll_seconds, context.metrics)


FEED_SPEC = FeedSpec(FEED, GoesSettings, _build,
                     "GOES-East/West ABI from the NOAA buckets: red, NIR, SWIR reflectance, a "
                     "water index and the clear share per coarse cell of the areas (floods)")
