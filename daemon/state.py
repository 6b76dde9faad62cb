"""Per-target recurrent state as dense tensors with a target -> row index.

One gather, one batched model step and one scatter per micro-batch: no per-parcel Python
objects. Rows belong to shards; a shard is loaded as a whole (from its checkpoint) and dropped
as a whole (on partition revocation, or when the memory budget pages it out).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
import torch

from eowatch.errors import EowatchError
from eowatch.models.network import Architecture

from .state_model import StateModel
from .store.store import Store

# numpy arrays kept per row, with the value of a fresh row
COLUMNS: dict[str, tuple[Any, Any]] = {
    "p_stop": (np.float32, 0.0), "day": (np.float32, 0.0), "season": (np.int64, -1),
    "shard": (np.int64, -1), "observations": (np.int64, 0), "last_time": (np.float64, -np.inf),
    "decided": (bool, False), "acquisition": (object, None), "ids": (object, None),
}


class StateTable:
    """Rows of a state model's state plus each target's outputs and bookkeeping.

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

    def __init__(self, model: StateModel, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32, capacity: int = 1024) -> None:
        self.model = model
        self.state_shape, self.n_outputs = model.state_shape, len(model.output_names)
        self.device, self.dtype = torch.device(device), dtype
        self.state = torch.zeros((capacity, *self.state_shape), device=self.device, dtype=dtype)
        self.outputs = np.zeros((capacity, self.n_outputs), np.float32)
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
        return self.bytes_per_parcel + 4 * self.n_outputs + 4 + 4 + 8 + 8 + 8 + 8 + 1 + 16

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
        outputs = np.zeros((new, self.n_outputs), np.float32)
        outputs[:capacity] = self.outputs
        self.outputs = outputs
        for name, (dtype_, fill) in COLUMNS.items():
            arr = np.full(new, fill, dtype=dtype_)
            arr[:capacity] = getattr(self, name)
            setattr(self, name, arr)
        self.free = list(range(new - 1, capacity - 1, -1)) + self.free

    def lookup(self, target_ids: np.ndarray) -> np.ndarray:
        """Row of each target, -1 for targets without a row."""
        if len(self.live) == 0:
            return np.full(len(target_ids), -1, np.int64)
        found = self.index.get_indexer(pd.Index(target_ids, dtype=object))
        return np.where(found >= 0, self.live[np.maximum(found, 0)], -1)

    def has(self, target_ids: np.ndarray) -> np.ndarray:
        """Which of these targets have a row."""
        return self.lookup(target_ids) >= 0

    def add(self, target_ids: np.ndarray, shards: np.ndarray) -> np.ndarray:
        """Fresh rows (zero state, no season) for targets that have none; returns all rows.

        Fresh rows are taken in (shard, parcel id) order, the order of the parcels in a
        feed's chunks, so a chunk's rows are usually one block (see ``contiguous``)."""
        rows = self.lookup(target_ids)
        new = rows < 0
        if new.any():
            fresh, first = np.unique(np.asarray(target_ids[new], dtype=object),
                                     return_index=True)
            fresh_shards = shards[new][first]
            order = np.argsort(fresh_shards, kind="stable")
            self._grow(len(fresh))
            taken = np.array([self.free.pop() for _ in range(len(fresh))], dtype=np.int64)
            self.ids[taken] = fresh[order]
            self.shard[taken] = fresh_shards[order]
            self._initialise(taken)
            self._reindex()
            rows = self.lookup(target_ids)
        return rows

    def drop_shards(self, shards: Iterable[int]) -> int:
        """Forget every row of these shards (checkpoint them first); returns rows freed."""
        rows = np.flatnonzero(np.isin(self.shard, list(shards)))
        if rows.size == 0:
            return 0
        self.outputs[rows] = 0
        for name, (_, fill) in COLUMNS.items():
            getattr(self, name)[rows] = fill
        self.dirty.difference_update(rows.tolist())
        self.free.extend(sorted(rows.tolist(), reverse=True))
        self._reindex()
        return int(rows.size)

    def _initialise(self, rows: np.ndarray) -> None:
        self.state[torch.as_tensor(rows, device=self.device)] = self.model.initial_state(
            len(rows), self.device, self.dtype)

    def reset(self, rows: np.ndarray, season: np.ndarray) -> None:
        """Start a new season on these rows."""
        self._initialise(rows)
        self.outputs[rows] = 0
        self.p_stop[rows] = 0
        self.day[rows] = 0
        self.season[rows] = season
        self.observations[rows] = 0
        self.decided[rows] = False
        self.acquisition[rows] = None
        self.dirty.update(rows.tolist())

    def target_id(self, row: int) -> str:
        return str(self.ids[row])

    def rows_of_shard(self, shard: int) -> np.ndarray:
        return np.flatnonzero(self.shard == shard)

    def dirty_shards(self) -> set[int]:
        return set(self.shard[list(self.dirty)].tolist()) if self.dirty else set()

    def record_dtype(self) -> np.dtype:
        """The packed layout of one parcel's checkpoint record."""
        return record_dtype(self.state_shape, self.n_outputs, self.state.dtype)

    def checkpoint_rows(self, rows: Iterable[int]) -> list[tuple[str, int, bytes, str | None]]:
        """(parcel id, shard, packed record, acquisition id) of these rows, for the store.

        Fields are filled column-wise and the records cut from one buffer: no per-field work
        per parcel. The values are copies: the table may change while they are written.
        Rows are read in table order, which keeps the gather sequential in memory."""
        rows = np.sort(np.fromiter(rows, np.int64))
        if rows.size == 0:
            return []
        packed = np.empty(rows.size, self.record_dtype())
        packed["state"] = self.state[torch.as_tensor(rows, device=self.device)].cpu().numpy()
        packed["log_probs"] = self.outputs[rows]
        for name in PACKED_COLUMNS:
            packed[name] = getattr(self, name)[rows]
        blobs = packed.view(f"V{packed.dtype.itemsize}").tolist()
        return list(zip(self.ids[rows].tolist(), self.shard[rows].tolist(), blobs,
                        self.acquisition[rows].tolist(), strict=True))

    def restore(self, records: list[tuple[str, int, bytes, str | None]]) -> None:
        """Load checkpoint records (parcel id, shard, packed record, acquisition id), as
        ``checkpoint_rows`` makes them. Records of another layout (another model) are refused."""
        if not records:
            return
        dtype = self.record_dtype()
        ids, shards, blobs, acquisitions = zip(*records, strict=True)
        if any(len(b) != dtype.itemsize for b in blobs):
            raise EowatchError(
                f"checkpointed state does not fit the model's layout ({dtype.itemsize} bytes per "
                "parcel): a model of another shape or state precision was deployed over old "
                "state; use a new consumer group (EOWATCH_CONSUMER_GROUP) or the previous model "
                "and EOWATCH_STATE_DTYPE")
        packed = np.frombuffer(b"".join(blobs), dtype)
        rows = self.add(np.array(ids, dtype=object), np.array(shards, np.int64))
        self.state[torch.as_tensor(rows, device=self.device)] = torch.as_tensor(
            packed["state"].copy(), device=self.device)
        self.outputs[rows] = packed["log_probs"]
        for name in PACKED_COLUMNS:
            getattr(self, name)[rows] = packed[name]
        self.acquisition[rows] = np.array(acquisitions, dtype=object)


