"""Flood detection on simulated Sentinel-1 seasons: the per-cell change model against a
single-image Otsu threshold, and the model's speed against the crop model's step.

    python bench/flood.py [--seeds 3] [--speed-only]

Per scenario: CSI = TP / (TP + FP + FN) over the flooded acquisitions (cells the model can
observe: not warming up, not reference water, not excluded), user's and producer's accuracy,
days from the first flooded acquisition to `flood.opened`, and false events per area-year on
flood-free seasons. Goals: CSI >= 0.80, <= 0.1 false events per area-year, the event at the first
flooded acquisition, and the model above Otsu.

Speed, in the same run: cells per second through the consumer's flood processor (validate,
step, the area's verdict and its extent) against the crop model's batched step on as many
parcels (the ceiling: the same machinery's model step alone), and a GRD scene turned into cell
observations (annotation, calibration, windows of DN, sigma0, cell means) in seconds per
100 km² of areas, on the real SAFE XML with generated DN (tests/data/sentinel1).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from common import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
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


def crop_ceiling(batch: int, seconds: float = 2.0) -> float:
    """Parcels per second of the bundled crop model's batched step alone."""
    import torch

    from eowatch.models.artifact import load_artifact
    from eowatch.settings import DEFAULT_MODEL

    loaded = load_artifact(DEFAULT_MODEL)
    net = loaded.model
    state = torch.zeros((batch, *net.state_shape))
    values = torch.rand((batch, len(loaded.metadata.band_names)))
    days = torch.full((batch,), 100.0)
    steps, started = 0, time.perf_counter()
    with torch.inference_mode():
        while time.perf_counter() - started < seconds:
            state, _, _ = net.step(state, values, days)
            steps += 1
    return steps * batch / (time.perf_counter() - started)


def processor_speed(areas: int, seconds: float = 3.0) -> tuple[float, int]:
    """Cells per second through the daemon's flood processor, on the simulated radar feed's
    floodplains (a season of acquisitions, areas × 4,800 cells each), their coarse cells
    observed by weather-satellite scenes first, so that each radar wave reads their priors."""
    from eowatch.adapters.simulated_geo import SimulatedGeoFeed
    from eowatch.adapters.simulated_s1 import SimulatedRadarFeed
    from eowatch.cells import area_cell_rows, cell_rows, coarse_grid
    from eowatch.contract.feeds import chunks_by_shard
    from eowatch.daemon.areas import AreaProcessor
    from eowatch.daemon.bus.base import Record
    from eowatch.daemon.metrics import Metrics
    from eowatch.daemon.outcomes import BatchOutput
    from eowatch.daemon.registry import TargetRegistry
    from eowatch.models.datasets.s1simulator import Flood as SimFlood

    class Host:  # what the feed needs of the daemon here: nothing is published
        def cursor(self, feed):  # noqa: ANN001, ANN202
            return None

    feed = SimulatedRadarFeed(Host(), areas, 0, 64, 1.0, 2025, 2, (SimFlood(200, 30, 8),))
    stored = {g.area_id: area_cell_rows(g, 64) for g in feed.grids}   # with coarse grids
    rows = [r for grid in feed.grids for r in cell_rows(grid, 64)]
    rows += [r for grid in feed.grids for r in cell_rows(coarse_grid(grid), 64)]
    registry = TargetRegistry(lambda: ([r["id"] for r in rows], [r["shard"] for r in rows],
                                       [None] * len(rows)))
    areas = {g.area_id: (stored[g.area_id][0], g.count) for g in feed.grids}
    processor = AreaProcessor(registry, Metrics(), 0.5, areas.__getitem__)
    # weather-satellite scenes first: the radar's waves then read the coarse cells' priors
    geo = SimulatedGeoFeed(Host(), len(feed.grids), 0, 64, 1.0, 2025, 2, (), 60.0)
    scene_times = geo.scenes[0].times(geo.start, geo.start + timedelta(days=2))
    for k, at in enumerate(scene_times[:8]):
        processor.process([(Record("g", 0, k, None, b""), c) for c in geo.chunks(at)],
                          BatchOutput())
    fine = [r for r in rows if "#" not in r["id"]]
    ids = np.array([r["id"] for r in fine], dtype=object)
    shards = np.array([r["shard"] for r in fine])
    events = feed._events(0)
    chunks = []
    for day, orbit in events:
        values = np.concatenate([np.column_stack([
            a.vv_db, a.vh_db, np.full(len(a.vv_db), a.incidence),
            np.full(len(a.vv_db), orbit)]) for a in (s.acquire(day, orbit)
                                                     for s in feed.simulators)])
        chunks.append(chunks_by_shard("bench", f"A{day:.0f}_{orbit}", feed.acquired_at(day),
                                      feed.band_names, ids, shards, values.astype(np.float32),
                                      np.ones(len(ids), np.float32), targets="cells"))
    stepped, spent, k = 0, 0.0, 0
    while spent < seconds and k < len(chunks):
        items = [(Record("t", 0, k, None, b""), c) for c in chunks[k]]
        started = time.perf_counter()
        processor.process(items, BatchOutput())
        spent += time.perf_counter() - started
        stepped += len(ids)
        k += 1
    return stepped / spent, len(ids)


