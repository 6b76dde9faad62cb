"""The stateful consumer: chunks in, model steps, decisions out, checkpoints with offsets.

Stages, named the same in logs, metric labels and dead-letter reasons:
decode -> validate -> season -> step -> decide -> checkpoint.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter as Tally
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from eowatch.models.artifact import LoadedModel

from .bus.base import Bus, BusConsumer, OutMessage, Record
from .messages import Decision, MessageError, ObservationChunk, decision_id, season_of
from .metrics import Metrics
from .state import StateTable
from .store.store import Store

log = logging.getLogger(__name__)


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
        registry = self.store.parcel_registry()
        self.index = pd.Index(list(registry), dtype=object)
        self.shards = np.array([v[0] for v in registry.values()], np.int64)
        self.season_starts = np.array([v[1] for v in registry.values()], dtype=object)
        self._loaded_at = time.monotonic()

    def lookup(self, parcel_ids: np.ndarray) -> np.ndarray:
        """Registry position of each id (-1: unknown), refreshing once in a while on a miss."""
        target = pd.Index(parcel_ids, dtype=object)  # no string-dtype inference per call
        found = self.index.get_indexer(target)
        if (found < 0).any() and time.monotonic() - self._loaded_at > self.refresh_seconds:
            self.refresh()
            found = self.index.get_indexer(target)
        return found

    def ids_of_shard(self, shard: int) -> np.ndarray:
        return np.asarray(self.index[self.shards == shard], dtype=object)


class Processor:
    """Applies chunks to the state table; pure with respect to the bus and the store."""

    def __init__(self, loaded: LoadedModel, registry: ParcelRegistry, metrics: Metrics,
                 min_valid_fraction: float, stop_threshold: float | None = None,
                 device: str = "cpu", state_dtype: torch.dtype = torch.float32) -> None:
        self.model, self.meta = loaded.model, loaded.metadata
        self.registry, self.metrics = registry, metrics
        self.min_valid_fraction = min_valid_fraction
        self.threshold = stop_threshold or self.meta.stop_threshold
        self.default_season_start = self.meta.season_start or "01-01"
        self.device = torch.device(device)
        self.table = StateTable(self.model.state_shape, len(self.meta.class_names), self.device,
                                state_dtype)

    def dead_letter(self, out: BatchOutput, record: Record, reason: str, detail: str,
                    with_payload: bool = True) -> None:
        out.dead_letters.append({"topic": record.topic, "partition": record.partition,
                                 "offset": record.offset, "reason": reason, "detail": detail,
                                 "payload": record.value if with_payload else None})
        self.metrics.dead_letters.labels(reason).inc()
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
            self.apply_wave(wave, out)

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
        rows = t.rows(rows_in.parcel_ids, rows_in.shards)
        # a parcel's first observation of a later season closes the previous one, cloudy or not
        newer = rows_in.season > t.season[rows]
        if newer.any():
            self.force_decisions(rows[newer & (t.season[rows] >= 0)], rows_in.feed[newer], out)
            t.reset(rows[newer], rows_in.season[newer])
        use = ~cloudy
        late = use & (rows_in.season < t.season[rows])
        duplicate = use & ~late & (t.last_time[rows] >= rows_in.time)
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
        index = torch.as_tensor(rows, device=self.device)
        started = time.perf_counter()
        state, log_probs, p_stop = self.model.step(
            self.table.state[index], torch.as_tensor(batch.values, device=self.device),
            torch.as_tensor(batch.day, device=self.device))
        self.table.state[index] = state
        self.metrics.step_seconds.observe(time.perf_counter() - started)
        self.metrics.batch_parcels.observe(len(rows))
        self.table.log_probs[rows] = log_probs.cpu().numpy()
        self.table.p_stop[rows] = p_stop.cpu().numpy()
        self.table.day[rows] = batch.day
        self.table.observations[rows] += 1
        self.table.last_time[rows] = batch.time
        self.table.acquisition[rows] = batch.acquisition
        self.table.dirty.update(rows.tolist())

    def decide(self, rows: np.ndarray, feeds: np.ndarray, forced: bool, out: BatchOutput) -> None:
        t = self.table
        probabilities = np.exp(t.log_probs[rows])
        classes = probabilities.argmax(1)
        for i, row in enumerate(rows):
            parcel = t.parcel_id(row)
            acquired = pd.Timestamp(t.last_time[row], unit="s", tz="UTC").to_pydatetime()
            out.decisions.append(Decision(
                decision_id=decision_id(parcel, int(t.season[row]), self.meta.version),
                parcel_id=parcel, season=int(t.season[row]), feed=feeds[i],
                model_version=self.meta.version, crop=self.meta.class_names[classes[i]],
                probabilities={c: round(float(p), 6) for c, p in
                               zip(self.meta.class_names, probabilities[i], strict=True)},
                p_stop=round(float(t.p_stop[row]), 6), day_of_season=float(t.day[row]),
                acquired_at=acquired, acquisition_id=t.acquisition[row] or "",
                observations=int(t.observations[row]), forced=forced))
            self.metrics.decisions.labels(feeds[i], self.meta.class_names[classes[i]],
                                          str(forced).lower()).inc()
        t.decided[rows] = True
        t.dirty.update(rows.tolist())

    def force_decisions(self, rows: np.ndarray, feeds: np.ndarray, out: BatchOutput) -> None:
        """Season over: undecided parcels with an observation decide at their last step."""
        pending = ~self.table.decided[rows] & (self.table.observations[rows] > 0)
        if pending.any():
            self.decide(rows[pending], feeds[pending], forced=True, out=out)

    def close_season(self, chunk: ObservationChunk, out: BatchOutput) -> None:
        rows = self.table.rows_of_shard(chunk.shard)
        rows = rows[self.table.season[rows] == chunk.season]
        self.force_decisions(rows, np.full(len(rows), chunk.feed, dtype=object), out)


class Consumer:
    """Polls the bus, runs the Processor, and checkpoints state, outputs and offsets together."""

    def __init__(self, settings_topic: dict[str, str], group: str, bus: Bus, store: Store,
                 processor: Processor, metrics: Metrics, max_poll_records: int = 64) -> None:
        self.topics, self.group = settings_topic, group
        self.bus, self.store, self.processor, self.metrics = bus, store, processor, metrics
        self.max_poll_records = max_poll_records
        self.processor.table.load_records(store.load_states())
        self.metrics.parcels_tracked.set(len(self.processor.table))
        self.consumer: BusConsumer = bus.consumer(group, [self.topics["observations"]],
                                                  max_poll_records)
        stored = store.get_offsets(group)
        self.consumer.seek({tp: o for tp, o in stored.items()
                            if tp[0] == self.topics["observations"]})
        self.tally: Tally[str] = Tally()

    def run_once(self, timeout_s: float = 0.5) -> int:
        """Poll, process and checkpoint one batch; returns the number of records handled."""
        records = self.consumer.poll(self.max_poll_records, timeout_s)
        if not records:
            self.metrics.consumer_lag.set(self.consumer.lag())
            return 0
        out = BatchOutput()
        self.processor.process(records, out)
        offsets: dict[tuple[str, int], int] = {}
        for r in records:
            offsets[(r.topic, r.partition)] = max(offsets.get((r.topic, r.partition), 0),
                                                  r.offset + 1)
        self.checkpoint(out, offsets)
        self.metrics.consumer_lag.set(self.consumer.lag())
        self.tally.update(decisions=len(out.decisions), records=len(records))
        return len(records)

    def checkpoint(self, out: BatchOutput, offsets: dict[tuple[str, int], int]) -> None:
        """Outputs to their topics first (deterministic ids make a replay harmless), then one
        store transaction with state rows, decisions, dead letters and source offsets."""
        started = time.perf_counter()
        if out.decisions:
            self.bus.publish(self.topics["decisions"], [
                OutMessage(d.parcel_id.encode(), d.encode(), self._shard(d.parcel_id))
                for d in out.decisions])
        if out.dead_letters:
            self.bus.publish(self.topics["deadletter"], [
                OutMessage(f"{d['topic']}:{d['partition']}:{d['offset']}".encode(),
                           json.dumps({k: v for k, v in d.items() if k != "payload"}).encode(),
                           d["partition"]) for d in out.dead_letters])
        table = self.processor.table
        with self.store.transaction() as conn:
            self.store.save_states(conn, table.to_records(table.dirty))
            self.store.insert_decisions(conn, [decision_row(d) for d in out.decisions])
            self.store.insert_dead_letters(conn, out.dead_letters)
            self.store.save_offsets(conn, self.group, offsets)
        table.dirty.clear()
        self.consumer.commit(offsets)
        self.metrics.parcels_tracked.set(len(table))
        self.metrics.checkpoint_seconds.observe(time.perf_counter() - started)

    def _shard(self, parcel_id: str) -> int:
        position = self.processor.registry.lookup(np.array([parcel_id], dtype=object))[0]
        return int(self.processor.registry.shards[position]) if position >= 0 else 0

    def close(self) -> None:
        self.consumer.close()


def decision_row(d: Decision) -> dict[str, Any]:
    from .store.tables import utcnow

    return {"decision_id": d.decision_id, "parcel_id": d.parcel_id, "season": d.season,
            "feed": d.feed, "model_version": d.model_version, "crop": d.crop,
            "probabilities": json.dumps(d.probabilities), "p_stop": d.p_stop,
            "day_of_season": d.day_of_season, "acquired_at": d.acquired_at,
            "acquisition_id": d.acquisition_id, "observations": d.observations,
            "forced": d.forced, "created_at": utcnow()}
