"""The observation log: its bytes per observation, what logging costs the consumer's
throughput, and how fast one parcel's evidence comes back from a country-sized store.

1. Bytes: the encoded columns of a season per observation (the bundled model: 12 bands, 6
   classes), and on disk in PostgreSQL (table, TOAST and index) once the store holds
   ``--parcels`` parcels x ``--observations`` observations.
2. Throughput: the throughput bench's consumer (Tansu broker, SQLite checkpoints) draining
   the same chunks with the log and without, alternately, in the same run.
3. Evidence query: the API's evidence of a random parcel (parcel row, its seasons, its log,
   its decisions), median and p95 over ``--queries`` parcels; the PNG beside it.

Usage: python bench/evidence.py [--parcels 1000000] [--observations 30] [--queries 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import sqlalchemy as sa
from faults import postgres_database
from throughput import build_consumer, drain, make_chunks

from common import print_table
from eowatch.daemon.bus.base import OutMessage
from eowatch.daemon.bus.kafka import KafkaBus
from eowatch.daemon.bus.tansu import start_broker
from eowatch.daemon.evidence import Explainer, evidence_png
from eowatch.daemon.observation_log import LOG_BANDS, Series
from eowatch.daemon.store.store import Store
from eowatch.models.artifact import load_artifact
from eowatch.models.datasets.simulator import ParcelSimulator
from eowatch.settings import DEFAULT_MODEL

MODEL = load_artifact(DEFAULT_MODEL)


def season_series(n: int, observations: int, seed: int = 0) -> list[Series]:
    """``n`` distinct simulated seasons of ``observations`` steps, with outputs and stopping
    scores of the right shape and range (what the log holds; the values are not the model's)."""
    sim = ParcelSimulator(n, seed=seed, n_tiles=1)
    series = sim.series().select_bands(MODEL.metadata.band_names)
    rng = np.random.default_rng(seed)
    start = datetime(2026, 1, 1, 10, 30, tzinfo=UTC).timestamp()
    out = []
    for i in range(n):
        times = start + 86400.0 * np.sort(rng.choice(365, observations, replace=False))
        bands = np.nan_to_num(series.values[i, :observations]).astype(LOG_BANDS)
        if len(bands) < observations:
            bands = np.resize(bands, (observations, bands.shape[1]))
        logits = rng.normal(size=(observations, len(MODEL.metadata.class_names)))
        outputs = (logits - np.log(np.exp(logits).sum(1, keepdims=True))).astype(np.float16)
        flags = (rng.random(observations) < 0.2).astype(np.uint8)  # a fifth cloudy
        stops = np.where(flags == 0, rng.random(observations), np.nan).astype(np.float16)
        out.append(Series(times, bands, outputs, stops, flags))
    return out


def fill_store(url: str, parcels: int, observations: int, distinct: int = 500) -> float:
    """``parcels`` parcels with one logged season each (and a decision each) via COPY;
    returns seconds."""
    store = Store(url)
    store.migrate()
    seasons = season_series(distinct, observations)
    blobs = [s.encode() for s in seasons]
    started = time.perf_counter()
    raw = sa.create_engine(url).raw_connection()
    try:
        with raw.cursor() as cursor:
            with cursor.copy("COPY parcels (id, shard, source, created_at) FROM STDIN") as copy:
                for i in range(parcels):
                    copy.write_row((f"p{i:07d}", i % 256, "bench", datetime.now(UTC)))
            now = datetime.now(UTC)
            with cursor.copy("COPY observation_log (model, target_id, season, times, bands, "
                             "outputs, stops, flags, updated_at) FROM STDIN") as copy:
                for i in range(parcels):
                    b = blobs[i % distinct]
                    copy.write_row((MODEL.sha256, f"p{i:07d}", 2026, b["times"], b["bands"],
                                    b["outputs"], b["stops"], b["flags"], now))
            with cursor.copy("COPY decisions (decision_id, parcel_id, season, feed, "
                             "model_version, crop, probabilities, p_stop, day_of_season, "
                             "acquired_at, acquisition_id, observations, forced, created_at) "
                             "FROM STDIN") as copy:
                acquired = datetime(2026, 6, 1, 10, 30, tzinfo=UTC)
                for i in range(parcels):
                    copy.write_row((f"d{i:07d}", f"p{i:07d}", 2026, "bench",
                                    MODEL.metadata.version, "maize", '{"maize": 0.9}', 0.7,
                                    152.4, acquired, "S2", 15, False, now))
        raw.commit()
        with raw.cursor() as cursor:
            cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    store.close()
    return time.perf_counter() - started


def bytes_on_disk(url: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_total_relation_size('observation_log')")).scalar()
    engine.dispose()
    return int(size or 0)


def query_times(url: str, parcels: int, queries: int) -> tuple[list[float], list[float], int]:
    store = Store(url)
    explainer = Explainer(store, MODEL.metadata, MODEL.sha256, MODEL.metadata.stop_threshold,
                          "01-01")
    rng = np.random.default_rng(1)
    seconds, png_seconds, steps = [], [], 0
    explainer.parcel("p0000000")  # the pool's first connection is not a query's cost
    for i in rng.choice(parcels, queries, replace=False):
        started = time.perf_counter()
        evidence = explainer.parcel(f"p{i:07d}")
        seconds.append(time.perf_counter() - started)
        assert evidence is not None
        steps = len(evidence["steps"]["dates"])
        if len(png_seconds) < 20:
            started = time.perf_counter()
            evidence_png(evidence)
            png_seconds.append(time.perf_counter() - started)
    store.close()
    return seconds, png_seconds, steps


def throughput(shards: int, per_shard: int, acquisitions: int, rounds: int
               ) -> dict[bool, list[float]]:
    """Parcel-observations/s of the consumer with the log and without, alternately."""
    broker, bootstrap = start_broker()
    rates: dict[bool, list[float]] = {True: [], False: []}
    try:
        chunks = make_chunks(shards, per_shard, acquisitions, MODEL.metadata.band_names)
        payloads = [[OutMessage(c.key, c.encode(), c.shard) for c in acq] for acq in chunks]
        records = sum(len(p) for p in payloads)
        for k in range(2 * rounds):
            logged = k % 2 == 1
            workdir = Path(tempfile.mkdtemp(prefix="eowatch-evidence-"))
            store = Store(f"sqlite:///{workdir / 'bench.db'}")
            store.migrate()
            store.upsert_parcels([{"id": p, "shard": c.shard} for c in chunks[0]
                                  for p in c.parcel_ids])
            bus = KafkaBus(bootstrap, store, 8, client_id="bench")
            prefix = f"run{k}"
            consumer = build_consumer(store, bus, prefix, shards, 2048, "cpu", 2.0,
                                      log=logged)
            for acquisition in payloads:
                bus.publish(f"{prefix}.observations", acquisition)
            _, durable_s = drain(consumer, records)
            rates[logged].append(records * per_shard / durable_s)
            consumer.close()
            bus.close()
            store.close()
    finally:
        broker.terminate()
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--observations", type=int, default=30)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--shards", type=int, default=32)
    parser.add_argument("--parcels-per-shard", type=int, default=2000)
    parser.add_argument("--acquisitions", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=2,
                        help="throughput runs with the log and without, alternately")
    args = parser.parse_args()

    one = season_series(1, args.observations)[0]
    encoded = sum(len(b) for b in one.encode().values())

    rates = throughput(args.shards, args.parcels_per_shard, args.acquisitions, args.rounds)
    without, with_log = statistics.mean(rates[False]), statistics.mean(rates[True])

    with postgres_database() as url:
        fill_s = fill_store(url, args.parcels, args.observations)
        disk = bytes_on_disk(url)
        seconds, png_seconds, steps = query_times(url, args.parcels, args.queries)

    print(f"model {MODEL.metadata.version}: {len(MODEL.metadata.band_names)} bands, "
          f"{len(MODEL.metadata.class_names)} classes; store {args.parcels:,} parcels x "
          f"{args.observations} observations (PostgreSQL, filled by COPY in {fill_s:.0f} s)")
    print_table(["measure", "value"], [
        ["log bytes per observation, encoded", f"{encoded / args.observations:.1f}"],
        ["log bytes per observation, PostgreSQL on disk (table + TOAST + index)",
         f"{disk / (args.parcels * args.observations):.1f}"],
        ["consumer without the log, parcel-obs/s", f"{without:,.0f}"],
        ["consumer with the log, parcel-obs/s", f"{with_log:,.0f}"],
        ["with / without", f"{with_log / without:.1%}"],
        [f"evidence of one parcel ({steps} steps), median ms",
         f"{1000 * statistics.median(seconds):.2f}"],
        ["evidence of one parcel, p95 ms", f"{1000 * np.percentile(seconds, 95):.2f}"],
        ["evidence PNG, median ms", f"{1000 * statistics.median(png_seconds):.1f}"],
    ])
    print("throughput runs (parcel-obs/s): without", [f"{r:,.0f}" for r in rates[False]],
          "with", [f"{r:,.0f}" for r in rates[True]])


if __name__ == "__main__":
    main()
