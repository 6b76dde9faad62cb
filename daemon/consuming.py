"""The consuming side: polls the bus, routes chunks to the state models' processors,
publishes their outputs and checkpoints state with the source offsets; rebalancing and fencing
of shards between the members of a consumer group."""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from eowatch.contract.messages import Decision, ObservationChunk

from .areas import alert_row
from .bus.base import Bus, BusConsumer, BusError, Record
from .checkpoints import CheckpointError, CheckpointWriter, FencedError, Snapshot
from .metrics import Metrics
from .observation_log import LogTake
from .outcomes import BatchOutput, dead_letter, decode
from .output import OutputStage
from .processing import Processor
from .state import StateTable
from .store.store import Store
from .store.tables import utcnow
from .webhooks.matching import SubscriptionIndex

log = logging.getLogger(__name__)


class Consumer:
    """Polls the bus, hands each chunk to the processor of its targets' state model,
    publishes the decisions and dead letters, and checkpoints.

    A checkpoint (every ``checkpoint_seconds`` or ``checkpoint_chunks``, and before partitions
    are revoked) is one store transaction with the changed state rows, the decisions and dead
    letters since the last one, and the source offsets; periodic ones are written on the
    checkpoint writer's thread while the next batches are stepped (daemon/checkpoints.py).
    Decisions go to their topic as soon as they are made; a replay after a crash re-publishes
    them with the same ids.
    """

    def __init__(self, topics: dict[str, str], group: str, bus: Bus, store: Store,
                 processors: Sequence[Processor], metrics: Metrics, shards: int,
                 max_poll_records: int = 512, checkpoint_seconds: float = 2.0,
                 checkpoint_chunks: int = 2000, stop: threading.Event | None = None,
                 subscriptions: SubscriptionIndex | None = None) -> None:
        """``subscriptions``: whom decisions and alerts go to as webhooks (their deliveries
        are written by the checkpoint that stores them)."""
        self.topics, self.group, self.shards = topics, group, shards
        self.bus, self.store, self.metrics = bus, store, metrics
        # one state model per kind of target: chunks go to the one their targets name
        self.processors = {p.model.targets: p for p in processors}
        for processor in processors:
            processor.settle = self.settle
        self.max_poll_records = max_poll_records
        self.subscriptions = subscriptions
        self.checkpoint_seconds, self.checkpoint_chunks = checkpoint_seconds, checkpoint_chunks
        self.pending_decisions: list[dict[str, Any]] = []      # rows, for the next checkpoint
        self.pending_dead_letters: list[dict[str, Any]] = []
        self.pending_alerts: list[dict[str, Any]] = []
        self.writer = CheckpointWriter(store, group, metrics)
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

    def partitions_of(self, shards: Iterable[int]) -> set[tuple[str, int]]:
        return {(self.topics["observations"], self.bus.partition_of(s)) for s in shards}

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
        for processor in self.processors.values():
            processor.ensure_shards(shards)
        seconds = time.perf_counter() - started
        self.metrics.handovers.labels("assigned").inc(len(partitions))
        self.metrics.partitions_assigned.set(len(self.consumer.assignment()))
        self.metrics.handover_seconds.observe(seconds)
        log.info("assigned %d partition(s), %d shard(s): %d targets in memory, loaded in %.2f s",
                 len(partitions), len(shards),
                 sum(len(p.table) for p in self.processors.values()), seconds)

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
        for processor in self.processors.values():
            processor.drop_shards(shards)
        for shard in shards:
            self.epochs.pop(shard, None)
        for key in partitions:
            self.offsets.pop(key, None)
        self.fenced -= partitions

    def fence(self, shards: list[int]) -> None:
        """Another member has claimed these shards since: drop them and read nothing more of
        their partitions until the group assigns them here again."""
        partitions = self.partitions_of(shards)
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
            self.route(records, out)
            self.publish(out)
            for r in records:
                key = (r.topic, r.partition)
                self.offsets[key] = max(self.offsets.get(key, 0), r.offset + 1)
            self.chunks_since += len(records)
            self.tally.update(decisions=len(out.decisions), alerts=len(out.alerts),
                              records=len(records))
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

    def route(self, records: list[Record], out: BatchOutput) -> None:
        """Decode the records and hand each chunk to the state model of its targets."""
        routed: dict[str, list[tuple[Record, ObservationChunk]]] = {}
        for record, chunk in decode(records, out):
            if chunk.targets in self.processors:
                routed.setdefault(chunk.targets, []).append((record, chunk))
            else:
                dead_letter(out, record, "unknown_targets",
                            f"{chunk.acquisition_id} observes {chunk.targets!r}; this daemon "
                            f"runs state models for {sorted(self.processors)}")
        for targets, items in routed.items():
            self.processors[targets].process(items, out)

    def publish(self, out: BatchOutput) -> None:
        """Hand a micro-batch's outputs to the output stage; keep them for the checkpoint."""
        try:
            self.output.put(out.decisions, out.dead_letters, out.alerts)
        except BusError:  # stopping: the state holds steps whose outputs are not queued
            self.unsettled = True
            raise
        for letter in out.dead_letters:  # counted here: a retried wave drops its first try's
            self.metrics.dead_letters.labels(letter["reason"]).inc()
        self.pending_decisions += [decision_row(d) for d in out.decisions]
        self.pending_alerts += [alert_row(a) for a in out.alerts]
        self.pending_dead_letters += out.dead_letters

    def checkpoint(self, commit_to_bus: bool = True, durable: bool = True) -> None:
        """Snapshot the changed state rows, the decisions and dead letters since the last
        checkpoint and the source offsets, and hand them to the writer (one store transaction
        on its own thread); with ``durable``, wait until it is committed. Once a write is
        durable, its offsets also go to the bus, for lag tools."""
        tables = self.tables()
        for processor in self.processors.values():
            processor.report()
        if self.offsets or any(t.dirty for t in tables.values()):
            if not self.output.drain():  # outputs reach the bus before the store records them
                raise BusError("the bus has not taken the outputs yet: checkpoint put off")
            # the write in flight first: should it have failed, its snapshot is handed back
            # into this one, never dropped beside it
            self._settled(self.writer.wait, commit_to_bus)
            row_ids = {key: list(t.dirty) for key, t in tables.items()}
            deliveries = self.subscriptions.deliveries(
                self.pending_decisions, self.pending_alerts) if self.subscriptions else []
            snapshot = Snapshot({key: t.checkpoint_rows(row_ids[key]) for key, t in tables.items()},
                                row_ids, self.pending_decisions, self.pending_dead_letters,
                                self.offsets, dict(self.epochs), self.pending_alerts,
                                deliveries, self.take_logs())
            for t in tables.values():
                t.dirty.clear()
            self.pending_decisions, self.pending_dead_letters, self.offsets = [], [], {}
            self.pending_alerts = []
            self.chunks_since, self.last_checkpoint = 0, time.monotonic()
            self._settled(lambda: self.writer.submit(snapshot), commit_to_bus)
        if durable:
            self._settled(self.writer.wait, commit_to_bus)

    def take_logs(self) -> dict[str, LogTake]:
        """Each processor's observation log since the last checkpoint, by model."""
        return {p.model.key: p.log.take() for p in self.processors.values()
                if p.log is not None}

    def settle(self) -> None:
        """Wait for the checkpoint in flight (a processor is about to read the observation
        log): once it is durable the store holds what it wrote; should it have failed, its
        snapshot is pending again. Either way nothing is missing from what the processor
        reads."""
        try:
            self._settled(self.writer.wait, commit_to_bus=True)
        except CheckpointError as exc:
            log.error("%s; the next checkpoint writes it again", exc)

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
        for model, table in self.tables().items():
            table.dirty.update(r for r in snapshot.row_ids.get(model, ())
                               if table.shard[r] >= 0)
        for processor in self.processors.values():
            taken = snapshot.logs.get(processor.model.key)
            if processor.log is not None and taken is not None:
                processor.log.put_back(taken)
                processor.log.retain(processor.table.has)
        self.pending_decisions = snapshot.decisions + self.pending_decisions
        self.pending_alerts = snapshot.alerts + self.pending_alerts
        self.pending_dead_letters = snapshot.dead_letters + self.pending_dead_letters
        owned = self.partitions_of(self.epochs)
        for key, offset in snapshot.offsets.items():
            if key in owned or not self.epochs:
                self.offsets[key] = max(offset, self.offsets.get(key, 0))

    def tables(self) -> dict[str, StateTable]:
        """Every state table of every state model, by the key its rows are stored under."""
        return {key: table for p in self.processors.values() for key, table in p.tables().items()}

    def page_out(self) -> None:
        """Drop least recently used (clean) shards while the state exceeds its budget."""
        victims = {p: p.over_budget() for p in self.processors.values()}
        if any(victims.values()):
            self.checkpoint()  # their last rows must be in the store first
            for processor, shards in victims.items():
                processor.drop_shards(shards)
                self.metrics.shard_evictions.inc(len(shards))

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
