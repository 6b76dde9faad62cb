"""The daemon's side of the feed seam: publishing onto the bus with the feed's cursor, and the
registered parcels and areas feeds observe (``eowatch.contract.feeds.FeedHost``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from eowatch.contract.messages import ObservationChunk

from .bus.base import Bus, OutMessage
from .store.store import Store


class Publisher:
    """Publishes chunks and moves a feed's cursor only once the bus has acknowledged them."""

    def __init__(self, bus: Bus, store: Store, topic: str) -> None:
        self.bus, self.store, self.topic = bus, store, topic

    def publish(self, feed: str, chunks: Sequence[ObservationChunk],
                cursor: dict[str, Any]) -> None:
        self.bus.publish(self.topic, [OutMessage(c.key, c.encode(), c.shard) for c in chunks],
                         then=lambda conn: self.store.set_cursor(conn, feed, cursor))

    def cursor(self, feed: str) -> dict[str, Any] | None:
        return self.store.get_cursor(feed)

    def parcels_version(self) -> tuple[int, datetime | None]:
        return self.store.parcels_version()

    def parcel_geometries(self, exclude_source: str | None = None
                          ) -> tuple[list[str], list[int], list[str]]:
        return self.store.parcel_geometries(exclude_source)

    def upsert_parcels(self, rows: Sequence[dict[str, Any]]) -> None:
        self.store.upsert_parcels(rows)

    def areas(self) -> list[dict[str, Any]]:
        return self.store.list_areas()

    def upsert_area(self, row: dict[str, Any], grid: dict[str, Any],
                    cells: Sequence[dict[str, Any]]) -> None:
        self.store.upsert_areas([row])
        self.store.replace_cells(row["id"], grid, cells)
