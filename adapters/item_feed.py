"""What every feed that reads acquisitions one at a time shares: the cursor, and the poll loop
that reads new items in time order, retries those that fail and skips those that keep failing.

A feed says which items there are since a time (``items``: a STAC search, a bucket listing, an
API's listing) and how one item becomes chunks (``read``); the loop publishes each item's chunks
with the cursor that follows it, so the cursor moves only with the bus's acknowledgement. An
item is anything with an ``id`` and an aware ``datetime``.
"""

from __future__ import annotations

import logging
import threading
import time
from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from pydantic import Field

from eowatch.contract.feeds import (
    Backfilled,
    Feed,
    FeedHost,
    FeedMetrics,
    FeedSettings,
    Progress,
    backfill_key,
)
from eowatch.contract.messages import ObservationChunk
from eowatch.errors import EowatchError

log = logging.getLogger(__name__)


class Item(Protocol):
    @property
    def id(self) -> str: ...

    @property
    def datetime(self) -> datetime | None: ...


class ItemError(EowatchError, RuntimeError):
    """An item that cannot be read now (an unreadable or unreachable raster): retried at the
    next polls, up to the feed's MAX_ATTEMPTS."""

    stage = "read"
    permanent = False


class ListingError(EowatchError, RuntimeError):
    """The source did not answer its listing (a bucket, an API)."""

    stage = "list"


class MetadataError(ItemError):
    """An item whose metadata cannot be used (no datetime, no projection, no asset for a band):
    reading it again cannot help, so it is skipped at once, with its reason, in the cursor."""

    permanent = True


@dataclass(frozen=True)
class Polling:
    """How a feed walks its collection."""

    start: datetime | None = None           # first acquisition time when there is no cursor
    lookback: timedelta = timedelta(days=3)  # late-published items within this are still read
    max_items_per_poll: int = 50
    max_attempts: int = 5                   # polls that may fail on one item before it is skipped


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

    def after(self, item: Item, lookback: timedelta) -> Cursor:
        """The cursor once ``item`` is read (or given up on)."""
        when = item.datetime.astimezone(UTC)  # type: ignore[union-attr]
        newest = max(self.datetime, when) if self.datetime else when
        recent = {k: v for k, v in {**self.recent, item.id: when.isoformat()}.items()
                  if datetime.fromisoformat(v) >= newest - lookback}
        failures = {k: v for k, v in self.failures.items() if k != item.id}
        newest_id = item.id if newest == when else self.id
        return Cursor(newest, newest_id, recent, failures, list(self.skipped))


class ItemFeed(Feed):
    """Lists the items newer than the cursor and publishes what ``read`` makes of each, in
    time order."""

    def __init__(self, host: FeedHost, polling: Polling, interval_seconds: float,
                 metrics: FeedMetrics | None = None,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.host, self.polling = host, polling
        self.interval_seconds, self.now = interval_seconds, now
        self.metrics = metrics or FeedMetrics()
        self.stopping = threading.Event()

    @abstractmethod
    def items(self, since: datetime) -> Sequence[Item]:
        """The items acquired at or after ``since``, oldest first."""

    @abstractmethod
    def read(self, item: Any) -> list[ObservationChunk]:
        """The chunks of one item (none when it observes nothing); raises ItemError."""

    def cursor(self) -> Cursor:
        return Cursor.load(self.host.cursor(self.name))

    def poll(self) -> int:
        cursor = self.cursor()
        since = (cursor.datetime - self.polling.lookback if cursor.datetime
                 else self.polling.start or self.now() - timedelta(days=30))
        items = [i for i in self.items(since) if i.id not in cursor.recent]
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

    def backfill(self, since: datetime, until: datetime, progress: Progress | None = None,
                 retry_seconds: float = 5.0) -> Backfilled:
        """The items acquired in [since, until], oldest first, read and published as polls do;
        an item that fails is tried ``max_attempts`` times (``retry_seconds`` apart, doubling)
        then skipped with its reason, which the report lists."""
        key = backfill_key(self.name, since, until)
        # the items go in (time, id) order, so where the period stands is the last one read
        stored = self.host.cursor(key) or {}
        position = (datetime.fromisoformat(stored["datetime"]), stored["id"]) if stored else None
        items = sorted((i for i in self.items(since)
                        if i.datetime is not None and i.datetime <= until),
                       key=lambda i: (i.datetime, i.id))
        todo = [i for i in items if position is None or (i.datetime, i.id) > position]
        done = Backfilled(earlier=len(items) - len(todo))
        if progress is not None:
            progress.reset(total=len(items))
            progress.update(done.earlier)
        last = Cursor()  # with the items read within the live feed's look-back
        for item in todo:
            if self.stopping.is_set():
                break
            chunks = self._read_retrying(item, retry_seconds, done)
            when = item.datetime.astimezone(UTC)  # type: ignore[union-attr]
            self.host.publish(key, chunks or [], {"datetime": when.isoformat(), "id": item.id})
            last = last.after(item, self.polling.lookback)
            if chunks is not None:
                done.published += 1
                done.chunks += len(chunks)
            if progress is not None:
                progress.update(1)
        finished = not self.stopping.is_set()
        if finished and last.datetime is not None and self.host.cursor(self.name) is None:
            self.host.publish(self.name, [], last.dump())  # the live feed goes on from here
            done.handed_over = True
        return done

    def _read_retrying(self, item: Item, retry_seconds: float, done: Backfilled
                       ) -> list[ObservationChunk] | None:
        """The item's chunks, or None when it is skipped (listed in ``done``)."""
        for attempt in range(1, self.polling.max_attempts + 1):
            try:
                return self.read(item)
            except ItemError as exc:
                self.metrics.feed_items.labels(self.name, "failed").inc()
                if exc.permanent or attempt == self.polling.max_attempts:
                    log.error("%s: backfill skips %s: %s", self.name, item.id, exc)
                    self.metrics.feed_items.labels(self.name, "skipped").inc()
                    done.skipped.append(f"{item.id}: {exc}")
                    return None
                log.warning("%s: item %s failed (attempt %d of %d): %s", self.name, item.id,
                            attempt, self.polling.max_attempts, exc)
                time.sleep(retry_seconds * 2 ** (attempt - 1))
        return None

    def _failed(self, cursor: Cursor, item: Item, exc: ItemError) -> Cursor:
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


class PollingSettings(FeedSettings):
    """The settings every listing feed shares (a feed re-declares a field for its own
    default)."""

    start: datetime | None = Field(None, description="first acquisition read when there is "
                                   "no cursor (default: the last lookback_hours)")
    lookback_hours: float = Field(2.0, gt=0, description="late-listed acquisitions within "
                                  "this are still read")
    max_items_per_poll: int = Field(12, ge=1, description="acquisitions read per poll")
    max_attempts: int = Field(5, ge=1, description="polls that may fail on one acquisition "
                              "before it is skipped")
    poll_seconds: float = Field(600.0, gt=0, description="interval between polls")

    def polling(self) -> Polling:
        """Without a cursor: the last look-back, not the 30 days the item loop assumes."""
        lookback = timedelta(hours=self.lookback_hours)
        return Polling(self.start or datetime.now(UTC) - lookback, lookback,
                       self.max_items_per_poll, self.max_attempts)
