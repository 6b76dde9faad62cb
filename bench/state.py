"""State size, memory for 1 M / 10 M registered parcels, and recovery time after a crash.

1. Bytes of recurrent state per parcel (fp32 and fp16) for the bundled model's 2x64 LSTM.
2. Resident memory of a process holding the parcel registry of N parcels and the state of
   min(N, budget) of them (the rest paged out), N = 1 M and 10 M, each in a fresh process.
3. Recovery: 1 M parcels checkpointed in SQLite and a backlog on the embedded bus (what arrives
   within checkpoint intervals); a new consumer (as after kill -9) loads every shard and catches
   up. Reported: load time, catch-up time, total.
4. The effect of float16 state on decisions: one simulated season through the embedded daemon
   with float32 and with float16 state, decisions compared parcel by parcel.
Usage: python bench/state.py [--parcels 1000000] [--backlog 100000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import print_table
from eowatch.contract.feeds import chunks_by_shard
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.consuming import Consumer
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.processing import Processor
from eowatch.daemon.publisher import Publisher
from eowatch.daemon.registry import parcel_registry
from eowatch.daemon.state import StateTable
from eowatch.daemon.state_model import CropModel
from eowatch.daemon.store.store import Store
from eowatch.models.artifact import load_artifact
from eowatch.settings import DEFAULT_MODEL

SHARDS = 256


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def memory_child(n: int, budget_rows: int, dtype: str) -> dict:
    """In a fresh process: RSS of a registry of n parcels and the state of budget_rows."""
    loaded = load_artifact(DEFAULT_MODEL)
    base = rss_bytes()
    ids = np.array([f"FR-{i:09d}" for i in range(n)], dtype=object)
    index = pd.Index(ids, dtype=object)
    index.get_indexer(index[:10])  # build the hash table, as lookups do
    shards = np.arange(n, dtype=np.int64) % SHARDS
    registry = rss_bytes() - base
    table = StateTable(CropModel(loaded),
                       dtype=torch.float16 if dtype == "float16" else torch.float32)
    rows = min(n, budget_rows)
    for start in range(0, rows, 1_000_000):
        stop = min(rows, start + 1_000_000)
        table.add(ids[start:stop], shards[start:stop])
    return {"registry": registry, "state": rss_bytes() - base - registry, "rows": rows,
            "total": rss_bytes()}


def recovery(parcels: int, backlog: int, workdir: Path) -> dict:
    loaded = load_artifact(DEFAULT_MODEL)
    store = Store(f"sqlite:///{workdir / 'recovery.db'}")
    store.migrate()
    ids = np.array([f"FR-{i:09d}" for i in range(parcels)], dtype=object)
    shards = np.arange(parcels, dtype=np.int64) % SHARDS
    for start in range(0, parcels, 200_000):
        store.upsert_parcels([{"id": i, "shard": int(s)} for i, s in
                              zip(ids[start:start + 200_000], shards[start:start + 200_000],
                                  strict=True)])
    # checkpoints of every shard: a season under way (random states, 20 observations each)
    table = StateTable(CropModel(loaded))
    rows = table.add(ids, shards)
    table.state[:] = torch.rand_like(table.state) * 0.2
    table.season[rows], table.observations[rows] = 2026, 20
    table.last_time[rows] = datetime(2026, 4, 1, tzinfo=UTC).timestamp()
    with store.transaction() as conn:
        store.save_states(conn, loaded.sha256, table.checkpoint_rows(rows))
    # the backlog the crashed consumer had not checkpointed
    bus = EmbeddedBus(store)
    publisher = Publisher(bus, store, "recovery.observations")
    rng = np.random.default_rng(0)
    picked = rng.choice(parcels, backlog, replace=False)
    when = datetime(2026, 4, 6, 10, 30, tzinfo=UTC)
    values = rng.uniform(0.02, 0.5, (backlog, len(loaded.metadata.band_names)))
    chunks = chunks_by_shard("bench", "RECOVERY", when, loaded.metadata.band_names, ids[picked],
                             shards[picked], values.astype(np.float32),
                             np.ones(backlog, np.float32))
    publisher.publish("bench", chunks, {"done": True})
    del table

    started = time.perf_counter()
    metrics = Metrics()
    processor = Processor(CropModel(loaded), parcel_registry(store), metrics, 0.5, "01-01",
                          load_states=store.load_states)
    topics = {t: f"recovery.{t}" for t in ("observations", "decisions", "alerts", "deadletter")}
    consumer = Consumer(topics, "recovery-group", bus, store, [processor], metrics, SHARDS)
    processor.ensure_shards(range(SHARDS))  # what assignment does: load every checkpoint
    loaded_at = time.perf_counter()
    while consumer.run_once(timeout_s=0):
        pass
    consumer.checkpoint()
    done = time.perf_counter()
    return {"load": loaded_at - started, "catch_up": done - loaded_at, "total": done - started,
            "parcels_in_memory": len(processor.table)}


def season_decisions(dtype: str, parcels: int, workdir: Path) -> dict[str, tuple[str, float]]:
    """Decisions of the embedded daemon over one simulated season with this state dtype."""
    from eowatch.daemon.service import Daemon
    from eowatch.settings import load_settings

    daemon = Daemon(load_settings(data_dir=workdir / dtype, state_dtype=dtype, shards=32,
                                  api_port=0),
                    feed_settings={"simulated": {"parcels": parcels, "seasons": 1,
                                                 "days_per_second": 1e9}})
    feed = daemon.adapters[0]
    while not feed.finished:
        feed.poll()
    while daemon.consumer.run_once(timeout_s=0):
        pass
    daemon.consumer.checkpoint()
    items = daemon.store.list_decisions(limit=parcels * 2).items
    daemon.shutdown()
    return {d["parcel_id"]: (d["class"], d["day_of_season"]) for d in items}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=1_000_000)
    parser.add_argument("--backlog", type=int, default=100_000)
    parser.add_argument("--budget-rows", type=int, default=2_000_000,
                        help="parcels whose state stays in memory (EOWATCH_STATE_BUDGET_BYTES)")
    parser.add_argument("--fp16-parcels", type=int, default=5000,
                        help="simulated parcels for the float16-versus-float32 comparison")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(int(args.child[0]), int(args.child[1]), args.child[2])))
        return
    loaded = load_artifact(DEFAULT_MODEL)
    rows = []
    for dtype in ("float32", "float16"):
        table = StateTable(CropModel(loaded), dtype=getattr(torch, dtype))
        rows.append([f"state per parcel ({dtype})", f"{table.bytes_per_parcel:,} B"])
        rows.append([f"state + outputs + bookkeeping per parcel ({dtype})",
                     f"{table.bytes_per_row:,} B"])
    for n in (1_000_000, 10_000_000):
        for dtype in ("float32", "float16"):
            out = subprocess.run([sys.executable, __file__, "--child", str(n),
                                  str(args.budget_rows), dtype], capture_output=True, text=True,
                                 check=True, cwd=Path(__file__).parent)
            m = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append([f"RSS, {n / 1e6:.0f} M registered, {m['rows'] / 1e6:.0f} M in memory "
                         f"({dtype})",
                         f"{m['total'] / 2**30:.2f} GiB (registry {m['registry'] / 2**20:,.0f} "
                         f"MiB, state {m['state'] / 2**20:,.0f} MiB)"])
    with tempfile.TemporaryDirectory() as workdir:
        r = recovery(args.parcels, args.backlog, Path(workdir))
        full = season_decisions("float32", args.fp16_parcels, Path(workdir))
        half = season_decisions("float16", args.fp16_parcels, Path(workdir))
    same_class = np.mean([full[p][0] == half[p][0] for p in full])
    same_day = np.mean([full[p][1] == half[p][1] for p in full])
    shift = np.mean([abs(full[p][1] - half[p][1]) for p in full])
    rows += [[f"float16 state vs float32, {len(full):,} simulated parcels: same class",
              f"{same_class:.2%}"],
             ["float16 vs float32: same decision date", f"{same_day:.2%}"],
             ["float16 vs float32: mean |date shift|", f"{shift:.2f} days"]]
    rows += [[f"recovery of {args.parcels:,} parcels: load checkpoints", f"{r['load']:.1f} s"],
             [f"recovery: catch up {args.backlog:,} parcel-observations", f"{r['catch_up']:.1f} s"],
             ["recovery: total, restart to caught up (target 15 s)", f"{r['total']:.1f} s"]]
    print(f"bundled model {loaded.metadata.version}, state {list(loaded.model.state_shape)}, "
          f"{SHARDS} shards")
    print_table(["measure", "value"], rows)


if __name__ == "__main__":
    main()
