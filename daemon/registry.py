"""Registered targets of one kind, as columns: id -> shard and season start."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from .store.store import Store

Columns = tuple[list[str], list[int], list[str | None]]  # ids, shards, season starts


class TargetRegistry:
    """Known targets with vectorised lookups; ``columns`` reads them from the store."""

    def __init__(self, columns: Callable[[], Columns], refresh_seconds: float = 5.0) -> None:
        self.columns, self.refresh_seconds = columns, refresh_seconds
        self._loaded_at = -np.inf
        self.refresh()

    def refresh(self) -> None:
        ids, shards, starts = self.columns()
        self.index = pd.Index(ids, dtype=object)
        self.shards = np.array(shards, np.int64)
        self.season_starts = np.array(starts, dtype=object)
        self._loaded_at = time.monotonic()

    def lookup(self, target_ids: np.ndarray) -> np.ndarray:
        """Registry position of each id (-1: unknown), refreshing once in a while on a miss."""
        target = pd.Index(target_ids, dtype=object)  # no string-dtype inference per call
        found = self.index.get_indexer(target)
        if (found < 0).any() and time.monotonic() - self._loaded_at > self.refresh_seconds:
            self.refresh()
            found = self.index.get_indexer(target)
        return found


def parcel_registry(store: Store, refresh_seconds: float = 5.0) -> TargetRegistry:
    """The registered parcels (the crop model's targets)."""
    return TargetRegistry(store.parcel_columns, refresh_seconds)
