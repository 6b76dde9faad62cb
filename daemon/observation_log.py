"""The observation log: each target's observations of a season, and the model's outputs after
each, kept compact and written by the checkpoint that holds the state they led to (so a replay
after a crash logs each observation once).

It serves two things: a decision's evidence (the API, ``eowatch explain``), and late
observations, inserted at their date by stepping the target again from its log
(processing.py).

One store row per (model, target, season), one blob per column, appended to by each checkpoint
(a re-stepped series is written whole):

    times    float64 unix seconds of the acquisition                  8 B
    bands    float16 per band, the values the model stepped       2 B × bands
    outputs  float16 per output (the crop model's log-probabilities)  2 B × outputs
    stops    float16 stopping score after the step                    2 B
    flags    uint8: CLOUDY (skipped, nothing stepped), LATE            1 B

A 12-band parcel under a 9-class model: 53 B per observation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

CLOUDY, LATE = 1, 2  # flags
LOG_BANDS = np.float16  # the precision of logged values; with a log, the model steps these


@dataclass(frozen=True)
class Series:
    """Observations in columns: one target's season (decoded), or a batch of many targets'."""

    times: np.ndarray    # [n] float64
    bands: np.ndarray    # [n, bands] float16
    outputs: np.ndarray  # [n, outputs] float16; NaN where nothing was stepped
    stops: np.ndarray    # [n] float16; NaN where nothing was stepped
    flags: np.ndarray    # [n] uint8

    def __len__(self) -> int:
        return len(self.times)

    def subset(self, index: np.ndarray | slice) -> Series:
        return Series(*(getattr(self, f.name)[index] for f in fields(Series)))

    @classmethod
    def concat(cls, parts: list[Series]) -> Series:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def encode(self) -> dict[str, bytes]:
        return {f.name: np.ascontiguousarray(getattr(self, f.name)).tobytes()
                for f in fields(Series)}

    @classmethod
    def decode(cls, times: bytes, bands: bytes, outputs: bytes, stops: bytes, flags: bytes
               ) -> Series:
        n = len(times) // 8
        return cls(np.frombuffer(times, np.float64),
                   np.frombuffer(bands, np.float16).reshape(n, -1) if n else
                   np.zeros((0, 0), np.float16),
                   np.frombuffer(outputs, np.float16).reshape(n, -1) if n else
                   np.zeros((0, 0), np.float16),
                   np.frombuffer(stops, np.float16), np.frombuffer(flags, np.uint8))

    def in_order(self) -> Series:
        """By acquisition time, an observation logged twice (a producer's retry) once."""
        order = np.lexsort((self.flags, self.times))
        ordered = self.subset(order)
        first = np.ones(len(ordered), bool)
        first[1:] = (np.diff(ordered.times) != 0) | (np.diff(ordered.flags) != 0)
        return ordered.subset(first)

    @property
    def stepped(self) -> np.ndarray:
        """Which observations the model stepped (not skipped as cloudy)."""
        return (self.flags & CLOUDY) == 0

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, f.name).nbytes for f in fields(Series))


