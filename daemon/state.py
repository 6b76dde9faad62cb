"""Per-parcel recurrent state as dense tensors with a parcel -> row index.

One gather, one batched model step and one scatter per micro-batch: no per-parcel Python
objects. Rows belong to shards; a shard is loaded as a whole (from its checkpoint) and dropped
as a whole (on partition revocation, or when the memory budget pages it out).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from eowatch.errors import EowatchError

if TYPE_CHECKING:
    from .store.store import Store

# numpy arrays kept per row, with the value of a fresh row
COLUMNS: dict[str, tuple[Any, Any]] = {
    "p_stop": (np.float32, 0.0), "day": (np.float32, 0.0), "season": (np.int64, -1),
    "shard": (np.int64, -1), "observations": (np.int64, 0), "last_time": (np.float64, -np.inf),
    "decided": (bool, False), "acquisition": (object, None), "ids": (object, None),
}


class StateTable:
    """Rows of [layers, 2, hidden] state plus each parcel's outputs and bookkeeping.

    Arrays grow by doubling and reuse the rows of dropped shards; ``dirty`` holds the rows
    changed since the last checkpoint.
    """

    p_stop: np.ndarray
    day: np.ndarray
    season: np.ndarray
    shard: np.ndarray
    observations: np.ndarray
    last_time: np.ndarray
    decided: np.ndarray
    acquisition: np.ndarray
    ids: np.ndarray

    def __init__(self, state_shape: tuple[int, int, int], n_classes: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 capacity: int = 1024) -> None:
        self.state_shape, self.n_classes = state_shape, n_classes
        self.device, self.dtype = torch.device(device), dtype
        self.state = torch.zeros((capacity, *state_shape), device=self.device, dtype=dtype)
        self.log_probs = np.zeros((capacity, n_classes), np.float32)
        for name, (dtype_, fill) in COLUMNS.items():
            setattr(self, name, np.full(capacity, fill, dtype=dtype_))
        self.free = list(range(capacity - 1, -1, -1))  # a stack: low rows first
        self.dirty: set[int] = set()
        self._reindex()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def capacity(self) -> int:
        return int(self.state.shape[0])

    @property
    def bytes_per_parcel(self) -> int:
        """Bytes of recurrent state per parcel (the tensor row alone)."""
        return int(np.prod(self.state_shape)) * self.state.element_size()

    @property
    def bytes_per_row(self) -> int:
        """Bytes a parcel costs in memory: state, outputs and bookkeeping."""
        return self.bytes_per_parcel + 4 * self.n_classes + 4 + 4 + 8 + 8 + 8 + 8 + 1 + 16

    def _reindex(self) -> None:
        self.live = np.flatnonzero(self.shard >= 0)
        self.index = pd.Index(self.ids[self.live], dtype=object)

    def _grow(self, needed: int) -> None:
        capacity = self.capacity
        if needed <= len(self.free):
            return
        new = max(capacity * 2, capacity + needed - len(self.free))
        grown = torch.zeros((new, *self.state_shape), device=self.device, dtype=self.dtype)
        grown[:capacity] = self.state
        self.state = grown
        log_probs = np.zeros((new, self.n_classes), np.float32)
        log_probs[:capacity] = self.log_probs
        self.log_probs = log_probs
        for name, (dtype_, fill) in COLUMNS.items():
            arr = np.full(new, fill, dtype=dtype_)
            arr[:capacity] = getattr(self, name)
            setattr(self, name, arr)
        self.free = list(range(new - 1, capacity - 1, -1)) + self.free

    def lookup(self, parcel_ids: np.ndarray) -> np.ndarray:
        """Row of each parcel, -1 for parcels without a row."""
        if len(self.live) == 0:
            return np.full(len(parcel_ids), -1, np.int64)
        found = self.index.get_indexer(pd.Index(parcel_ids, dtype=object))
        return np.where(found >= 0, self.live[np.maximum(found, 0)], -1)

    def add(self, parcel_ids: np.ndarray, shards: np.ndarray) -> np.ndarray:
        """Fresh rows (zero state, no season) for parcels that have none; returns all rows."""
        rows = self.lookup(parcel_ids)
        new = rows < 0
        if new.any():
            fresh, first = np.unique(np.asarray(parcel_ids[new], dtype=object),
                                     return_index=True)
            self._grow(len(fresh))
            taken = np.array([self.free.pop() for _ in range(len(fresh))], dtype=np.int64)
            self.ids[taken] = fresh
            self.shard[taken] = shards[new][first]
            self._reindex()
            rows = self.lookup(parcel_ids)
        return rows

    def drop_shards(self, shards: Iterable[int]) -> int:
        """Forget every row of these shards (checkpoint them first); returns rows freed."""
        rows = np.flatnonzero(np.isin(self.shard, list(shards)))
        if rows.size == 0:
            return 0
        self.state[torch.as_tensor(rows, device=self.device)] = 0
        self.log_probs[rows] = 0
        for name, (_, fill) in COLUMNS.items():
            getattr(self, name)[rows] = fill
        self.dirty.difference_update(rows.tolist())
        self.free.extend(sorted(rows.tolist(), reverse=True))
        self._reindex()
        return int(rows.size)

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
        return str(self.ids[row])

    def rows_of_shard(self, shard: int) -> np.ndarray:
        return np.flatnonzero(self.shard == shard)

    def dirty_shards(self) -> set[int]:
        return set(self.shard[list(self.dirty)].tolist()) if self.dirty else set()

    def snapshot(self, shard: int) -> tuple[int, bytes]:
        """(parcels, Arrow IPC bytes) of every row of a shard: its checkpoint. The arrays are
        copied into the buffer, so the table may change while the bytes are written."""
        rows = self.rows_of_shard(shard)
        state = self.state[torch.as_tensor(rows, device=self.device)].cpu().numpy()
        width = int(np.prod(self.state_shape))
        columns = {
            "parcel_id": pa.array(self.ids[rows], pa.string()),
            "state": pa.FixedSizeListArray.from_arrays(pa.array(state.reshape(-1)), width),
            "log_probs": pa.FixedSizeListArray.from_arrays(
                pa.array(self.log_probs[rows].reshape(-1)), self.n_classes),
            **{name: pa.array(getattr(self, name)[rows]) for name in SNAPSHOT_COLUMNS},
            "acquisition": pa.array(self.acquisition[rows], pa.string()),
        }
        batch = pa.record_batch(list(columns.values()), names=list(columns))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema.with_metadata(
                {"eowatch_state": json.dumps({"version": 1, "shard": shard,
                                              "state_shape": list(self.state_shape)})})) as w:
            w.write_batch(batch)
        return len(rows), sink.getvalue().to_pybytes()

    def restore(self, payload: bytes) -> None:
        """Load a shard's checkpoint (the inverse of ``snapshot``)."""
        batch, shard = read_snapshot(payload, self.state_shape)
        ids = batch.column("parcel_id").to_numpy(zero_copy_only=False)
        rows = self.add(ids, np.full(len(ids), shard, np.int64))
        state = batch.column("state").flatten().to_numpy(zero_copy_only=False)
        self.state[torch.as_tensor(rows, device=self.device)] = torch.as_tensor(
            state.reshape(len(ids), *self.state_shape).copy(), device=self.device).to(self.dtype)
        self.log_probs[rows] = batch.column("log_probs").flatten().to_numpy(
            zero_copy_only=False).reshape(len(ids), -1)
        for name in SNAPSHOT_COLUMNS:
            getattr(self, name)[rows] = batch.column(name).to_numpy(zero_copy_only=False)
        self.acquisition[rows] = batch.column("acquisition").to_numpy(zero_copy_only=False)


