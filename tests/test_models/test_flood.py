"""The per-cell flood change model and the area events, on simulated Sentinel-1 seasons."""

from __future__ import annotations

import numpy as np
import pytest

from eowatch.models.datasets.s1simulator import COVER_NAMES, AreaSimulator, Flood
from eowatch.models.flood import (
    EXCLUDED,
    FLOODED,
    REFERENCE_WATER,
    STATE_WIDTH,
    WARMING_UP,
    WARMUP,
    AreaEvents,
    EventRule,
    FloodState,
    step,
)

CELL_KM2 = 0.04 * 0.04


def play(sim: AreaSimulator, days: float):
    state, cells = FloodState.empty(sim.cells), np.arange(sim.cells)
    for acquisition in sim.season(days=days):
        status, p = step(state, cells, acquisition.orbit, acquisition.vv_db, acquisition.vh_db)
        yield acquisition, status, p


def test_no_cell_alarms_before_its_orbit_is_warmed_up():
    sim = AreaSimulator(floods=(Flood(10, 30, 12),), seed=3)  # a flood from the start
    seen: dict[int, int] = {}
    for acquisition, status, _ in play(sim, 60):
        seen[acquisition.orbit] = seen.get(acquisition.orbit, 0) + 1
        if seen[acquisition.orbit] <= WARMUP:
            assert (status == WARMING_UP).all()


def test_a_flood_is_found_once_its_cells_are_known_and_only_where_water_can_show():
    sim = AreaSimulator(floods=(Flood(365 + 180, 24, 12),), seed=1)
    tp = fp = fn = 0
    for acquisition, status, _ in play(sim, 2 * 365):
        if acquisition.day < 365:
            continue
        if acquisition.day > 400:  # learnt: water and sand are reference water, town excluded
            for cover, expected in (("water", REFERENCE_WATER), ("sand", REFERENCE_WATER),
                                    ("urban", EXCLUDED)):
                share = np.mean(status[sim.cover == COVER_NAMES.index(cover)] == expected)
                assert share > 0.9, (cover, share)
        predicted, truth = status == FLOODED, acquisition.flooded
        tp += int((predicted & truth).sum())
        fp += int((predicted & ~truth).sum())
        fn += int((~predicted & truth & ~np.isin(status, (REFERENCE_WATER, EXCLUDED))).sum())
    assert tp > 1000
    assert tp / (tp + fp + fn) >= 0.8   # critical success index, GFM's target is 0.7


def test_a_scene_darkened_everywhere_opens_no_flood(monkeypatch):
    """Wet snow darkens forest and town too: it opens no flood event."""
    import eowatch.models.datasets.s1simulator as s1

    monkeypatch.setattr(s1, "SNOW_DAYS", 1.0)  # every winter date
    sim, events = AreaSimulator(seed=2), AreaEvents()
    opened, most = [], 0.0
    for acquisition, status, p in play(sim, 2 * 365):
        most = max(most, float(np.mean(status == FLOODED)))
        opened += [m for m in events.observe("a", acquisition.day * 86400, status, p, CELL_KM2)
                   if m["kind"] == "flood.opened"]
    assert opened == [] and most < 0.005   # a few cells of 4,800 at most, never an event


def test_events_open_once_update_and_close_after_the_set_observations():
    events = AreaEvents(EventRule(min_km2=0.05, close_after=2))
    dry = np.full(1000, 1)          # DRY
    wet = dry.copy()
    wet[:100] = FLOODED             # 0.16 km²
    wider = dry.copy()
    wider[:200] = FLOODED
    p = np.full(1000, 0.9)
    days = [(0, dry), (1, wet), (2, wet), (3, wider), (4, dry), (5, dry), (6, dry)]
    kinds = [m["kind"] for day, status in days
             for m in events.observe("river", day * 86400.0, status, p, CELL_KM2)]
    assert kinds == ["flood.opened", "flood.updated", "flood.closed"]
    again = AreaEvents().observe("river", 86400.0, wet, p, CELL_KM2)[0]
    assert again["event_id"] == AreaEvents().observe("river", 86400.0, wet, p, CELL_KM2)[0][
        "event_id"]  # a replay opens the same event
    assert again["flooded_km2"] == pytest.approx(0.16)


def test_a_darkened_scene_is_judged_per_group_and_the_state_is_one_packed_array():
    """Two areas in one step: wet snow darkens one (its bright cells drop too), a flood the
    other (its bright cells stay): only the flooded one's cells turn flooded."""
    n = 40
    state = FloodState.empty(2 * n)
    assert state.packed.shape == (2 * n, STATE_WIDTH)
    cells, groups = np.arange(2 * n), np.repeat([0, 1], n)
    bright = np.tile(np.arange(n) < 15, 2)       # 15 town cells in each area
    normal_vv = np.where(bright, -4.0, -11.0)
    rng = np.random.default_rng(0)
    for _ in range(WARMUP + 2):
        vv = normal_vv + rng.normal(0, 0.3, 2 * n)
        step(state, cells, 37, vv, vv - 6, groups)
    vv = normal_vv.copy()
    vv[~bright] = -23.0                           # the fields of both areas go water-dark
    vv[:n][bright[:n]] -= 5.0                     # ...and in area 0 the town darkens as well
    status, _ = step(state, cells, 37, vv, vv - 6, groups)
    assert not (status[:n] == FLOODED).any()      # wet snow: no flood
    assert (status[n:][~bright[n:]] == FLOODED).all()
    assert (state.packed[n:, -1][~bright[n:]] == 1).all()   # written through the views
    with pytest.raises(ValueError, match="float64"):
        FloodState.of(np.zeros((3, STATE_WIDTH), np.float32))
