"""Applying observation chunks to the state of one state model: validate -> season -> step
-> decide. Pure with respect to the bus and the store (consuming.py does the I/O).

Stages, named the same in logs, metric labels and dead-letter reasons:
decode -> validate -> season -> step -> decide -> checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pandas as pd
import torch

from eowatch.contract.messages import ObservationChunk
from eowatch.seasons import season_begin, season_of

from .bus.base import Record
from .metrics import Metrics
from .observation_log import CLOUDY, LATE, LOG_BANDS, PendingLog, Series
from .outcomes import BatchOutput, dead_letter, summary
from .registry import TargetRegistry
from .rows import Rows, contiguous
from .state import StateTable
from .state_model import Decided, StateModel

log = logging.getLogger(__name__)
LOAD_SHARDS_AT_ONCE = 8
# the launch of the first Earth-observation satellite (Landsat 1): an earlier acquisition time
# is a producer's error, and would make every later observation of its targets look late
EARLIEST = datetime(1972, 7, 23, tzinfo=UTC)


class Processor:
    """Applies chunks to the state table; pure with respect to the bus and the store."""

    reorders_late = True  # late observations are inserted at their date (with a log)

    def __init__(self, model: StateModel, registry: TargetRegistry, metrics: Metrics,
                 min_valid_fraction: float, season_start: str,
                 device: str = "cpu", state_dtype: torch.dtype = torch.float32,
                 load_states: Callable[[str, list[int]], list[tuple[str, int, bytes, str | None]]]
                 | None = None,
                 budget_bytes: int | None = None, step_batch: int = 2048,
                 read_log: Callable[[str, Sequence[str]], dict[tuple[str, int], Series]]
                 | None = None) -> None:
        """``read_log``: the store's observation log (None: no log is kept)."""
        self.model, self.registry, self.metrics = model, registry, metrics
        self.min_valid_fraction = min_valid_fraction
        self.default_season_start = season_start  # of targets registered without one
        self.device = torch.device(device)
        self.table = StateTable(model, self.device, state_dtype)
        self.load_states = load_states or (lambda model, shards: [])
        self.step_batch = step_batch
        self.budget_rows = None if budget_bytes is None else budget_bytes // \
            self.table.bytes_per_row
        self.loaded: dict[int, float] = {}  # shard -> last use (monotonic), the LRU order
        self.read_log = read_log
        self.log = PendingLog() if read_log is not None else None  # until the next checkpoint
        # makes the checkpoint in flight durable, so the store and ``log`` hold every step
        self.settle: Callable[[], None] = lambda: None

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
        self.restore(self.table, self.model.key, missing)
        self.metrics.shard_loads.inc(len(missing))
        self.metrics.shard_load_seconds.observe(time.perf_counter() - started)
        self.metrics.targets_tracked.labels(self.model.targets).set(len(self.table))

    def restore(self, table: StateTable, key: str, shards: list[int]) -> None:
        """Load the checkpointed rows of ``shards`` stored under ``key`` into ``table``; a few
        shards at a time: a million records in one piece cost more in fresh memory (page
        faults) than in reading them."""
        for start in range(0, len(shards), LOAD_SHARDS_AT_ONCE):
            table.restore(self.load_states(key, shards[start:start + LOAD_SHARDS_AT_ONCE]))

    def tables(self) -> dict[str, StateTable]:
        """The state tables to checkpoint, by the key their rows are stored under."""
        return {self.model.key: self.table}

    def drop_shards(self, shards: Iterable[int]) -> None:
        shards = [s for s in shards if s in self.loaded]
        for s in shards:
            del self.loaded[s]
        self.table.drop_shards(shards)
        if self.log is not None:  # what was not checkpointed is the next owner's to replay
            self.log.retain(self.table.has)
        self.metrics.targets_tracked.labels(self.model.targets).set(len(self.table))

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

    def process(self, items: list[tuple[Record, ObservationChunk]], out: BatchOutput) -> None:
        """Apply decoded chunks in their order. The k-th chunk of every shard forms wave k: a
        target lies in one shard, so it appears at most once per wave and its steps keep their
        order."""
        waves: list[list[tuple[Record, ObservationChunk]]] = []
        seen: Tally[int] = Tally()
        for record, chunk in items:
            refused = self.refusal(chunk)
            if refused is not None:
                dead_letter(out, record, *refused)
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
                dead_letter(out, record, "processing_error",
                            f"{chunk.acquisition_id} (shard {chunk.shard}): {summary(exc)}")
                log.debug("processing error", exc_info=True)
                return
            log.warning("a wave of %d chunks failed (%s); applying them one at a time",
                        len(wave), summary(exc))
        for item in wave:
            self.apply_guarded([item], out)

    def refusal(self, chunk: ObservationChunk) -> tuple[str, str] | None:
        """(reason, detail) when the chunk as a whole cannot be used."""
        if chunk.kind == "observations" and chunk.band_names != self.model.band_names:
            return ("band_mismatch", f"chunk bands {list(chunk.band_names)} differ from the "
                    f"model's {list(self.model.band_names)}")
        if chunk.acquired_at < EARLIEST:
            return ("time_out_of_range", f"{chunk.acquisition_id} acquired "
                    f"{chunk.acquired_at.isoformat()}, before any Earth-observation satellite")
        if len(pd.unique(chunk.parcel_ids)) != len(chunk.parcel_ids):
            return ("duplicate_ids", f"{chunk.acquisition_id} lists a target more than once "
                    f"({len(chunk.parcel_ids)} rows)")
        return None

    def validate(self, chunk: ObservationChunk, record: Record, positions: np.ndarray,
                 out: BatchOutput) -> np.ndarray:
        """Mask of rows to use; unknown targets, non-finite values, valid fractions outside 0-1
        and targets of other shards are dead-lettered.

        ``positions``: registry position of each of the chunk's parcels (-1: unknown).
        """
        checks = (
            ("unknown_parcel", positions < 0, "parcel ids not registered"),
            ("nan_values", self.bad_values(chunk.values), "non-finite band values"),
            ("bad_valid_fraction", ~((chunk.valid_fraction >= 0) & (chunk.valid_fraction <= 1)),
             "valid fractions outside 0-1"),
            ("wrong_shard", (positions >= 0) & (self.shard_at(positions) != chunk.shard),
             f"parcels that do not belong to shard {chunk.shard}"),
        )
        keep = np.ones(len(chunk.parcel_ids), bool)
        for reason, bad, what in checks:
            bad = bad & keep
            if bad.any():
                ids = chunk.parcel_ids[bad]
                listed = ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")
                dead_letter(out, record, reason,
                            f"{bad.sum()} {what} in {chunk.acquisition_id}: {listed}",
                            with_payload=False)
                keep &= ~bad
        return keep

    def shard_at(self, positions: np.ndarray) -> np.ndarray:
        """The registered shard at each registry position, -1 for unknown (-1) positions."""
        if not len(self.registry.shards):
            return np.full(len(positions), -1, np.int64)
        return np.where(positions >= 0, self.registry.shards[np.maximum(positions, 0)], -1)

    def bad_values(self, values: np.ndarray) -> np.ndarray:
        """Rows whose values the model cannot use: any non-finite one."""
        return ~np.isfinite(values).all(axis=1)

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
                    season, day = self.seasons(chunk, positions[keep])
                    parts.append(Rows.of(chunk, keep, self.registry.shards[positions[keep]],
                                         season, day))
        if parts:
            self.apply(Rows.concat(parts), out)
        for _, chunk in wave:
            if chunk.kind == "season_end":
                self.close_season(chunk, out)

    def apply(self, rows_in: Rows, out: BatchOutput) -> None:
        t = self.table
        if self.log is not None and self.reorders_late:  # a re-step then equals the stream
            rows_in = replace(rows_in, values=rows_in.values.astype(LOG_BANDS).astype(np.float32))
        cloudy = rows_in.valid_fraction < self.min_valid_fraction
        self.metrics.observations_skipped.labels("cloudy").inc(int(cloudy.sum()))
        self.ensure_shards(np.unique(rows_in.shards))
        rows = t.add(rows_in.target_ids, rows_in.shards)
        # a parcel's first observation of a later season closes the previous one, cloudy or not
        newer = rows_in.season > t.season[rows]
        if newer.any():
            closing = newer & (t.season[rows] >= 0)  # never-stepped rows have nothing to close
            self.force_decisions(rows[closing], rows_in.feed[closing], out)
            t.reset(rows[newer], rows_in.season[newer])
        current = rows_in.season == t.season[rows]
        if self.log is not None:  # the evidence shows the dates clouds hid
            self.log_skipped(rows_in.subset(cloudy & current), CLOUDY)
        use = ~cloudy
        # the same acquisition again (a producer retry) is a duplicate; an older one of this
        # season (published late) is inserted at its date when there is a log, else skipped
        duplicate = use & (t.last_time[rows] == rows_in.time)
        late = use & ~duplicate & ((rows_in.season < t.season[rows])
                                   | (t.last_time[rows] > rows_in.time))
        reorder = late & current if self.log is not None and self.reorders_late \
            else np.zeros(len(rows), bool)
        self.metrics.observations_skipped.labels("late").inc(int((late & ~reorder).sum()))
        self.metrics.observations_skipped.labels("duplicate").inc(int(duplicate.sum()))
        use &= ~late & ~duplicate
        if use.any():
            stepped, batch = rows[use], rows_in.subset(use)
            self.step(stepped, batch)
            for feed in pd.unique(batch.feed):
                self.metrics.observations.labels(feed).inc(int((batch.feed == feed).sum()))
            self.conclude(stepped, batch, out)
        if reorder.any():
            self.insert_late(rows[reorder], rows_in.subset(reorder), out)

    def log_skipped(self, batch: Rows, flags: int) -> None:
        """Log observations the model did not step (no outputs after them)."""
        assert self.log is not None
        n = len(batch.target_ids)
        self.log.add(batch.target_ids, self.log_seasons(batch), batch.time, batch.values,
                     np.full((n, self.table.n_outputs), np.nan), np.full(n, np.nan), flags)

    def log_seasons(self, batch: Rows) -> np.ndarray:
        """The season each observation is logged under: the target's."""
        return batch.season

    def insert_late(self, rows: np.ndarray, batch: Rows, out: BatchOutput) -> None:
        """Late observations of the current season (Sentinel-2 publishes some items days
        late), each inserted at its date: the target is stepped again from its logged series,
        so its state is what an in-order stream gives. A decision already made stands (it was
        published); the evidence shows the late observation. When the log lacks some of the
        target's steps (pruned, or kept only since a restart with it), it is skipped as late."""
        assert self.log is not None and self.read_log is not None
        self.settle()
        t = self.table
        ids = batch.target_ids.tolist()
        stored, pending = self.read_log(self.model.key, ids), self.log.series_of(ids)
        merged: list[Series] = []
        keep, duplicate = np.zeros(len(rows), bool), np.zeros(len(rows), bool)
        for i, key in enumerate(zip(ids, batch.season.tolist(), strict=True)):
            parts = [s for s in (stored.get(key), pending.get(key)) if s is not None]
            if not parts:
                continue
            logged = Series.concat(parts).in_order()
            stepped_times = logged.times[logged.stepped]
            if (stepped_times == batch.time[i]).any():
                duplicate[i] = True
            elif len(stepped_times) == t.observations[rows[i]]:
                keep[i] = True
                late = Series(batch.time[i:i + 1], batch.values[i:i + 1].astype(LOG_BANDS),
                              np.full((1, t.n_outputs), np.nan, np.float16),
                              np.full(1, np.nan, np.float16), np.full(1, LATE, np.uint8))
                merged.append(Series.concat([logged, late]).in_order())
        self.metrics.observations_skipped.labels("duplicate").inc(int(duplicate.sum()))
        self.metrics.observations_skipped.labels("late").inc(int((~keep & ~duplicate).sum()))
        if not keep.any():
            return
        rows, batch = rows[keep], batch.subset(keep)
        self.restep(rows, batch, merged)
        for feed in pd.unique(batch.feed):
            self.metrics.observations_reordered.labels(feed).inc(int((batch.feed == feed).sum()))
        fire = self.model.fires(t.p_stop[rows]) & ~t.decided[rows]
        if fire.any():
            self.decide(rows[fire], batch.feed[fire], forced=False, out=out)

    @torch.inference_mode()
    def restep(self, rows: np.ndarray, batch: Rows, series: list[Series]) -> None:
        """Step these targets from their initial state through their whole series (all of
        them at once, step k of every series that has one together), and log each series
        again whole with the outputs after each step."""
        assert self.log is not None
        t = self.table
        steps = [s.subset(s.stepped) for s in series]
        lengths = np.array([len(s) for s in steps])
        n, longest = len(rows), int(lengths.max())
        positions = self.registry.lookup(batch.target_ids)
        begins = np.array([season_begin(int(season), start or self.default_season_start)
                           .timestamp() for season, start in
                           zip(batch.season, self.registry.season_starts[positions], strict=True)])
        values = np.zeros((n, longest, len(self.model.band_names)), np.float32)
        days = np.zeros((n, longest), np.float32)
        for i, s in enumerate(steps):
            values[i, :len(s)] = s.bands
            days[i, :len(s)] = (s.times - begins[i]) / 86400.0
        outputs = np.full((n, longest, t.n_outputs), np.nan, np.float32)
        stops = np.full((n, longest), np.nan, np.float32)
        state = self.model.initial_state(n, self.device, t.dtype)
        for k in range(longest):
            at = np.flatnonzero(lengths > k)
            index = torch.as_tensor(at, device=self.device)
            new, output, stop = self.model.step(
                state[index], torch.as_tensor(values[at, k], device=self.device),
                torch.as_tensor(days[at, k], device=self.device))
            state[index] = new.to(t.dtype)
            outputs[at, k], stops[at, k] = output.cpu().numpy(), stop.cpu().numpy()
        last = lengths - 1
        t.state[torch.as_tensor(rows, device=self.device)] = state
        t.outputs[rows] = outputs[np.arange(n), last]
        t.p_stop[rows] = stops[np.arange(n), last]
        t.observations[rows] += 1
        t.dirty.update(rows.tolist())
        self.log.drop(batch.target_ids)
        for i, s in enumerate(series):
            logged_outputs = np.full((len(s), t.n_outputs), np.nan, np.float32)
            logged_stops = np.full(len(s), np.nan, np.float32)
            logged_outputs[s.stepped], logged_stops[s.stepped] = \
                outputs[i, :lengths[i]], stops[i, :lengths[i]]
            self.log.add(np.full(len(s), batch.target_ids[i], dtype=object),
                         np.full(len(s), batch.season[i]), s.times, s.bands, logged_outputs,
                         logged_stops, s.flags)
        self.log.replaced |= set(zip(batch.target_ids.tolist(), batch.season.tolist(),
                                     strict=True))

    def report(self) -> None:
        """Gauges of the state as a whole (at each checkpoint: they cost a pass over it)."""
        t = self.table
        self.metrics.parcels_decided.set(int(t.decided[t.live].sum()))

    def conclude(self, rows: np.ndarray, batch: Rows, out: BatchOutput) -> None:
        """What the targets just stepped give: decisions of those whose rule fires."""
        self.metrics.season_day.set(float(batch.day.max()))
        t = self.table
        fire = self.model.fires(t.p_stop[rows]) & ~t.decided[rows]
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
            state, outputs, p_stop = self.model.step(t.state[index], values[part], days[part])
            t.state[index] = state
            self.metrics.step_seconds.labels(self.model.targets).observe(
                time.perf_counter() - started)
            self.metrics.batch_parcels.labels(self.model.targets).observe(len(at))
            # bookkeeping moves with the state, slice by slice: a retried wave finds the
            # stepped parcels' last acquisition time and skips them as duplicates
            t.outputs[at] = outputs.cpu().numpy()
            t.p_stop[at] = p_stop.cpu().numpy()
            t.day[at] = batch.day[part]
            t.observations[at] += 1
            t.last_time[at] = batch.time[part]
            t.acquisition[at] = batch.acquisition[part]
            t.dirty.update(at.tolist())
        if self.log is not None:
            self.log.add(batch.target_ids, batch.season, batch.time, batch.values,
                         t.outputs[rows], t.p_stop[rows], 0)

    def decide(self, rows: np.ndarray, feeds: np.ndarray, forced: bool, out: BatchOutput) -> None:
        t = self.table
        decisions = self.model.decide(Decided(
            [t.target_id(r) for r in rows.tolist()], t.shard[rows].tolist(),
            t.season[rows].tolist(), t.day[rows].tolist(), t.outputs[rows], t.p_stop[rows],
            t.observations[rows].tolist(), t.last_time[rows].tolist(),
            [a or "" for a in t.acquisition[rows].tolist()], feeds.tolist(), forced))
        out.decisions += decisions
        for (feed, label), n in Tally((d.feed, d.crop) for d in decisions).items():
            self.metrics.decisions.labels(feed, label, str(forced).lower()).inc(n)
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
