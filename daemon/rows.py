"""The rows of a wave, column by column, and how they lie in the state table."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from eowatch.contract.messages import ObservationChunk


@dataclass(frozen=True)
class Rows:
    """Observations of one wave, one entry per target, from one or more chunks."""

    target_ids: np.ndarray     # [n] str
    shards: np.ndarray         # [n] int64
    values: np.ndarray         # [n, bands] float32
    valid_fraction: np.ndarray  # [n] float32
    time: np.ndarray           # [n] float64 unix seconds of the acquisition
    season: np.ndarray         # [n] int64
    day: np.ndarray            # [n] float32 day of season
    feed: np.ndarray           # [n] str
    acquisition: np.ndarray    # [n] str

    @classmethod
    def of(cls, chunk: ObservationChunk, keep: np.ndarray, shards: np.ndarray,
           season: np.ndarray, day: np.ndarray) -> Rows:
        """Rows of the chunk selected by ``keep``, with their shards and seasons."""
        ids = chunk.parcel_ids[keep]
        n = len(ids)
        return cls(ids, shards, chunk.values[keep], chunk.valid_fraction[keep],
                   np.full(n, chunk.acquired_at.timestamp()), season, day,
                   np.full(n, chunk.feed, dtype=object),
                   np.full(n, chunk.acquisition_id, dtype=object))

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in cls.__dataclass_fields__))

    def subset(self, mask: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


def contiguous(rows: np.ndarray) -> slice | None:
    """The rows as a slice when they are consecutive and ascending (a shard's parcels take
    consecutive rows, so a slice of a wave that holds all of them qualifies), so the state is
    read as a view and written back without an index."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return None
