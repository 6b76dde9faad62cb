"""What every STAC-polling feed shares: the search (the poll loop, cursor and retries are
item_feed.py's).

A feed (Sentinel-2, Sentinel-1) says what to search over (``search_area``) and how one item
becomes chunks (``read``).
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pystac
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3 import Retry

from eowatch.contract.feeds import FeedHost, FeedMetrics
from eowatch.errors import EowatchError

from .item_feed import ItemFeed, Polling
from .stac_sources import Source

log = logging.getLogger(__name__)


class SearchError(EowatchError, RuntimeError):
    """The STAC API did not answer the search."""

    stage = "search"


@dataclass(frozen=True)
class StacConfig:
    """Where a STAC feed searches and how it walks the collection; each feed's config extends
    it (and sets its own defaults)."""

    stac_url: str = ""
    collection: str = ""
    start: datetime | None = None           # first acquisition time when there is no cursor
    lookback: timedelta = timedelta(days=3)  # late-published items within this are still read
    page_size: int = 100
    max_items_per_poll: int = 50
    max_attempts: int = 5                   # polls that may fail on one item before it is skipped
    timeout_seconds: float = 30.0
    source: Source = Source("generic")       # how the API's assets are reached

    @property
    def polling(self) -> Polling:
        return Polling(self.start, self.lookback, self.max_items_per_poll, self.max_attempts)

    def search(self) -> StacSearch:
        return StacSearch(self.stac_url, self.collection, self.page_size, self.timeout_seconds)


class StacSearch:
    """Searches one collection of a STAC API, every page, with retries on 429 and 5xx."""

    def __init__(self, stac_url: str, collection: str, page_size: int = 100,
                 timeout_seconds: float = 30.0) -> None:
        self.stac_url, self.collection = stac_url, collection
        self.page_size, self.timeout_seconds = page_size, timeout_seconds
        retry = Retry(total=4, backoff_factor=0.5, status_forcelist=(429, 500, 502, 503, 504),
                      allowed_methods=None, raise_on_status=False)
        self.io = StacApiIO(max_retries=retry, timeout=timeout_seconds)
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = Client.open(self.stac_url, stac_io=self.io,
                                       timeout=self.timeout_seconds)
        return self._client

    def items(self, intersects: dict, since: datetime, until: datetime | None = None,
              query: dict[str, Any] | None = None) -> list[pystac.Item]:
        """Items acquired at or after ``since`` (and before ``until``), oldest first."""
        end = until.astimezone(UTC).isoformat() if until else ".."
        try:
            search = self.client().search(
                collections=[self.collection], intersects=intersects,
                datetime=f"{since.astimezone(UTC).isoformat()}/{end}", query=query,
                sortby=[{"field": "properties.datetime", "direction": "asc"}],
                limit=self.page_size)
            found = list(search.items())
        except (APIError, requests.RequestException, pystac.STACError, ValueError) as exc:
            self._client = None  # reopen next time: the API may have come back elsewhere
            raise SearchError(f"STAC search of {self.stac_url} failed: "
                              f"{exc.__class__.__name__}: {exc}") from None
        return sorted(found, key=lambda i: (i.datetime or datetime.min.replace(tzinfo=UTC),
                                            i.id))


class StacFeed(ItemFeed):
    """Polls one collection for items over ``search_area`` newer than the cursor and
    publishes what ``read`` makes of each, in time order."""

    def __init__(self, host: FeedHost, search: StacSearch, polling: Polling,
                 interval_seconds: float, metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        super().__init__(host, polling, interval_seconds, metrics, now)
        self.search = search

    @abstractmethod
    def search_area(self) -> dict[str, Any] | None:
        """The GeoJSON geometry to search over; None: nothing registered to observe."""

    def query(self) -> dict[str, Any] | None:
        """STAC API query extension filters of the search, if any."""
        return None

    def items(self, since: datetime) -> list[pystac.Item]:
        area = self.search_area()
        if area is None:
            return []
        return self.search.items(area, since, query=self.query())
