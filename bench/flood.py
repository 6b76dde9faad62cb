"""Flood detection on simulated Sentinel-1 seasons: the per-cell change model against a
single-image Otsu threshold, and the model's speed against the crop model's step.

    python bench/flood.py [--seeds 3]

Per scenario: CSI = TP / (TP + FP + FN) over the flooded acquisitions (cells the model can
observe: not warming up, not reference water, not excluded), user's and producer's accuracy,
days from the first flooded acquisition to `flood.opened`, and false events per area-year on
flood-free seasons. Goals: CSI >= 0.80, <= 0.1 false events per area-year, the event at the first
flooded acquisition, and the model above Otsu.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from common import print_table
from eowatch.models.datasets.s1simulator import AreaSimulator, Flood
from eowatch.models.flood import DRY, FLOODED, AreaEvents, FloodState, step

CELL_KM2 = 0.04 * 0.04

SCENARIOS = {
    "one flood, summer": (Flood(200, 24, 14),),
    "one flood, early (day 75)": (Flood(75, 18, 10),),
    "two floods": (Flood(120, 14, 8), Flood(290, 20, 16)),
    "flood-free": (),
}


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the split of the histogram with the largest between-class variance."""
    counts, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)
    mean = np.cumsum(counts * centres)
    total_w, total_m = weight[-1], mean[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        between = (total_m * weight - mean * total_w) ** 2 / (weight * (total_w - weight))
    return float(centres[np.nanargmax(between[:-1])])


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    fn: int = 0

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        self.tp += int((predicted & truth).sum())
        self.fp += int((predicted & ~truth).sum())
        self.fn += int((~predicted & truth).sum())

    @property
    def csi(self) -> float:
        return self.tp / max(1, self.tp + self.fp + self.fn)

    @property
    def users(self) -> float:
        return self.tp / max(1, self.tp + self.fp)

    @property
    def producers(self) -> float:
        return self.tp / max(1, self.tp + self.fn)


def run(floods: tuple[Flood, ...], seed: int) -> dict[str, float]:
    # a first season to learn the normal backscatter, then the scored one with the floods
    floods = tuple(Flood(f.start_day + 365, f.duration_days, f.reach_cells) for f in floods)
    sim = AreaSimulator(floods=floods, seed=seed)
    state, events = FloodState.empty(sim.cells), AreaEvents()
    cells = np.arange(sim.cells)
    model, baseline = Tally(), Tally()
    opened: list[float] = []
    passes = np.array([d for d, _ in sim.schedule(365 * 2)])
    first_flooded = [float(passes[passes >= f.start_day][0]) for f in floods]
    stepped, seconds = 0, 0.0
    for acquisition in sim.season(days=365 * 2):
        started = time.perf_counter()
        status, p = step(state, cells, acquisition.orbit, acquisition.vv_db, acquisition.vh_db)
        seconds += time.perf_counter() - started
        stepped += len(cells)
        scored, truth = acquisition.day >= 365, acquisition.flooded
        for message in events.observe("area", acquisition.day * 86400, status, p, CELL_KM2):
            if scored and message["kind"] == "flood.opened":
                opened.append(acquisition.day)
        if not scored or not truth.any():
            continue
        observable = np.isin(status, (DRY, FLOODED))
        model.add((status == FLOODED)[observable], truth[observable])
        water = acquisition.vv_db < otsu(acquisition.vv_db)
        baseline.add(water[observable], truth[observable])
    delays = [min((o - start for o in opened if o >= start - 1e-6), default=np.inf)
              for start in first_flooded]
    return {"csi": model.csi, "users": model.users, "producers": model.producers,
            "otsu_csi": baseline.csi, "events": len(opened), "floods": len(floods),
            "delay": max(delays, default=0.0), "cells_per_s": stepped / seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for name, floods in SCENARIOS.items():
        results = [run(floods, seed) for seed in range(args.seeds)]
        mean = {k: float(np.mean([r[k] for r in results])) for k in results[0]}
        false_events = sum(max(0, r["events"] - r["floods"]) for r in results) / args.seeds
        rows.append([name, f"{mean['csi']:.3f}" if floods else "—",
                     f"{mean['users']:.3f}" if floods else "—",
                     f"{mean['producers']:.3f}" if floods else "—",
                     f"{mean['otsu_csi']:.3f}" if floods else "—",
                     f"{max(r['delay'] for r in results):.1f}" if floods else "—",
                     f"{false_events:.2f}", f"{mean['cells_per_s']:,.0f}"])
    print_table(["scenario", "CSI", "user's", "producer's", "Otsu CSI",
                 "days to open (max)", "false events / area-year", "cells/s"], rows)


if __name__ == "__main__":
    main()
