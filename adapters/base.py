"""What every feed adapter shares: the job interface and chunking by shard."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import numpy as np

from eowatch.daemon.bus.base import Bus, OutMessage
from eowatch.daemon.messages import ObservationChunk
from eowatch.daemon.store.store import Store

log = logging.getLogger(__name__)


class Adapter(ABC):
    """A feed: ``poll`` publishes what is new since the cursor and returns the chunk count."""

    name: str
    interval_seconds: float
    band_names: tuple[str, ...]

    @abstractmethod
    def poll(self) -> int: ...

    def stop(self) -> None:
        """Ask a poll in flight to end after the acquisition it is publishing, so that a
        shutdown waits for one acquisition, not for a whole backlog."""
        return  # feeds whose polls are short have nothing to do


def chunks_by_shard(feed: str, acquisition_id: str, acquired_at: datetime,
                    band_names: Sequence[str], parcel_ids: np.ndarray, shards: np.ndarray,
                    values: np.ndarray, valid_fraction: np.ndarray) -> list[ObservationChunk]:
    """Split one acquisition's per-parcel rows into one chunk per shard (no per-parcel loop).

    Within a chunk parcels are in id order, the order in which the consumer lays out a shard's
    state rows: a chunk that holds the whole shard then maps to one block of rows."""
    by_id = np.argsort(parcel_ids, kind="stable")
    order = by_id[np.argsort(shards[by_id], kind="stable")]
    shard_values, starts = np.unique(shards[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return [ObservationChunk(feed=feed, acquisition_id=acquisition_id, acquired_at=acquired_at,
                             band_names=tuple(band_names), shard=int(shard),
                             parcel_ids=parcel_ids[order[a:b]], values=values[order[a:b]],
                             valid_fraction=valid_fraction[order[a:b]])
            for shard, a, b in zip(shard_values, starts, bounds, strict=True)]


class Publisher:
    """Publishes chunks and moves a feed's cursor only once the bus has acknowledged them."""

    def __init__(self, bus: Bus, store: Store, topic: str) -> None:
        self.bus, self.store, self.topic = bus, store, topic

    def publish(self, feed: str, chunks: Sequence[ObservationChunk],
                cursor: dict[str, Any]) -> None:
        self.bus.publish(self.topic, [OutMessage(c.key, c.encode(), c.shard) for c in chunks],
                         then=lambda conn: self.store.set_cursor(conn, feed, cursor))