SNAPSHOT_COLUMNS = ("p_stop", "day", "season", "observations", "last_time", "decided")


def read_snapshot(payload: bytes, state_shape: tuple[int, ...] | None = None
                  ) -> tuple[pa.RecordBatch, int]:
    """(record batch, shard) of a checkpoint; refuses one written for another model shape."""
    reader = pa.ipc.open_stream(payload)
    meta = json.loads(reader.schema.metadata[b"eowatch_state"])
    if state_shape is not None and tuple(meta["state_shape"]) != tuple(state_shape):
        raise EowatchError(f"the checkpoint of shard {meta['shard']} holds state of shape "
                           f"{meta['state_shape']}, the model needs {list(state_shape)}: a "
                           "different model was deployed over old state; start a new consumer "
                           "group (EOWATCH_CONSUMER_GROUP) or restore the previous model")
    return reader.read_next_batch(), int(meta["shard"])


def parcel_in_snapshot(payload: bytes, parcel_id: str) -> dict[str, Any] | None:
    """One parcel's checkpointed row, as plain values (for the API)."""
    batch, _ = read_snapshot(payload)
    ids = batch.column("parcel_id").to_numpy(zero_copy_only=False)
    where = np.flatnonzero(ids == parcel_id)
    if where.size == 0:
        return None
    row = batch.slice(int(where[0]), 1).to_pylist()[0]
    row.pop("state")
    return row


def checkpointed_parcel(store: Store, parcel_id: str) -> dict[str, Any] | None:
    """A registered parcel's state as of its shard's last checkpoint, or None."""
    parcel = store.get_parcel(parcel_id)
    if parcel is None:
        return None
    payloads = store.load_shards([parcel["shard"]])
    return parcel_in_snapshot(payloads[0], parcel_id) if payloads else None
