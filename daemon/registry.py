"""Registered targets of one kind, as columns: id -> shard and season start."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable

import numpy as np
import pandas as pd

from .store.store import Store

Columns = tuple[list[str], list[int], list[str | None]]  # ids, shards, season starts


class TargetRegistry:
    """Known targets with vectorised lookups; ``columns`` reads them from the store.

    On a miss the registry reloads at once when the store's ``version`` of its targets changed
    since the last load (targets registered a moment before their first observations arrive
    are found, not dead-lettered), and otherwise at most every ``refresh_seconds``; the version
    is asked at most every ``VERSION_SECONDS``, so ids that are truly unknown cost little."""

    VERSION_SECONDS = 0.5

    def __init__(self, columns: Callable[[], Columns], refresh_seconds: float = 5.0,
                 version: Callable[[], Hashable] | None = None) -> None:
        self.columns, self.refresh_seconds, self.version = columns, refresh_seconds, version
        self._loaded_at = -np.inf
        self._version: Hashable = None
        self._version_at = -np.inf
        self.refresh()

    def _changed(self) -> bool:
        if self.version is None or time.monotonic() - self._version_at < self.VERSION_SECONDS:
            return False
        self._version_at = time.monotonic()
        return self.version() != self._version

    def refresh(self) -> None:
        if self.version is not None:
            self._version, self._version_at = self.version(), time.monotonic()
        ids, shards, starts = self.columns()
        self.index = pd.Index(ids, dtype=object)
        self.shards = np.array(shards, np.int64)
        self.season_starts = np.array(starts, dtype=object)
        self._loaded_at = time.monotonic()

    def lookup(self, target_ids: np.ndarray) -> np.ndarray:
        """Registry position of each id (-1: unknown), refreshing once in a while on a miss."""
        target = pd.Index(target_ids, dtype=object)  # no string-dtype inference per call
        found = self.index.get_indexer(target)
        if (found < 0).any() and (time.monotonic() - self._loaded_at > self.refresh_seconds
                                  or self._changed()):
            self.refresh()
            found = self.index.get_indexer(target)
        return found


def parcel_registry(store: Store, refresh_seconds: float = 5.0) -> TargetRegistry:
    """The registered parcels (the crop model's targets)."""
    return TargetRegistry(store.parcel_columns, refresh_seconds, store.parcels_version)


def cell_registry(store: Store, refresh_seconds: float = 5.0) -> TargetRegistry:
    """The registered cells of areas (the flood model's targets)."""
    return TargetRegistry(store.cell_columns, refresh_seconds, store.cells_version)
