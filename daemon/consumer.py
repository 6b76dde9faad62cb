"""The stateful consumer: chunks in, model steps, decisions out, checkpoints with offsets.

Stages, named the same in logs, metric labels and dead-letter reasons:
decode -> validate -> season -> step -> decide -> checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa
import torch

from eowatch.contract.messages import Decision, MessageError, ObservationChunk, decision_id
from eowatch.models.artifact import LoadedModel
from eowatch.seasons import season_of

from .bus.base import Bus, BusConsumer, BusError, Record
from .checkpoints import CheckpointError, CheckpointWriter, FencedError, Snapshot
from .metrics import Metrics
from .output import OutputStage
from .state import StateTable
from .store.store import Store
from .store.tables import utcnow

log = logging.getLogger(__name__)
LOAD_SHARDS_AT_ONCE = 8


@dataclass
class BatchOutput:
    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Rows:
    """Observations of one wave, one entry per parcel, from one or more chunks."""

    parcel_ids: np.ndarray     # [n] str
    shards: np.ndarray         # [n] int64
    values: np.ndarray         # [n, bands] float32
    valid_fraction: np.ndarray  # [n] float32
    time: np.ndarray           # [n] float64 unix seconds of the acquisition
    season: np.ndarray         # [n] int64
    day: np.ndarray            # [n] float32 day of season
    feed: np.ndarray           # [n] str
    acquisition: np.ndarray    # [n] str

    @classmethod
    def of(cls, chunk: ObservationChunk, keep: np.ndarray, positions: np.ndarray,
           processor: Processor) -> Rows:
        """Rows of the chunk selected by ``keep``; ``positions``: their registry positions."""
        ids = chunk.parcel_ids[keep]
        season, day = processor.seasons(chunk, positions)
        n = len(ids)
        return cls(ids, processor.registry.shards[positions], chunk.values[keep],
                   chunk.valid_fraction[keep], np.full(n, chunk.acquired_at.timestamp()),
                   season, day, np.full(n, chunk.feed, dtype=object),
                   np.full(n, chunk.acquisition_id, dtype=object))

    @classmethod
    def concat(cls, parts: list[Rows]) -> Rows:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate([getattr(p, f) for p in parts])
                     for f in cls.__dataclass_fields__))

    def subset(self, mask: np.ndarray) -> Rows:
        return Rows(*(getattr(self, f)[mask] for f in self.__dataclass_fields__))


class ParcelRegistry:
    """Known parcels: id -> shard and season start, vectorised lookups."""

    def __init__(self, store: Store, refresh_seconds: float = 5.0) -> None:
        self.store, self.refresh_seconds = store, refresh_seconds
        self._loaded_at = -np.inf
        self.refresh()

    def refresh(self) -> None:
        ids, shards, starts = self.store.parcel_columns()
        self.index = pd.Index(ids, dtype=object)
        self.shards = np.array(shards, np.int64)
        self.season_starts = np.array(starts, dtype=object)
        self._loaded_at = time.monotonic()

    def lookup(self, parcel_ids: np.ndarray) -> np.ndarray:
        """Registry position of each id (-1: unknown), refreshing once in a while on a miss."""
        target = pd.Index(parcel_ids, dtype=object)  # no string-dtype inference per call
        found = self.index.get_indexer(target)
        if (found < 0).any() and time.monotonic() - self._loaded_at > self.refresh_seconds:
            self.refresh()
            found = self.index.get_indexer(target)
        return found


class Processor:
    """Applies chunks to the state table; pure with respect to the bus and the store."""

    def __init__(self, loaded: LoadedModel, registry: ParcelRegistry, metrics: Metrics,
                 min_valid_fraction: float, season_start: str,
                 stop_threshold: float | None = None,
                 device: str = "cpu", state_dtype: torch.dtype = torch.float32,
                 load_states: Callable[[str, list[int]], list[tuple[str, int, bytes, str | None]]]
                 | None = None,
                 budget_bytes: int | None = None, step_batch: int = 2048) -> None:
        self.model, self.meta = loaded.model, loaded.metadata
        self.registry, self.metrics = registry, metrics
        self.min_valid_fraction = min_valid_fraction
        self.threshold = stop_threshold or self.meta.stop_threshold
        self.default_season_start = season_start  # of parcels registered without one
        self.device = torch.device(device)
        self.table = StateTable(self.model.state_shape, len(self.meta.class_names), self.device,
                                state_dtype)
        self.model_sha256 = loaded.sha256  # state belongs to one model: its rows are keyed so
        self.load_states = load_states or (lambda model, shards: [])
        self.step_batch = step_batch
        self.budget_rows = None if budget_bytes is None else budget_bytes // \
            self.table.bytes_per_row
        self.loaded: dict[int, float] = {}  # shard -> last use (monotonic), the LRU order

    def ensure_shards(self, shards: Iterable[int]) -> None:
        """Load shards from their checkpoints, with a row for every registered parcel."""
        now = time.monotonic()
        missing = [int(s) for s in shards if int(s) not in self.loaded]
        for s in shards:
            self.loaded[int(s)] = now
        if not missing:
            return
        started = time.perf_counter()
        mask = np.isin(self.registry.shards, missing)
        self.table.add(np.asarray(self.registry.index[mask], dtype=object),
                       self.registry.shards[mask])
        # a few shards at a time: a million records in one piece cost more in fresh memory
        # (page faults) than in reading them
        for start in range(0, len(missing), LOAD_SHARDS_AT_ONCE):
            self.table.restore(self.load_states(self.model_sha256,
                                                missing[start:start + LOAD_SHARDS_AT_ONCE]))
        self.metrics.shard_loads.inc(len(missing))
        self.metrics.shard_load_seconds.observe(time.perf_counter() - started)
        self.metrics.parcels_tracked.set(len(self.table))

    def drop_shards(self, shards: Iterable[int]) -> None:
        shards = [s for s in shards if s in self.loaded]
        for s in shards:
            del self.loaded[s]
        self.table.drop_shards(shards)
        self.metrics.parcels_tracked.set(len(self.table))

    def over_budget(self) -> list[int]:
        """Least recently used clean shards to page out so the table fits the budget."""
        if self.budget_rows is None or len(self.table) <= self.budget_rows:
            return []
        dirty = self.table.dirty_shards()
        sizes = np.bincount(self.table.shard[self.table.live])
        excess, victims = len(self.table) - int(self.budget_rows * 0.9), []
        for shard in sorted(self.loaded, key=self.loaded.__getitem__):
            if excess <= 0:
                break
            if shard not in dirty:
                victims.append(shard)
                excess -= int(sizes[shard]) if shard < len(sizes) else 0
        return victims

    def dead_letter(self, out: BatchOutput, record: Record, reason: str, detail: str,
                    with_payload: bool = True) -> None:
        out.dead_letters.append({"topic": record.topic, "partition": record.partition,
                                 "offset": record.offset, "reason": reason, "detail": detail,
                                 "payload": record.value if with_payload else None})
        log.warning("dead letter %s@%s:%s reason=%s: %s", record.topic, record.partition,
                    record.offset, reason, detail)

    def process(self, records: list[Record], out: BatchOutput) -> None:
        """Apply a poll's records. The k-th chunk of every shard forms wave k: a parcel lies in
        one shard, so it appears at most once per wave and its steps keep their order."""
        waves: list[list[tuple[Record, ObservationChunk]]] = []
        seen: Tally[int] = Tally()
        for record in records:
            try:
                chunk = ObservationChunk.decode(record.value)
            except MessageError as exc:
                self.dead_letter(out, record, exc.reason, str(exc))
                continue
            except Exception as exc:  # a decoder bug must not stop the partition either
                self.dead_letter(out, record, "processing_error", f"decode: {summary(exc)}")
                continue
            if chunk.kind == "observations" and chunk.band_names != self.meta.band_names:
                self.dead_letter(out, record, "band_mismatch",
                                 f"chunk bands {list(chunk.band_names)} differ from the model's "
                                 f"{list(self.meta.band_names)}")
                continue
            k = seen[chunk.shard]
            seen[chunk.shard] += 1
            if k == len(waves):
                waves.append([])
            waves[k].append((record, chunk))
        for wave in waves:
            self.apply_guarded(wave, out)

    def apply_guarded(self, wave: list[tuple[Record, ObservationChunk]], out: BatchOutput
                      ) -> None:
        """Apply a wave; should it raise, apply its chunks one at a time and dead-letter each
        chunk that raises alone. An exception must not stop the consumer: the offset would
        never pass the chunk, and every restart would meet it again.

        A retry steps nothing twice: a parcel's bookkeeping moves with each step slice, so a
        chunk already applied reads as a duplicate."""
        decisions, dead_letters = len(out.decisions), len(out.dead_letters)
        try:
            self.apply_wave(wave, out)
            return
        except Exception as exc:
            del out.decisions[decisions:], out.dead_letters[dead_letters:]
            if len(wave) == 1:
                record, chunk = wave[0]
                self.dead_letter(out, record, "processing_error",
                                 f"{chunk.acquisition_id} (shard {chunk.shard}): {summary(exc)}")
                log.debug("processing error", exc_info=True)
                return
            log.warning("a wave of %d chunks failed (%s); applying them one at a time",
                        len(wave), summary(exc))
        for item in wave:
            self.apply_guarded([item], out)

    def validate(self, chunk: ObservationChunk, record: Record, positions: np.ndarray,
                 out: BatchOutput) -> np.ndarray:
        """Mask of rows to use; unknown parcels, NaN values and wrong shards are dead-lettered.

        ``positions``: registry position of each of the chunk's parcels (-1: unknown).
        """
        checks = (
            ("unknown_parcel", positions < 0, "parcel ids not registered"),
            ("nan_values", ~np.isfinite(chunk.values).all(axis=1), "non-finite band values"),
            ("wrong_shard", (positions >= 0) & (self.registry.shards[positions] != chunk.shard),
             f"parcels that do not belong to shard {chunk.shard}"),
        )
        keep = np.ones(len(chunk.parcel_ids), bool)
        for reason, bad, what in checks:
            bad = bad & keep
            if bad.any():
                ids = chunk.parcel_ids[bad]
                listed = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
                self.dead_letter(out, record, reason,
                                 f"{bad.sum()} {what} in {chunk.acquisition_id}: {listed}",
                                 with_payload=False)
                keep &= ~bad
        return keep

    def seasons(self, chunk: ObservationChunk, positions: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """Season label and day of season of this acquisition for each parcel."""
        starts = self.registry.season_starts[positions]
        season = np.empty(len(positions), np.int64)
        day = np.empty(len(positions), np.float32)
        for start in pd.unique(starts):  # a handful of distinct season starts, not parcels
            mask = starts == start
            season[mask], day[mask] = season_of(chunk.acquired_at,
                                                start or self.default_season_start)
        return season, day

    def apply_wave(self, wave: list[tuple[Record, ObservationChunk]], out: BatchOutput) -> None:
        """One gather, one model step and one scatter for every observation of the wave."""
        observed = [(r, c) for r, c in wave if c.kind == "observations"]
        parts = []
        if observed:
            ids = np.concatenate([c.parcel_ids for _, c in observed])
            bounds = np.cumsum([len(c.parcel_ids) for _, c in observed])[:-1]
            for (record, chunk), positions in zip(observed, np.split(self.registry.lookup(ids),
                                                                     bounds), strict=True):
                self.metrics.chunks.labels(chunk.feed).inc()
                keep = self.validate(chunk, record, positions, out)
                if keep.any():
                    parts.append(Rows.of(chunk, keep, positions[keep], self))
        if parts:
            self.apply(Rows.concat(parts), out)
        for _, chunk in wave:
            if chunk.kind == "season_end":
                self.close_season(chunk, out)

    def apply(self, rows_in: Rows, out: BatchOutput) -> None:
        t = self.table
        cloudy = rows_in.valid_fraction < self.min_valid_fraction
        self.metrics.observations_skipped.labels("cloudy").inc(int(cloudy.sum()))
        self.ensure_shards(np.unique(rows_in.shards))
        rows = t.add(rows_in.parcel_ids, rows_in.shards)
        # a parcel's first observation of a later season closes the previous one, cloudy or not
        newer = rows_in.season > t.season[rows]
        if newer.any():
            closing = newer & (t.season[rows] >= 0)  # never-stepped rows have nothing to close
            self.force_decisions(rows[closing], rows_in.feed[closing], out)
            t.reset(rows[newer], rows_in.season[newer])
        use = ~cloudy
        # the same acquisition again (a producer retry) is a duplicate; an older one of this
        # season (published late) or of a closed season is late: the state has moved past it
        duplicate = use & (t.last_time[rows] == rows_in.time)
        late = use & ~duplicate & ((rows_in.season < t.season[rows])
                                   | (t.last_time[rows] > rows_in.time))
        self.metrics.observations_skipped.labels("late").inc(int(late.sum()))
        self.metrics.observations_skipped.labels("duplicate").inc(int(duplicate.sum()))
        use &= ~late & ~duplicate
        if not use.any():
            return
        rows, batch = rows[use], rows_in.subset(use)
        self.step(rows, batch)
        for feed in pd.unique(batch.feed):
            self.metrics.observations.labels(feed).inc(int((batch.feed == feed).sum()))
        fire = (t.p_stop[rows] >= self.threshold) & ~t.decided[rows]
        if fire.any():
            self.decide(rows[fire], batch.feed[fire], forced=False, out=out)

    @torch.inference_mode()
    def step(self, rows: np.ndarray, batch: Rows) -> None:
        """Gather, step and scatter, in slices of at most ``step_batch`` parcels (a wave's
        parcels are distinct, so slices are independent; large batches lose cache locality).
        Slices follow the table's row order: reads and writes go forward through memory, and
        a run of consecutive rows (a shard's chunk with no cloudy parcel) needs no index."""
        t = self.table
        order = np.argsort(rows, kind="stable")
        rows, batch = rows[order], batch.subset(order)
        values = torch.as_tensor(batch.values, device=self.device)
        days = torch.as_tensor(batch.day, device=self.device)
        for start in range(0, len(rows), self.step_batch):
            part = slice(start, start + self.step_batch)
            at = rows[part]
            block = contiguous(at)
            index = block if block is not None else torch.as_tensor(at, device=self.device)
            started = time.perf_counter()
            state, log_probs, p_stop = self.model.step(t.state[index], values[part], days[part])
            t.state[index] = state
            self.metrics.step_seconds.observe(time.perf_counter() - started)
            self.metrics.batch_parcels.observe(len(at))
            # bookkeeping moves with the state, slice by slice: a retried wave finds the
            # stepped parcels' last acquisition time and skips them as duplicates
            t.log_probs[at] = log_probs.cpu().numpy()
            t.p_stop[at] = p_stop.cpu().numpy()
            t.day[at] = batch.day[part]
            t.observations[at] += 1
            t.last_time[at] = batch.time[part]
            t.acquisition[at] = batch.acquisition[part]
            t.dirty.update(at.tolist())

    def decide(self, rows: np.ndarray, feeds: np.ndarray, forced: bool, out: BatchOutput) -> None:
        t = self.table
        names = self.meta.class_names
        probabilities = np.exp(t.log_probs[rows].astype(np.float64)).round(6).tolist()
        classes = np.argmax(t.log_probs[rows], axis=1)
        # columns as Python values once, not numpy scalars per field
        seasons, days = t.season[rows].tolist(), t.day[rows].tolist()
        p_stop = t.p_stop[rows].astype(np.float64).round(6).tolist()
        observed = t.observations[rows].tolist()
        times, shards = t.last_time[rows].tolist(), t.shard[rows].tolist()
        for i, row in enumerate(rows.tolist()):
            parcel = t.parcel_id(row)
            out.decisions.append(Decision(
                decision_id=decision_id(parcel, seasons[i], self.meta.version),
                parcel_id=parcel, season=seasons[i], feed=feeds[i],
                model_version=self.meta.version, crop=names[classes[i]],
                probabilities=dict(zip(names, probabilities[i], strict=True)),
                p_stop=p_stop[i], day_of_season=days[i],
                acquired_at=datetime.fromtimestamp(times[i], UTC),
                acquisition_id=t.acquisition[row] or "", observations=observed[i],
                forced=forced, shard=shards[i]))
        tally = Tally(zip(feeds.tolist(), classes.tolist(), strict=True))
        for (feed, k), n in tally.items():
            self.metrics.decisions.labels(feed, names[k], str(forced).lower()).inc(n)
        t.decided[rows] = True
        t.dirty.update(rows.tolist())

    def force_decisions(self, rows: np.ndarray, feeds: np.ndarray, out: BatchOutput) -> None:
        """Season over: undecided parcels with an observation decide at their last step."""
        pending = ~self.table.decided[rows] & (self.table.observations[rows] > 0)
        if pending.any():
            self.decide(rows[pending], feeds[pending], forced=True, out=out)

    def close_season(self, chunk: ObservationChunk, out: BatchOutput) -> None:
        self.ensure_shards([chunk.shard])
        rows = self.table.rows_of_shard(chunk.shard)
        rows = rows[self.table.season[rows] == chunk.season]
        self.force_decisions(rows, np.full(len(rows), chunk.feed, dtype=object), out)


def summary(exc: BaseException) -> str:
    """An exception in one line, for dead letters and logs."""
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def contiguous(rows: np.ndarray) -> slice | None:
    """The rows as a slice when they are consecutive and ascending (a shard's parcels take
    consecutive rows, so a slice of a wave that holds all of them qualifies), so the state is
    read as a view and written back without an index."""
    if len(rows) and rows[-1] - rows[0] == len(rows) - 1 and (np.diff(rows) == 1).all():
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return None


class Consumer:
    """Polls the bus, runs the Processor, publishes decisions, and checkpoints.

    A checkpoint (every ``checkpoint_seconds`` or ``checkpoint_chunks``, and before partitions
    are revoked) is one store transaction with the changed state rows, the decisions and dead
    letters since the last one, and the source offsets; periodic ones are written on the
    checkpoint writer's thread while the next batches are stepped (daemon/checkpoints.py).
    Decisions go to their topic as soon as they are made; a replay after a crash re-publishes
    them with the same ids.
    """

    def __init__(self, topics: dict[str, str], group: str, bus: Bus, store: Store,
                 processor: Processor, metrics: Metrics, shards: int,
                 max_poll_records: int = 512, checkpoint_seconds: float = 2.0,
                 checkpoint_chunks: int = 2000, stop: threading.Event | None = None) -> None:
        self.topics, self.group, self.shards = topics, group, shards
        self.bus, self.store, self.processor, self.metrics = bus, store, processor, metrics
        self.max_poll_records = max_poll_records
        self.checkpoint_seconds, self.checkpoint_chunks = checkpoint_seconds, checkpoint_chunks
        self.pending_decisions: list[dict[str, Any]] = []      # rows, for the next checkpoint
        self.pending_dead_letters: list[dict[str, Any]] = []
        self.writer = CheckpointWriter(store, group, metrics, processor.model_sha256)
        self.offsets: dict[tuple[str, int], int] = {}
        self.epochs: dict[int, int] = {}  # shard -> the claim this member holds
        self.fenced: set[tuple[str, int]] = set()  # partitions taken over, until reassigned
        self.member = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.chunks_since, self.last_checkpoint = 0, time.monotonic()
        self.tally: Tally[str] = Tally()
        self.output = OutputStage(bus, topics, metrics, stop=stop)
        self.unsettled = False  # outputs of stepped records that never reached the output stage
        self.consumer: BusConsumer = bus.consumer(
            group, [self.topics["observations"]], max_poll_records,
            on_assigned=self.on_assigned, on_revoked=self.on_revoked)

    def shards_of(self, partitions: Iterable[tuple[str, int]]) -> list[int]:
        parts = {p for _, p in partitions}
        return [s for s in range(self.shards) if self.bus.partition_of(s) in parts]

    def on_assigned(self, partitions: set[tuple[str, int]]) -> None:
        """Claim the shards of newly assigned partitions and load them from their checkpoints
        (the bus has already sought to the checkpoint's offsets). Shards still in memory are
        loaded again: after a revocation whose checkpoint failed they hold steps past it."""
        started = time.perf_counter()
        shards = self.shards_of(partitions)
        self.forget(partitions)
        try:
            self.epochs.update(self.store.claim_shards(self.group, shards, self.member))
        except sa.exc.SQLAlchemyError as exc:  # a full disk, a store restarting: retried
            raise BusError(f"cannot claim the assigned shards ({exc.__class__.__name__})"
                           ) from None
        self.processor.ensure_shards(shards)
        seconds = time.perf_counter() - started
        self.metrics.handovers.labels("assigned").inc(len(partitions))
        self.metrics.partitions_assigned.set(len(self.consumer.assignment()))
        self.metrics.handover_seconds.observe(seconds)
        log.info("assigned %d partition(s), %d shard(s): %d parcels in memory, loaded in %.2f s",
                 len(partitions), len(shards), len(self.processor.table), seconds)

    def on_revoked(self, partitions: set[tuple[str, int]]) -> None:
        """Checkpoint, then forget the shards of the revoked partitions. Never raises (the Kafka
        client drops a listener's exception): should the checkpoint fail, the next owner
        resumes from the one before and replays what came after."""
        started = time.perf_counter()
        try:
            # no commit to the bus here: the hook runs on the Kafka client's I/O thread, where
            # a blocking call fails; the store holds the offsets that count. Durable before
            # the shards are let go: their next owner loads them from the store.
            self.checkpoint(commit_to_bus=False)
        except (BusError, CheckpointError) as exc:
            log.error("revocation checkpoint failed (%s): the next owner replays from the "
                      "last checkpoint", exc)
        finally:
            self.forget(partitions)
        self.metrics.handovers.labels("revoked").inc(len(partitions))
        self.metrics.partitions_assigned.set(0)
        log.info("revoked %d partition(s) in %.2f s", len(partitions),
                 time.perf_counter() - started)

    def forget(self, partitions: Iterable[tuple[str, int]]) -> None:
        """Drop what this member holds of these partitions and their shards: state rows, the
        offsets and epochs to checkpoint, and the fence on them."""
        partitions = set(partitions)
        shards = self.shards_of(partitions)
        self.processor.drop_shards(shards)
        for shard in shards:
            self.epochs.pop(shard, None)
        for key in partitions:
            self.offsets.pop(key, None)
        self.fenced -= partitions

    def fence(self, shards: list[int]) -> None:
        """Another member has claimed these shards since: drop them and read nothing more of
        their partitions until the group assigns them here again."""
        partitions = {(self.topics["observations"], self.bus.partition_of(s)) for s in shards}
        log.warning("shards %s were taken over by another member: dropping partitions %s "
                    "until they are assigned here again", shards, sorted(p for _, p in partitions))
        self.metrics.handovers.labels("fenced").inc(len(partitions))
        self.forget(partitions)
        self.fenced |= partitions

    def run_once(self, timeout_s: float = 0.5) -> list[Record]:
        """Poll and process one batch, checkpointing when due; returns the records handled."""
        records = self.consumer.poll(self.max_poll_records, timeout_s)
        if self.fenced:
            records = [r for r in records if (r.topic, r.partition) not in self.fenced]
        if records:
            out = BatchOutput()
            self.processor.process(records, out)
            self.publish(out)
            for r in records:
                key = (r.topic, r.partition)
                self.offsets[key] = max(self.offsets.get(key, 0), r.offset + 1)
            self.chunks_since += len(records)
            self.tally.update(decisions=len(out.decisions), records=len(records))
        due = self.chunks_since and (self.chunks_since >= self.checkpoint_chunks
                                     or time.monotonic() - self.last_checkpoint
                                     >= self.checkpoint_seconds)
        if due and not self.writer.busy:  # else put off until the store caught up
            self.checkpoint(durable=False)  # written while the next batches are stepped
            self.page_out()
            self.metrics.consumer_lag.set(self.consumer.lag())
        elif not records:  # lag costs a query (embedded) or a request (Kafka): not per batch
            self.metrics.consumer_lag.set(self.consumer.lag())
        return records

    def publish(self, out: BatchOutput) -> None:
        """Hand a micro-batch's outputs to the output stage; keep them for the checkpoint."""
        try:
            self.output.put(out.decisions, out.dead_letters)
        except BusError:  # stopping: the state holds steps whose outputs are not queued
            self.unsettled = True
            raise
        for letter in out.dead_letters:  # counted here: a retried wave drops its first try's
            self.metrics.dead_letters.labels(letter["reason"]).inc()
        self.pending_decisions += [decision_row(d) for d in out.decisions]
        self.pending_dead_letters += out.dead_letters

    def checkpoint(self, commit_to_bus: bool = True, durable: bool = True) -> None:
        """Snapshot the changed state rows, the decisions and dead letters since the last
        checkpoint and the source offsets, and hand them to the writer (one store transaction
        on its own thread); with ``durable``, wait until it is committed. Once a write is
        durable, its offsets also go to the bus, for lag tools."""
        table = self.processor.table
        if self.offsets or table.dirty:
            if not self.output.drain():  # outputs reach the bus before the store records them
                raise BusError("the bus has not taken the outputs yet: checkpoint put off")
            # the write in flight first: should it have failed, its snapshot is handed back
            # into this one, never dropped beside it
            self._settled(self.writer.wait, commit_to_bus)
            row_ids = list(table.dirty)
            snapshot = Snapshot(table.checkpoint_rows(row_ids), row_ids,
                                self.pending_decisions, self.pending_dead_letters, self.offsets,
                                dict(self.epochs))
            table.dirty.clear()
            self.pending_decisions, self.pending_dead_letters, self.offsets = [], [], {}
            self.chunks_since, self.last_checkpoint = 0, time.monotonic()
            self._settled(lambda: self.writer.submit(snapshot), commit_to_bus)
        if durable:
            self._settled(self.writer.wait, commit_to_bus)

    def _settled(self, call: Callable[[], Snapshot | None], commit_to_bus: bool) -> None:
        """Run a writer call; commit the offsets of a write it reports durable to the bus, or
        take back the snapshot of a write that failed (the next checkpoint retries it)."""
        try:
            done = call()
        except FencedError as exc:  # nothing was written; what is still ours goes next time
            self.fence(exc.shards)
            self._restore(exc.snapshot)
            return
        except CheckpointError as exc:
            self.metrics.checkpoint_errors.inc()
            self._restore(exc.snapshot)
            raise
        if done is not None and commit_to_bus and done.offsets:
            self.consumer.commit(done.offsets)

    def _restore(self, snapshot: Snapshot) -> None:
        """Take a snapshot that was not written back into the next, less what this member
        has let go of since (rows of dropped shards, offsets of partitions it no longer has)."""
        table = self.processor.table
        table.dirty.update(r for r in snapshot.row_ids if table.shard[r] >= 0)
        self.pending_decisions = snapshot.decisions + self.pending_decisions
        self.pending_dead_letters = snapshot.dead_letters + self.pending_dead_letters
        owned = {(self.topics["observations"], self.bus.partition_of(s)) for s in self.epochs}
        for key, offset in snapshot.offsets.items():
            if key in owned or not self.epochs:
                self.offsets[key] = max(offset, self.offsets.get(key, 0))

    def page_out(self) -> None:
        """Drop least recently used (clean) shards while the state exceeds its budget."""
        victims = self.processor.over_budget()
        if victims:
            self.checkpoint()  # their last rows must be in the store first
            self.processor.drop_shards(victims)
            self.metrics.shard_evictions.inc(len(victims))

    def close(self, grace_s: float = 10.0) -> None:
        """A last checkpoint when the bus takes the outputs within ``grace_s``; otherwise none:
        the next start resumes from the last checkpoint and replays what came after."""
        try:
            if not self.unsettled and self.output.drain(grace_s):
                self.checkpoint()
            else:
                log.warning("the bus did not take the last outputs within %.0f s: leaving "
                            "without a final checkpoint; the next start replays from the last "
                            "one", grace_s)
        except (CheckpointError, BusError) as exc:
            log.error("no final checkpoint (%s); the next start replays from the last one",
                      exc)
        finally:
            self.writer.close()
            self.output.close(grace_s)
            self.consumer.close()


def decision_row(d: Decision) -> dict[str, Any]:
    return {"decision_id": d.decision_id, "parcel_id": d.parcel_id, "season": d.season,
            "feed": d.feed, "model_version": d.model_version, "crop": d.crop,
            "probabilities": json.dumps(d.probabilities), "p_stop": d.p_stop,
            "day_of_season": d.day_of_season, "acquired_at": d.acquired_at,
            "acquisition_id": d.acquisition_id, "observations": d.observations,
            "forced": d.forced, "created_at": utcnow()}