class Collect:
    """What the simulated feeds need of the daemon here: publications are kept in a list."""

    def __init__(self) -> None:
        self.published: list[list] = []

    def cursor(self, feed):  # noqa: ANN001, ANN201
        return None

    def publish(self, feed, chunks, cursor) -> None:  # noqa: ANN001
        self.published.append(chunks)


S1_LATENCY_H, GEO_LATENCY_H = 3.0, 0.25   # from acquisition to the chunk on the bus


def fusion_run(floods: tuple[Flood, ...], seed: int, geostationary: bool,
               interval_minutes: float = 60.0) -> dict[str, float]:
    """Two years of one simulated floodplain (the first to learn, floods in the second) through
    the daemon's flood processor: radar alone, or radar and weather-satellite scenes, each
    chunk processed when it would reach the bus. Returns hours from each flood's onset to its
    event, and the events that no flood justifies."""
    from eowatch.adapters.simulated_geo import SimulatedGeoFeed
    from eowatch.adapters.simulated_s1 import SimulatedRadarFeed
    from eowatch.cells import area_cell_rows
    from eowatch.daemon.areas import AreaProcessor
    from eowatch.daemon.bus.base import Record
    from eowatch.daemon.metrics import Metrics
    from eowatch.daemon.outcomes import BatchOutput
    from eowatch.daemon.registry import TargetRegistry

    # the onset at a random phase of the radar's 4-day cycle of passes (3 orbits, 12 days)
    shift = 365 + np.random.default_rng([seed, 3]).uniform(0, 4)
    floods = tuple(Flood(f.start_day + shift, f.duration_days, f.reach_cells) for f in floods)
    radar_host, geo_host = Collect(), Collect()
    radar = SimulatedRadarFeed(radar_host, 1, seed, 64, 1e6, 2025, 2, floods,
                               clock=lambda: 0.0)
    radar.poll()
    arrivals = [(c[0].acquired_at.timestamp() + S1_LATENCY_H * 3600, c)
                for c in radar_host.published]
    if geostationary:
        geo = SimulatedGeoFeed(geo_host, 1, seed, 64, 1e6, 2025, 2, floods, interval_minutes,
                               clock=lambda: 0.0)
        geo.poll()
        arrivals += [(c[0].acquired_at.timestamp() + GEO_LATENCY_H * 3600, c)
                     for c in geo_host.published]
    arrivals.sort(key=lambda a: a[0])
    definition, rows = area_cell_rows(radar.grids[0], 64)
    registry = TargetRegistry(lambda: ([r["id"] for r in rows], [r["shard"] for r in rows],
                                       [None] * len(rows)))
    area = radar.grids[0]
    processor = AreaProcessor(registry, Metrics(), 0.5,
                              lambda _: (definition, area.count))
    alerts = []
    for k, (_, chunks) in enumerate(arrivals):
        out = BatchOutput()
        processor.process([(Record("t", 0, k, None, b""), c) for c in chunks], out)
        alerts += out.alerts
    start = radar.acquired_at(0).replace(hour=0, minute=0)
    onsets = [(start.timestamp() + f.start_day * 86400,
               start.timestamp() + (f.start_day + f.duration_days) * 86400) for f in floods]
    opened = {a["event_id"]: a for a in alerts if a["kind"] == "flood.opened"}
    ends = {a["event_id"]: a for a in alerts
            if a["kind"] in ("flood.closed", "flood.withdrawn")}
    learnt = start.timestamp() + 90 * 86400   # both models past their warm-up
    area_years = (730 - 90) / 365

    def at(alert: dict) -> float:
        return datetime.fromisoformat(alert["observed_at"]).timestamp()

    delays, false_events, withdrawn = [], 0, 0
    for begin, end in onsets:
        found = [at(a) - begin for a in opened.values() if begin - 3600 <= at(a) <= end]
        delays.append(min(found, default=np.inf) / 3600)
    for event, alert in opened.items():
        t = at(alert)
        if t < learnt:
            continue
        if not any(begin - 3600 <= t <= end for begin, end in onsets):
            false_events += 1
        if event in ends and ends[event]["kind"] == "flood.withdrawn":
            withdrawn += 1
    confirmed = [a for a in alerts if a["kind"] == "flood.confirmed"]
    return {"delay_h": max(delays, default=0.0), "false_events": false_events / area_years,
            "withdrawn": withdrawn / area_years, "confirmed": len(confirmed),
            "geo_opened": sum(a["evidence"] == "geostationary" for a in opened.values()
                              if at(a) >= learnt)}


