"""What every STAC-polling feed shares: the search, the cursor, and the poll loop that reads
new items one at a time, retries those that fail and skips those that keep failing.

A feed (Sentinel-2, Sentinel-1) says what to search over (``search_area``) and how one item
becomes chunks (``read``); the loop publishes each item's chunks with the cursor that follows
it, so the cursor moves only with the bus's acknowledgement.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pystac
import requests
from pystac_client import Client
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from urllib3 import Retry

from eowatch.contract.feeds import Feed, FeedHost, FeedMetrics
from eowatch.contract.messages import ObservationChunk
from eowatch.errors import EowatchError

from .stac_sources import Source

log = logging.getLogger(__name__)


class ItemError(EowatchError, RuntimeError):
    """An item that cannot be read now (an unreadable or unreachable raster): retried at the
    next polls, up to the feed's MAX_ATTEMPTS."""

    stage = "read"
    permanent = False


class MetadataError(ItemError):
    """An item whose metadata cannot be used (no datetime, no projection, no asset for a band):
    reading it again cannot help, so it is skipped at once, with its reason, in the cursor."""

    permanent = True


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


@dataclass(frozen=True)
class Polling:
    """How a feed walks its collection."""

    start: datetime | None = None           # first acquisition time when there is no cursor
    lookback: timedelta = timedelta(days=3)  # late-published items within this are still read
    max_items_per_poll: int = 50
    max_attempts: int = 5                   # polls that may fail on one item before it is skipped


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


@dataclass
class Cursor:
    """Where the feed stands: the newest item read (datetime, id), the items read within the
    look-back window (late publications are still picked up), failures per item, and the items
    skipped after too many failures."""

    datetime: datetime | None = None
    id: str | None = None
    recent: dict[str, str] = field(default_factory=dict)     # item id -> acquisition time
    failures: dict[str, int] = field(default_factory=dict)
    skipped: list[dict[str, str]] = field(default_factory=list)

    @classmethod
    def load(cls, stored: dict[str, Any] | None) -> Cursor:
        if not stored:
            return cls()
        when = stored.get("datetime")
        return cls(datetime.fromisoformat(when) if when else None, stored.get("id"),
                   dict(stored.get("recent", {})), dict(stored.get("failures", {})),
                   list(stored.get("skipped", [])))

    def dump(self) -> dict[str, Any]:
        return {"datetime": self.datetime.isoformat() if self.datetime else None, "id": self.id,
                "recent": self.recent, "failures": self.failures, "skipped": self.skipped[-100:]}

    def after(self, item: pystac.Item, lookback: timedelta) -> Cursor:
        """The cursor once ``item`` is read (or given up on)."""
        when = item.datetime.astimezone(UTC)  # type: ignore[union-attr]
        newest = max(self.datetime, when) if self.datetime else when
        recent = {k: v for k, v in {**self.recent, item.id: when.isoformat()}.items()
                  if datetime.fromisoformat(v) >= newest - lookback}
        failures = {k: v for k, v in self.failures.items() if k != item.id}
        newest_id = item.id if newest == when else self.id
        return Cursor(newest, newest_id, recent, failures, list(self.skipped))


class StacFeed(Feed):
    """Polls one collection for items over ``search_area`` newer than the cursor and
    publishes what ``read`` makes of each, in time order."""

    def __init__(self, host: FeedHost, search: StacSearch, polling: Polling,
                 interval_seconds: float, metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.host, self.search, self.polling = host, search, polling
        self.interval_seconds, self.now = interval_seconds, now
        self.metrics = metrics or FeedMetrics()
        self.stopping = threading.Event()

    @abstractmethod
    def search_area(self) -> dict[str, Any] | None:
        """The GeoJSON geometry to search over; None: nothing registered to observe."""

    @abstractmethod
    def read(self, item: pystac.Item) -> list[ObservationChunk]:
        """The chunks of one item (none when it observes nothing); raises ItemError."""

    def query(self) -> dict[str, Any] | None:
        """STAC API query extension filters of the search, if any."""
        return None

    def cursor(self) -> Cursor:
        return Cursor.load(self.host.cursor(self.name))

    def poll(self) -> int:
        area = self.search_area()
        if area is None:
            return 0
        cursor = self.cursor()
        since = (cursor.datetime - self.polling.lookback if cursor.datetime
                 else self.polling.start or self.now() - timedelta(days=30))
        items = [i for i in self.search.items(area, since, query=self.query())
                 if i.id not in cursor.recent]
        published = 0
        for item in items[:self.polling.max_items_per_poll]:
            if self.stopping.is_set():
                break
            try:
                chunks = self.read(item)
            except ItemError as exc:
                cursor = self._failed(cursor, item, exc)
                if item.id in cursor.failures:
                    raise  # retried at the next poll; nothing after it is read before then
                continue
            cursor = cursor.after(item, self.polling.lookback)
            self.host.publish(self.name, chunks, cursor.dump())
            published += len(chunks)
        return published

    def stop(self) -> None:
        self.stopping.set()

    def _failed(self, cursor: Cursor, item: pystac.Item, exc: ItemError) -> Cursor:
        attempts = self.polling.max_attempts if exc.permanent else \
            cursor.failures.get(item.id, 0) + 1
        self.metrics.feed_items.labels(self.name, "failed").inc()
        if attempts < self.polling.max_attempts:
            log.warning("%s: item %s failed (attempt %d of %d): %s", self.name, item.id,
                        attempts, self.polling.max_attempts, exc)
            cursor = replace(cursor, failures={**cursor.failures, item.id: attempts})
        else:
            log.error("%s: item %s skipped %s: %s", self.name, item.id, "(its metadata cannot "
                      "be used)" if exc.permanent else f"after {attempts} failed attempts", exc)
            self.metrics.feed_items.labels(self.name, "skipped").inc()
            cursor = cursor.after(item, self.polling.lookback)
            cursor.skipped.append({"id": item.id, "reason": str(exc)})
        self.host.publish(self.name, [], cursor.dump())
        return cursor