@dataclass(frozen=True)
class LogBatch:
    """Entries of many targets, in the order they were logged."""

    targets: np.ndarray  # [n] str
    seasons: np.ndarray  # [n] int64
    series: Series

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, index: np.ndarray) -> LogBatch:
        return LogBatch(self.targets[index], self.seasons[index], self.series.subset(index))

    @classmethod
    def concat(cls, parts: list[LogBatch]) -> LogBatch:
        return cls(np.concatenate([p.targets for p in parts]),
                   np.concatenate([p.seasons for p in parts]),
                   Series.concat([p.series for p in parts]))

    def _grouped(self) -> tuple[LogBatch, np.ndarray]:
        """The entries ordered by (target, season), logged order within each, and the group
        bounds."""
        codes, _ = pd.factorize(self.targets)
        order = np.lexsort((self.seasons, codes))  # stable: the logged order within a group
        batch = self.subset(order)
        cuts = np.flatnonzero((np.diff(codes[order]) != 0) | (np.diff(batch.seasons) != 0)) + 1
        return batch, np.concatenate([[0], cuts, [len(batch)]]).astype(np.int64)

    def groups(self) -> Iterator[tuple[tuple[str, int], Series]]:
        """Each (target, season) with its entries in the order they were logged."""
        batch, bounds = self._grouped()
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            yield (str(batch.targets[a]), int(batch.seasons[a])), batch.series.subset(slice(a, b))

    def encoded(self) -> Iterator[tuple[str, int, list[bytes]]]:
        """Each (target, season) with its entries' bytes per column (``Series`` field order),
        as the store writes them. Each column is cut into per-entry bytes in one pass, so a
        group costs a few list operations, not numpy calls (most groups hold one entry: a
        checkpoint comes every few seconds)."""
        batch, bounds = self._grouped()
        columns = []
        for f in fields(Series):
            values = np.ascontiguousarray(getattr(batch.series, f.name))
            flat = values.reshape(len(values), -1)
            columns.append(flat.view(f"V{flat.shape[1] * flat.itemsize}").ravel().tolist())
        targets, seasons = batch.targets.tolist(), batch.seasons.tolist()
        for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
            yield (str(targets[a]), int(seasons[a]),
                   [c[a] if b - a == 1 else b"".join(c[a:b]) for c in columns])


@dataclass
class LogTake:
    """What one checkpoint writes: the entries since the last one, and the (target, season)
    series among them that were re-stepped, hence written whole instead of appended."""

    batch: LogBatch | None
    replaced: set[tuple[str, int]]


class PendingLog:
    """What a processor logged since its last checkpoint."""

    def __init__(self) -> None:
        self.batches: list[LogBatch] = []
        self.replaced: set[tuple[str, int]] = set()

    def add(self, targets: np.ndarray, seasons: np.ndarray, times: np.ndarray,
            bands: np.ndarray, outputs: np.ndarray, stops: np.ndarray, flags: np.ndarray | int
            ) -> None:
        n = len(targets)
        if n:
            self.batches.append(LogBatch(
                np.asarray(targets, dtype=object), np.asarray(seasons, np.int64),
                Series(np.asarray(times, np.float64), np.asarray(bands, LOG_BANDS),
                       np.asarray(outputs, np.float16), np.asarray(stops, np.float16),
                       np.broadcast_to(np.asarray(flags, np.uint8), (n,)).copy())))

    def take(self) -> LogTake:
        batch = LogBatch.concat(self.batches) if self.batches else None
        taken = LogTake(batch, self.replaced)
        self.batches, self.replaced = [], set()
        return taken

    def put_back(self, taken: LogTake) -> None:
        """A checkpoint that was not written: its entries go before those logged since."""
        if taken.batch is not None:
            self.batches.insert(0, taken.batch)
        self.replaced |= taken.replaced

    def retain(self, alive: Callable[[np.ndarray], np.ndarray]) -> None:
        """Keep the entries of the targets for which ``alive`` (a mask over an array of target
        ids) holds: those of shards let go of are their next owner's to log."""
        self.batches = [b.subset(np.flatnonzero(alive(b.targets))) for b in self.batches]
        self.batches = [b for b in self.batches if len(b)]
        if self.replaced:
            keys = list(self.replaced)
            mask = alive(np.array([k[0] for k in keys], dtype=object))
            self.replaced = {k for k, m in zip(keys, mask.tolist(), strict=True) if m}

    def drop(self, targets: Iterable[str]) -> None:
        """Forget these targets' entries (their whole series is logged again)."""
        gone = pd.Index(list(targets), dtype=object)
        self.retain(lambda ids: ~pd.Index(ids, dtype=object).isin(gone))

    def series_of(self, targets: Iterable[str]) -> dict[tuple[str, int], Series]:
        """The pending entries of these targets, by (target, season)."""
        wanted = pd.Index(list(targets), dtype=object)
        parts = [b.subset(np.flatnonzero(pd.Index(b.targets, dtype=object).isin(wanted)))
                 for b in self.batches]
        parts = [p for p in parts if len(p)]
        return dict(LogBatch.concat(parts).groups()) if parts else {}