PACKED_COLUMNS = ("p_stop", "day", "season", "observations", "last_time", "decided")


def record_dtype(state_shape: tuple[int, ...], n_classes: int,
                 state_dtype: torch.dtype = torch.float32) -> np.dtype:
    state = {torch.float16: np.float16, torch.float64: np.float64}.get(state_dtype, np.float32)
    return np.dtype([("state", state, state_shape), ("log_probs", np.float32, (n_classes,)),
                     ("p_stop", np.float32), ("day", np.float32), ("season", np.int64),
                     ("observations", np.int64), ("last_time", np.float64), ("decided", bool)])


def unpack(data: bytes, state_shape: tuple[int, ...], n_classes: int) -> dict[str, Any]:
    """One packed record as plain values (state left out), for the API."""
    for state_dtype in (torch.float32, torch.float16, torch.float64):
        dtype = record_dtype(state_shape, n_classes, state_dtype)
        if len(data) == dtype.itemsize:
            record = np.frombuffer(data, dtype)[0]
            return {"log_probs": record["log_probs"].tolist(),
                    **{name: record[name].item() for name in PACKED_COLUMNS}}
    raise EowatchError(f"a checkpoint record of {len(data)} bytes does not fit the model")


def checkpointed_parcel(store: Store, parcel_id: str, architecture: dict[str, Any],
                        model_sha256: str) -> dict[str, Any] | None:
    """A parcel's state under a model as of its last checkpoint (plain values), or None."""
    found = store.get_state(model_sha256, parcel_id)
    if found is None:
        return None
    arch = Architecture(**architecture)
    return {**unpack(found[0], arch.state_shape, arch.n_classes), "acquisition": found[1]}
