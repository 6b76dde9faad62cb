"""The `epic` feed: DSCOVR EPIC images of the sunlit Earth (several a day), per coarse cell of
the registered areas in view.

Each poll reads the API's listing of every day since the cursor (``api/natural/date/DAY`` or
``api/enhanced/...``), keyed on each image's ``identifier`` (its scan time). An image is read
for the areas within 65° of its sunlit disk's centre: the L1B product (HDF5, over HTTP range
requests: the window over each area, in every band) gives green (551 nm), red (680 nm) and NIR
(780 nm) reflectance (count rate × the band's factor) and the geolocation of each pixel; pixels
brighter than 0.25 in red are taken for cloud (L1B has no cloud mask). Per cell it publishes
the red and NIR reflectance, McFeeters' water index (green − NIR) / (green + NIR) (EPIC has no
SWIR band), the clear share, the solar zenith angle and the sensor (dscovr-epic).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

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

from .epic import EpicError, EpicImage, area_cells, parse_listing
from .geo_cells import coarse_areas, geo_chunks, geo_rows, water_index
from .hdf5 import open_hdf5
from .http import fetch, retrying_session
from .item_feed import ItemError, ItemFeed, ListingError, Polling, PollingSettings

FEED = "epic"


@dataclass(frozen=True)
class EpicConfig:
    api_url: str = "https://epic.gsfc.nasa.gov"
    collection: Literal["natural", "enhanced"] = "natural"
    # where an image's L1B product lies ({api_url}, {year}, {month}, {day}, {product})
    l1b_url: str = "{api_url}/archive/l1b/{year}/{month}/{day}/{product}"
    block_size: int = 1 << 20
    timeout_seconds: float = 30.0

    def product_url(self, image: EpicImage) -> str:
        t = image.taken_at
        return self.l1b_url.format(api_url=self.api_url.rstrip("/"), year=f"{t:%Y}",
                                   month=f"{t:%m}", day=f"{t:%d}", product=image.product)


class EpicFeed(ItemFeed):
    name = FEED
    band_names = GEO_BANDS
    targets = "cells"

    def __init__(self, host: FeedHost, shards: int, config: EpicConfig, polling: Polling,
                 interval_seconds: float, metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(host, polling, interval_seconds, metrics, now)
        self.shards, self.config = shards, config
        self.session = retrying_session()

    def items(self, since: datetime) -> list[EpicImage]:
        """The images taken at or after ``since``, oldest first, from each day's listing."""
        found: list[EpicImage] = []
        day, last = since.astimezone(UTC).date(), self.now().astimezone(UTC).date()
        base = f"{self.config.api_url.rstrip('/')}/api/{self.config.collection}/date"
        while day <= last:
            body = fetch(self.session, f"{base}/{day:%Y-%m-%d}", self.config.timeout_seconds)
            try:
                found += parse_listing(json.loads(body))
            except (ValueError, EpicError) as exc:
                raise ListingError(f"{base}/{day:%Y-%m-%d}: {exc}") from None
            day += timedelta(days=1)
        return [image for image in found if image.taken_at >= since]

    def read(self, item: EpicImage) -> list[ObservationChunk]:
        areas = [a for a in coarse_areas(self.host, self.shards)
                 if item.in_view(float(a.lon.mean()), float(a.lat.mean()))]
        acquisition = f"EPIC_{item.identifier}"
        if not areas:
            return geo_chunks(FEED, self.metrics, acquisition, item.taken_at, [])
        parts = []
        try:
            with open_hdf5(self.config.product_url(item), self.config.block_size,
                           EpicError) as handle:
                for area in areas:
                    cells = area_cells(handle, area.grid)
                    if cells is None:
                        continue
                    nan = np.full(len(cells["red"]), np.nan)
                    parts.append(geo_rows(area, item.taken_at, "dscovr-epic", cells["red"],
                                          cells["nir"], nan,
                                          water_index(cells["green"], cells["nir"]),
                                          cells["clear"], cells["valid"]))
        except EpicError as exc:
            raise ItemError(f"{item.id}: {exc}") from None
        return geo_chunks(FEED, self.metrics, acquisition, item.taken_at, parts)


class EpicSettings(PollingSettings):
    """Settings of the EPIC feed: EOWATCH_EPIC_<NAME>, or epic_<name> in TOML."""

    model_config = SettingsConfigDict(env_prefix="EOWATCH_EPIC_", frozen=True, extra="forbid")

    api_url: str = Field("https://epic.gsfc.nasa.gov", description="the EPIC API")
    collection: Literal["natural", "enhanced"] = Field("natural",
                                                       description="the API's listing to read")
    l1b_url: str = Field("{api_url}/archive/l1b/{year}/{month}/{day}/{product}",
                         description="where an image's L1B product lies (a template)")
    lookback_hours: float = Field(48.0, gt=0, description="late-listed images within this are "
                                  "still read (EPIC images are published hours to a day late)")
    poll_seconds: float = Field(1800.0, gt=0, description="interval between polls")


def _build(settings: EpicSettings, context: FeedContext) -> EpicFeed:
    config = EpicConfig(settings.api_url, settings.collection, settings.l1b_url)
    return EpicFeed(context.host, context.shards, config, settings.polling(),
                    settings.poll_seconds, context.metrics)


FEED_SPEC = FeedSpec(FEED, EpicSettings, _build,
                     "DSCOVR EPIC from its API: red and NIR reflectance, a water index and the "
                     "clear share per coarse cell of the areas in view (floods)")
