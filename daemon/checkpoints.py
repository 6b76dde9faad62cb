"""Checkpoints written on a thread of their own, one at a time.

The consumer takes a snapshot (changed state rows, packed; decisions, alerts and dead letters
since the last one; the source offsets) and goes on stepping the next batches while this writer
commits the snapshot in one store transaction; the database releases the GIL while it works.
Only one write is in flight: the next snapshot waits for it, which bounds memory and keeps
commits in order. A periodic checkpoint that falls due while a write is still running is put
off until it ends, so checkpoints come as often as the store keeps up (and at most every N
seconds or M chunks). Whoever needs the state durable (a revocation, paging a shard out,
closing) waits.

A write that fails hands its snapshot back, so the next checkpoint writes it again: nothing
is dropped from a checkpoint because the store was briefly unavailable.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from eowatch.errors import EowatchError

from .metrics import Metrics
from .observation_log import LogTake
from .store.store import Store

log = logging.getLogger(__name__)


@dataclass
class Snapshot:
    rows: dict[str, list[tuple[str, int, bytes, str | None]]]  # per model: packed state rows
    row_ids: dict[str, list[int]]                              # per model: their table rows
    decisions: list[dict[str, Any]]
    dead_letters: list[dict[str, Any]]
    offsets: dict[tuple[str, int], int]
    epochs: dict[int, int] = field(default_factory=dict)  # shard -> the writer's claim
    alerts: list[dict[str, Any]] = field(default_factory=list)  # store rows of flood alerts
    deliveries: list[dict[str, Any]] = field(default_factory=list)  # their webhooks (outbox)
    logs: dict[str, LogTake] = field(default_factory=dict)  # per model: its observation log
    taken_at: float = field(default_factory=time.perf_counter)


class CheckpointError(RuntimeError):
    """A checkpoint write failed; ``snapshot`` is what it was writing."""

    def __init__(self, snapshot: Snapshot, cause: BaseException) -> None:
        super().__init__(f"checkpoint write failed: {cause.__class__.__name__}: {cause}")
        self.snapshot = snapshot


class FencedError(EowatchError):
    """Another member claimed some of the writer's shards since: nothing was written."""

    def __init__(self, snapshot: Snapshot, shards: list[int]) -> None:
        super().__init__(f"shards {shards} belong to another member now")
        self.snapshot, self.shards = snapshot, shards


class CheckpointWriter:
    def __init__(self, store: Store, group: str, metrics: Metrics) -> None:
        self.store, self.group, self.metrics = store, group, metrics
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="checkpoint")
        self._in_flight: Future[Snapshot] | None = None

    def submit(self, snapshot: Snapshot) -> Snapshot | None:
        """Start writing ``snapshot``; returns the previous one once it is durable."""
        done = self.wait()
        self._in_flight = self._executor.submit(self._write, snapshot)
        return done

    @property
    def busy(self) -> bool:
        return self._in_flight is not None and not self._in_flight.done()

    def wait(self) -> Snapshot | None:
        """Block until the write in flight is durable and return its snapshot (None if there
        was none); raise CheckpointError, carrying the snapshot, if it failed."""
        future, self._in_flight = self._in_flight, None
        return None if future is None else future.result()

    def _write(self, snapshot: Snapshot) -> Snapshot:
        try:
            with self.store.transaction() as conn:
                # first, and locked to the end: a stale owner (paused past its session while
                # the group moved its shards) must not overwrite its successor's checkpoint
                stale = self.store.stale_shards(conn, self.group, snapshot.epochs)
                if stale:
                    raise FencedError(snapshot, stale)
                for model, rows in snapshot.rows.items():
                    self.store.save_states(conn, model, rows)
                for model, taken in snapshot.logs.items():
                    self.store.write_log(conn, model, taken)
                self.store.insert_decisions(conn, snapshot.decisions)
                self.store.insert_alerts(conn, snapshot.alerts)
                self.store.insert_deliveries(conn, snapshot.deliveries)
                self.store.insert_dead_letters(conn, snapshot.dead_letters)
                self.store.save_offsets(conn, self.group, snapshot.offsets)
        except FencedError:
            raise
        except Exception as exc:  # handed back to the consumer thread with the snapshot
            raise CheckpointError(snapshot, exc) from exc
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - snapshot.taken_at)
        return snapshot

    def close(self) -> None:
        """Wait for the write in flight, then stop; a failed one is dropped (the store keeps
        the checkpoint before it, from which the next start replays)."""
        try:
            self.wait()
        except CheckpointError as exc:
            log.error("%s; the next start replays from the checkpoint before it", exc)
        finally:
            self._executor.shutdown(wait=True)
