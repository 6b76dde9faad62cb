"""A listing feed's backfill: acquisition order, retries and skips, resuming an interrupted
run, and the hand-over to a live feed that never ran; on the embedded bus and a real store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from eowatch.adapters.item_feed import ItemError, ItemFeed, MetadataError, Polling
from eowatch.contract.feeds import backfill_key
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.publisher import Publisher
from eowatch.daemon.store.store import Store

START = datetime(2026, 3, 1, 10, 30, tzinfo=UTC)


@dataclass(frozen=True)
class Scene:
    id: str
    datetime: datetime


class ListedFeed(ItemFeed):
    """Scenes listed by a source (here: a list), each read into one chunk of one parcel."""

    name = "listed"
    band_names = ("B04",)

    def __init__(self, host, scenes, flaky=(), broken=(), stop_after=None):
        super().__init__(host, Polling(lookback=timedelta(days=3), max_attempts=3), 60.0)
        self.scenes, self.flaky, self.broken = scenes, set(flaky), set(broken)
        self.stop_after, self.reads = stop_after, []

    def items(self, since):
        return [s for s in self.scenes if s.datetime >= since]

    def read(self, item):
        self.reads.append(item.id)
        if item.id in self.broken:
            raise MetadataError(f"{item.id} has no red band")
        if item.id in self.flaky:
            self.flaky.discard(item.id)
            raise ItemError(f"{item.id}: connection reset")
        if self.stop_after is not None and len(self.reads) >= self.stop_after:
            self.stop()
        return [ObservationChunk(feed=self.name, acquisition_id=item.id,
                                 acquired_at=item.datetime, band_names=self.band_names,
                                 shard=0, parcel_ids=np.array(["p"], dtype=object),
                                 values=np.ones((1, 1), np.float32),
                                 valid_fraction=np.ones(1, np.float32))]


def published(bus: EmbeddedBus) -> list[str]:
    consumer = bus.consumer("reader", ["obs"], 1000)
    records = consumer.poll(1000, 1.0)
    consumer.close()
    return [ObservationChunk.decode(r.value).acquisition_id for r in records]


def test_backfill_publishes_in_order_retries_skips_resumes_and_hands_over(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    bus = EmbeddedBus(store)
    bus.ensure_topics(["obs"])
    host = Publisher(bus, store, "obs")
    scenes = [Scene(f"S{k:02d}", START + timedelta(days=5 * k)) for k in range(10)]
    since, until = START, START + timedelta(days=36)  # S00 ... S07

    # S02 fails once, S03 always; a shutdown comes while S04 is read
    feed = ListedFeed(host, scenes, flaky={"S02"}, broken={"S03"}, stop_after=6)
    first = feed.backfill(since, until, retry_seconds=0.0)
    assert feed.reads == ["S00", "S01", "S02", "S02", "S03", "S04"]
    assert first.published == 4 and first.skipped == ["S03: S03 has no red band"]
    assert not first.handed_over and store.get_cursor("listed") is None  # interrupted

    again = ListedFeed(host, scenes)
    second = again.backfill(since, until, retry_seconds=0.0)
    assert second.earlier == 5 and second.published == 3 and second.handed_over
    assert published(bus) == ["S00", "S01", "S02", "S04", "S05", "S06", "S07"]
    assert store.get_cursor(backfill_key("listed", since, until))["id"] == "S07"
    live = store.get_cursor("listed")
    assert live["id"] == "S07" and set(live["recent"]) == {"S07"}  # within the look-back

    assert ListedFeed(host, scenes).backfill(since, until).published == 0  # once is enough
    assert len(published(bus)) == 7
    # the live feed goes on after the period, not from its own start setting
    live_feed = ListedFeed(host, scenes)
    live_feed.poll()
    assert published(bus)[7:] == ["S08", "S09"]
    store.close()
