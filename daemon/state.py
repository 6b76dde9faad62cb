"""Per-parcel recurrent state as dense tensors with a parcel -> row index.

One gather, one batched model step and one scatter per chunk: no per-parcel Python objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from .store.tables import utcnow


class StateTable:
    """Rows of [layers, 2, hidden] state, plus the outputs and bookkeeping of each parcel.

    Arrays grow by doubling; ``dirty`` holds the rows changed since the last checkpoint.
    """

    def __init__(self, state_shape: tuple[int, int, int], n_classes: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 capacity: int = 1024) -> None:
        self.state_shape, self.n_classes = state_shape, n_classes
        self.device, self.dtype = torch.device(device), dtype
        self.index = pd.Index([], dtype=object)
        self._ids: list[str] = []
        self.state = torch.zeros((capacity, *state_shape), device=self.device, dtype=dtype)
        self.log_probs = np.zeros((capacity, n_classes), np.float32)
        self.p_stop = np.zeros(capacity, np.float32)
        self.day = np.zeros(capacity, np.float32)
        self.season = np.full(capacity, -1, np.int64)
        self.shard = np.zeros(capacity, np.int64)
        self.observations = np.zeros(capacity, np.int64)
        self.last_time = np.full(capacity, -np.inf)  # unix seconds of the last observation
        self.decided = np.zeros(capacity, bool)
        self.acquisition = np.empty(capacity, object)
        self.dirty: set[int] = set()

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def bytes_per_parcel(self) -> int:
        return int(np.prod(self.state_shape)) * self.state.element_size()

    def _grow(self, needed: int) -> None:
        capacity = self.state.shape[0]
        if needed <= capacity:
            return
        new = max(needed, capacity * 2)
        grown = torch.zeros((new, *self.state_shape), device=self.device, dtype=self.dtype)
        grown[:capacity] = self.state
        self.state = grown
        for name, fill in (("log_probs", 0), ("p_stop", 0), ("day", 0), ("season", -1),
                           ("shard", 0), ("observations", 0), ("last_time", -np.inf),
                           ("decided", False), ("acquisition", None)):
            old = getattr(self, name)
            arr = np.full((new, *old.shape[1:]), fill, dtype=old.dtype)
            arr[:capacity] = old
            setattr(self, name, arr)

    def rows(self, parcel_ids: np.ndarray, shards: np.ndarray) -> np.ndarray:
        """Row of each parcel, adding rows (zero state, no season) for unseen parcels."""
        target = pd.Index(parcel_ids, dtype=object)
        rows = self.index.get_indexer(target)
        new = rows < 0
        if new.any():
            fresh = pd.unique(np.asarray(parcel_ids[new], dtype=object))
            start = len(self._ids)
            self._grow(start + len(fresh))
            self._ids.extend(fresh)
            self.index = pd.Index(self._ids, dtype=object)
            rows = self.index.get_indexer(target)
            self.shard[rows[new]] = shards[new]
        return rows

    def reset(self, rows: np.ndarray, season: np.ndarray) -> None:
        """Start a new season on these rows."""
        self.state[torch.as_tensor(rows, device=self.device)] = 0
        self.log_probs[rows] = 0
        self.p_stop[rows] = 0
        self.day[rows] = 0
        self.season[rows] = season
        self.observations[rows] = 0
        self.decided[rows] = False
        self.acquisition[rows] = None
        self.dirty.update(rows.tolist())

    def parcel_id(self, row: int) -> str:
        return self._ids[row]

    def rows_of_shard(self, shard: int) -> np.ndarray:
        return np.flatnonzero(self.shard[: len(self._ids)] == shard)

    def to_records(self, rows: Iterable[int]) -> list[dict[str, Any]]:
        """Store rows for a checkpoint."""
        rows = sorted(rows)
        if not rows:
            return []
        states = self.state[torch.as_tensor(rows, device=self.device)].float().cpu().numpy()
        now = utcnow()
        records = []
        for i, row in enumerate(rows):
            last = self.last_time[row]
            records.append({
                "parcel_id": self._ids[row], "shard": int(self.shard[row]),
                "season": int(self.season[row]), "observations": int(self.observations[row]),
                "last_acquired_at": None if not np.isfinite(last) else
                pd.Timestamp(last, unit="s", tz="UTC").to_pydatetime(),
                "state": states[i].tobytes(), "log_probs": self.log_probs[row].tobytes(),
                "p_stop": float(self.p_stop[row]), "day_of_season": float(self.day[row]),
                "acquisition_id": self.acquisition[row] or "", "decided": bool(self.decided[row]),
                "updated_at": now})
        return records

    def load_records(self, records: Sequence[dict[str, Any]]) -> None:
        """Restore rows from checkpoint records (the inverse of ``to_records``)."""
        if not records:
            return
        ids = np.array([r["parcel_id"] for r in records], dtype=object)
        rows = self.rows(ids, np.array([r["shard"] for r in records], np.int64))
        states = np.stack([np.frombuffer(r["state"], np.float32).reshape(self.state_shape)
                           for r in records])
        self.state[torch.as_tensor(rows, device=self.device)] = torch.as_tensor(
            states, device=self.device, dtype=self.dtype)
        self.log_probs[rows] = np.stack([np.frombuffer(r["log_probs"], np.float32)
                                         for r in records])
        self.p_stop[rows] = [r["p_stop"] for r in records]
        self.day[rows] = [r["day_of_season"] for r in records]
        self.season[rows] = [r["season"] for r in records]
        self.observations[rows] = [r["observations"] for r in records]
        self.last_time[rows] = [r["last_acquired_at"].timestamp() if r["last_acquired_at"]
                                else -np.inf for r in records]
        self.decided[rows] = [r["decided"] for r in records]
        self.acquisition[rows] = [r["acquisition_id"] or None for r in records]
