"""End-to-end throughput and latency of the consumer on a real Kafka-protocol broker.

Pre-encoded chunks are produced into a local Tansu broker (or --bootstrap: a real Kafka); the
daemon's own Consumer (decode, validate, batched model step, decisions, checkpoints to SQLite)
drains them. Printed beside it, in the same run: the step-only ceiling (the model `step` on the
same batch sizes, no bus, no store) and the produce rate. Then the producer is paced at half the
measured maximum and the produce-to-processed latency of every chunk is recorded.
Usage: python bench/throughput.py [--parcels-per-shard 2000] [--acquisitions 12]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import torch

from common import print_table
from eowatch.contract.feeds import chunks_by_shard
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.base import OutMessage
from eowatch.daemon.bus.kafka import KafkaBus
from eowatch.daemon.bus.tansu import start_broker
from eowatch.daemon.consuming import Consumer
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.processing import Processor
from eowatch.daemon.registry import parcel_registry
from eowatch.daemon.state_model import CropModel
from eowatch.daemon.store.store import Store
from eowatch.models.artifact import load_artifact
from eowatch.models.datasets.breizhcrops import S2_BANDS
from eowatch.models.datasets.simulator import ParcelSimulator
from eowatch.settings import DEFAULT_MODEL


def make_chunks(shards: int, per_shard: int, acquisitions: int, bands: tuple[str, ...],
                seed: int = 0) -> list[list[ObservationChunk]]:
    """The first acquisitions of a simulated season (few clouds), one chunk per shard each."""
    n = shards * per_shard
    sim = ParcelSimulator(n, seed=seed, n_tiles=1, cloud_cover=0.05)
    ids = np.array([f"p{i}" for i in range(n)], dtype=object)
    shard_of = np.arange(n) % shards
    start = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
    columns = [S2_BANDS.index(b) for b in bands]
    out = []
    for day in sim.schedules[0][:acquisitions]:
        acquisition = sim.acquire(0, int(day))
        out.append(chunks_by_shard("bench", f"BENCH_D{day:03d}", start + timedelta(days=int(day)),
                                   bands, ids[acquisition.parcels],
                                   shard_of[acquisition.parcels],
                                   acquisition.values[:, columns],
                                   acquisition.valid_fraction))
    return out


def build_consumer(store: Store, bus: KafkaBus, prefix: str, shards: int, step_batch: int,
                   device: str, checkpoint_seconds: float, log: bool = True) -> Consumer:
    """The daemon's consumer; ``log``: keep the observation log (the daemon's default)."""
    metrics = Metrics()
    processor = Processor(CropModel(load_artifact(DEFAULT_MODEL, device)),
                          parcel_registry(store), metrics, 0.5, "01-01", device=device,
                          load_states=store.load_states, step_batch=step_batch,
                          read_log=store.read_log if log else None)
    topics = {t: f"{prefix}.{t}" for t in ("observations", "decisions", "alerts", "deadletter")}
    bus.ensure_topics(list(topics.values()))
    return Consumer(topics, f"{prefix}-group", bus, store, [processor], metrics, shards,
                    checkpoint_seconds=checkpoint_seconds)


def drain(consumer: Consumer, expected_records: int, latencies: list[float] | None = None,
          timeout_s: float = 600) -> tuple[float, float]:
    """Consume until ``expected_records`` chunks are processed. Returns the seconds from the
    poll that brought the first record until every decision was on the bus, and until the
    closing checkpoint was durable as well."""
    seen, first, deadline = 0, None, time.monotonic() + timeout_s
    while seen < expected_records and time.monotonic() < deadline:
        polled = time.perf_counter()
        records = consumer.run_once(timeout_s=0.2)
        if not records:
            continue
        first = first or polled
        if latencies is not None:
            done = time.time()
            latencies += [done - r.timestamp for r in records if r.timestamp]
        seen += len(records)
    if seen < expected_records:
        raise TimeoutError(f"consumed {seen} of {expected_records} chunks")
    assert first is not None
    consumer.output.drain()
    out_s = time.perf_counter() - first
    consumer.checkpoint()
    return out_s, time.perf_counter() - first


@torch.inference_mode()
def step_ceiling(model, batches: list[np.ndarray], step_batch: int, device: str) -> float:
    """Parcel-steps/s of the model step alone on the same values and batch sizes."""
    state = model.init_state(step_batch, device=device)
    days = torch.full((step_batch,), 100.0, device=device)
    tensors = [torch.as_tensor(b, device=device) for b in batches]
    started, steps = time.perf_counter(), 0
    for values in tensors:
        for i in range(0, len(values), step_batch):
            part = values[i:i + step_batch]
            new, _, _ = model.step(state[:len(part)], part, days[:len(part)])
            state[:len(part)] = new
            steps += len(part)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", help="a running Kafka (default: start Tansu here)")
    parser.add_argument("--shards", type=int, default=64)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--parcels-per-shard", type=int, default=2000)
    parser.add_argument("--acquisitions", type=int, default=12)
    parser.add_argument("--step-batch", type=int, default=2048)
    parser.add_argument("--checkpoint-seconds", type=float, default=2.0,
                        help="EOWATCH_CHECKPOINT_SECONDS of the consumer (default 2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    broker = None
    if args.bootstrap is None:
        broker, args.bootstrap = start_broker()
    workdir = Path(tempfile.mkdtemp(prefix="eowatch-bench-"))
    try:
        run(args, workdir)
    finally:
        if broker is not None:
            broker.terminate()


def run(args: argparse.Namespace, workdir: Path) -> None:
    loaded = load_artifact(DEFAULT_MODEL, args.device)
    bands = loaded.metadata.band_names
    store = Store(f"sqlite:///{workdir / 'bench.db'}")
    store.migrate()
    chunks = make_chunks(args.shards, args.parcels_per_shard, args.acquisitions, bands)
    store.upsert_parcels([{"id": pid, "shard": c.shard} for c in chunks[0] for pid in c.parcel_ids])
    payloads = [[OutMessage(c.key, c.encode(), c.shard) for c in acq] for acq in chunks]
    n_records = sum(len(p) for p in payloads)
    parcel_obs = n_records * args.parcels_per_shard
    mb = sum(len(m.value) for p in payloads for m in p) / 1e6

    # maximum rate: everything produced first, then drained
    bus = KafkaBus(args.bootstrap, store, args.partitions, client_id="bench")
    consumer = build_consumer(store, bus, "max", args.shards, args.step_batch, args.device,
                              args.checkpoint_seconds)
    started = time.perf_counter()
    for acquisition in payloads:
        bus.publish("max.observations", acquisition)
    produce_s = time.perf_counter() - started
    out_s, durable_s = drain(consumer, n_records)
    max_rate = parcel_obs / durable_s
    decisions = consumer.store.count(__import__("eowatch.daemon.store.tables",
                                                fromlist=["DecisionRow"]).DecisionRow)
    consumer.close()
    ceiling = step_ceiling(loaded.model, [c.values for acq in chunks for c in acq],
                           args.step_batch, args.device)

    # latency at half the maximum rate: a paced producer beside the consumer
    latencies: list[float] = []
    paced = build_consumer(store, bus, "half", args.shards, args.step_batch, args.device,
                           args.checkpoint_seconds)
    interval = args.parcels_per_shard * args.shards / (max_rate / 2)

    def produce() -> None:
        # start once the consumer owns its partitions: a chunk's latency is not a group join
        while not paced.consumer.assignment():
            time.sleep(0.1)
        next_at = time.perf_counter() + 0.5
        for acquisition in payloads:
            time.sleep(max(0.0, next_at - time.perf_counter()))
            bus.publish("half.observations", acquisition)
            next_at += interval

    producer = threading.Thread(target=produce)
    producer.start()
    drain(paced, n_records, latencies)
    producer.join()
    paced.close()
    bus.close()

    threads = torch.get_num_threads() if args.device == "cpu" else args.device
    print(f"{args.shards} shards x {args.parcels_per_shard} parcels, {args.acquisitions} "
          f"acquisitions = {n_records} chunks, {parcel_obs:,} parcel-observations, {mb:.0f} MB; "
          f"{args.partitions} partitions; model {loaded.metadata.version} on {args.device} "
          f"({threads}); step batch {args.step_batch}; checkpoints every "
          f"{args.checkpoint_seconds:g} s")
    print_table(["measure", "value"], [
        ["produce (acks=all), parcel-obs/s", f"{parcel_obs / produce_s:,.0f}"],
        ["end to end: bus -> state -> decisions, parcel-obs/s", f"{max_rate:,.0f}"],
        ["  the same until the last decision is on the bus (before the closing "
         "checkpoint)", f"{parcel_obs / out_s:,.0f}"],
        ["step-only ceiling, parcel-steps/s", f"{ceiling:,.0f}"],
        ["end to end / ceiling", f"{max_rate / ceiling:.1%}"],
        ["decisions emitted", f"{decisions:,}"],
        [f"latency at half rate ({max_rate / 2:,.0f}/s), p50 s",
         f"{np.percentile(latencies, 50):.3f}"],
        ["latency at half rate, p95 s", f"{np.percentile(latencies, 95):.3f}"],
    ])


if __name__ == "__main__":
    main()