def fusion(seeds: int, interval_minutes: float = 60.0) -> None:
    rows = []
    for name, floods in SCENARIOS.items():
        for geostationary in (False, True):
            results = [fusion_run(floods, seed, geostationary, interval_minutes)
                       for seed in range(seeds)]
            delays = [r["delay_h"] for r in results]
            rows.append([name, "S1 + geostationary" if geostationary else "S1 alone",
                         f"{np.median(delays):.1f}" if floods else "—",
                         f"{max(delays):.1f}" if floods else "—",
                         f"{np.mean([r['geo_opened'] for r in results]):.2f}",
                         f"{np.mean([r['confirmed'] for r in results]):.2f}",
                         f"{np.mean([r['withdrawn'] for r in results]):.2f}",
                         f"{np.mean([r['false_events'] for r in results]):.2f}"])
    print_table(["scenario", "evidence", "hours to open (median)", "(max)",
                 "opened by geostationary", "confirmed", "withdrawn",
                 "false events / area-year"], rows)


def grd_speed(km2: float = 100.0) -> float:
    """Seconds to turn one GRD scene into the cell observations of ``km2`` of areas."""
    import tempfile

    import pystac
    import shapely

    from eowatch.adapters.s1_geolocation import Geolocation
    from eowatch.adapters.sentinel1 import Area, Sentinel1Config, read_grd
    from eowatch.cells import CellGrid
    from tests.data.sentinel1 import SAFE, GrdScene, write_grd

    geo = Geolocation.from_safe(SAFE, "vv")
    side_deg = 0.045   # ~5 km x 3.5 km at this latitude
    grids, outlines = [], []
    line, pixel = 3000.0, 6000.0
    while sum(g.count for g in grids) * 0.0016 < km2:
        lon, lat = geo.lonlat(np.array([line]), np.array([pixel]))
        outline = shapely.box(lon[0], lat[0], lon[0] + side_deg, lat[0] + side_deg)
        grids.append(CellGrid.of(f"a{len(grids)}", outline, 40))
        outlines.append(outline)
        pixel += 3000
        if pixel > 22000:
            pixel, line = 6000.0, line + 3000
    area_km2 = sum(g.count for g in grids) * 0.0016
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        scene = GrdScene("BENCH", datetime_now(), 37,
                         [(g, {"VV": np.full(g.count, -10.0), "VH": np.full(g.count, -16.0)})
                          for g in grids])
        item = pystac.Item.from_dict(write_grd(root, scene, str(root)))
        areas = [Area(g, g.cells()[0], 0, o) for g, o in zip(grids, outlines, strict=True)]
        started = time.perf_counter()
        parts = read_grd(item, areas, Sentinel1Config())
        seconds = time.perf_counter() - started
    observed, cells = sum(len(p.means.index) for p in parts), sum(g.count for g in grids)
    assert observed == cells, f"{observed} of {cells} cells observed"
    return seconds * 100.0 / area_km2


def datetime_now():  # noqa: ANN201
    from datetime import UTC, datetime

    return datetime(2026, 3, 5, tzinfo=UTC)


def speed() -> None:
    cells_per_s, cells = processor_speed(areas=4)
    ceiling = crop_ceiling(cells)
    grd = grd_speed()
    print_table(["measure", "value"], [
        ["flood processor, cells/s (validate, step, verdict, extent)", f"{cells_per_s:,.0f}"],
        [f"crop model step alone, parcels/s (batch {cells:,})", f"{ceiling:,.0f}"],
        ["flood processor / crop step", f"{cells_per_s / ceiling:.2f}"],
        ["GRD scene -> cell observations, s per 100 km² of areas", f"{grd:.2f}"],
    ])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--speed-only", action="store_true", help="skip the scenarios")
    parser.add_argument("--fusion-only", action="store_true",
                        help="only Sentinel-1 alone against Sentinel-1 with geostationary scenes")
    parser.add_argument("--geo-minutes", type=float, default=60.0,
                        help="minutes between simulated weather-satellite scenes (the imagers "
                        "scan every 10-15)")
    args = parser.parse_args()
    if args.speed_only:
        speed()
        return
    if args.fusion_only:
        fusion(args.seeds, args.geo_minutes)
        return
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
    print()
    fusion(args.seeds, args.geo_minutes)
    print()
    speed()


if __name__ == "__main__":
    main()
