"""A per-cell flood change model, learned online from the Sentinel-1 stream itself.

For each cell and relative orbit (each orbit sees the ground at its own incidence angle) the
model keeps a *normal* backscatter model: an exponentially weighted mean and variance of VV and
VH in dB, a plain running mean over the first ``WARMUP`` observations, then forgetting with
weight ``ALPHA`` so that it follows the seasons (crops raise their backscatter by a few dB over a
summer). Observations classified as flooded do not update it.

Each new observation is tested against that normal model and against a model of open water,
as TU Wien's algorithm in Copernicus GFM does (Bauer-Marschallinger et al., Remote Sensing 2022:
pixel-wise Bayes between a "flood" and a "non-flood" distribution), with VV and VH taken as
independent:

    p(flood | x) = P·N(x; μ_w, σ_w) / (P·N(x; μ_w, σ_w) + (1 − P)·N(x; μ, σ))

with μ_w, σ_w the open-water backscatter below and μ, σ the cell's normal model (σ at least
``SIGMA_FLOOR``: the speckle of a 16-pixel cell alone is about 0.5 dB). A change term as in
LIST's algorithm (Chini et al., IEEE TGRS 2017: a drop against the previous image of the same
orbit) guards against slow drifts: a cell becomes flooded when p ≥ ``P_OPEN`` and VV dropped by at
least ``DROP_DB`` against that orbit's previous observation (or its normal mean, when the
previous one was already flooded) to within two standard deviations of open water (VV ≤ μ_w +
2σ_w): a field that only darkened, as fields do after the growing season, is not flooded. A
flooded cell stays flooded while p ≥ ``P_STAY``.

A scene that darkens everywhere is not a flood: wet snow or frozen ground darken forest and towns
as much as fields. When the cells that cannot flood (excluded, bright) of an observation dropped
by ``SCENE_DROP_DB`` or more against their normal model (median, at least ``SCENE_MIN_CELLS`` of
them), no cell turns flooded by it, and no normal model learns from it; cells already flooded
still follow ``P_STAY``.

Cells where water cannot be seen are never flooded, and are reported as such:
- *reference water*: the normal VV mean is water-like (≤ ``WATER_LIKE_DB``): permanent water,
  and dry sand or tarmac, which look the same to C-band all year;
- *excluded*: the normal VV mean is above ``BRIGHT_DB``: towns and dense forest, where flood
  water under buildings or canopy does not darken the signal.

Constants and their sources are listed in docs/flood.md.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

WATER_VV_DB, WATER_VH_DB = -22.0, -28.0   # open water, C-band VV/VH (GFM, Martinis et al. 2015)
WATER_SIGMA_DB = 2.0       # spread of calm-to-wind-roughened water
PRIOR = 0.5                # GFM's TU Wien algorithm: equal priors
P_OPEN, P_STAY = 0.8, 0.5  # a cell turns flooded at 0.8, stays flooded down to 0.5
DROP_DB = 3.0              # LIST's change test, in dB of VV against the same orbit
SIGMA_FLOOR = 0.8          # dB: speckle of a 40 m cell (ENL ≈ 70) plus field variability
WARMUP = 6                 # observations per orbit before a cell may be flooded
ALPHA = 0.2                # forgetting after warm-up: a memory of about 5 passes (60 days)
WATER_LIKE_DB = -18.0      # normal VV at or below: reference water
BRIGHT_DB = -6.5           # normal VV above: excluded (urban, dense forest)
ORBIT_SLOTS = 4            # relative orbits remembered per cell
SCENE_DROP_DB = 2.0        # median drop of the bright cells that marks a darkened scene
SCENE_MIN_CELLS = 10       # bright cells needed to judge the scene

# status of a cell after an observation
WARMING_UP, DRY, FLOODED, REFERENCE_WATER, EXCLUDED = range(5)
STATUS_NAMES = ("warming_up", "dry", "flooded", "reference_water", "excluded")


@dataclass
class FloodState:
    """The model's state for n cells, as arrays (the consumer keeps them per shard)."""

    orbit: np.ndarray      # [n, K] relative orbit of each slot, -1 free
    count: np.ndarray      # [n, K]
    mean: np.ndarray       # [n, K, 2] VV, VH dB
    var: np.ndarray        # [n, K, 2]
    last_vv: np.ndarray    # [n, K] previous VV dB of this orbit
    flooded: np.ndarray    # [n] bool

    @classmethod
    def empty(cls, n: int) -> FloodState:
        return cls(np.full((n, ORBIT_SLOTS), -1, np.int64),
                   np.zeros((n, ORBIT_SLOTS), np.int64),
                   np.zeros((n, ORBIT_SLOTS, 2)), np.zeros((n, ORBIT_SLOTS, 2)),
                   np.full((n, ORBIT_SLOTS), np.nan), np.zeros(n, bool))


def _log_normal_pdf(x: np.ndarray, mean: np.ndarray, sigma: np.ndarray | float
                    ) -> np.ndarray:
    return -0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma)


def _slots(state: FloodState, cells: np.ndarray, orbit: int) -> np.ndarray:
    """The slot of ``orbit`` for each cell, taking a free (or the least used) slot if new."""
    mine = state.orbit[cells] == orbit
    slot = np.argmax(mine, axis=1)
    new = ~mine.any(axis=1)
    if new.any():
        free = np.where(state.orbit[cells[new]] < 0, 0, state.count[cells[new]] + 1)
        slot[new] = np.argmin(free, axis=1)
        state.orbit[cells[new], slot[new]] = orbit
        state.count[cells[new], slot[new]] = 0
        state.last_vv[cells[new], slot[new]] = np.nan
    return slot


def step(state: FloodState, cells: np.ndarray, orbit: int, vv_db: np.ndarray,
         vh_db: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply one acquisition of one orbit to ``cells``; returns (status, flood probability)."""
    slot = _slots(state, cells, orbit)
    count = state.count[cells, slot]
    mean = state.mean[cells, slot]                      # [m, 2]
    sigma = np.maximum(np.sqrt(state.var[cells, slot]), SIGMA_FLOOR)
    x = np.column_stack([vv_db, vh_db]).astype(np.float64)
    water = _log_normal_pdf(x, np.array([WATER_VV_DB, WATER_VH_DB]), WATER_SIGMA_DB).sum(1)
    normal = _log_normal_pdf(x, mean, sigma).sum(1)
    log_odds = np.log(PRIOR / (1 - PRIOR)) + water - normal
    p = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -50, 50)))
    ready = count >= WARMUP
    reference = ready & (mean[:, 0] <= WATER_LIKE_DB)
    bright = ready & (mean[:, 0] > BRIGHT_DB)
    previous = state.last_vv[cells, slot]
    was = state.flooded[cells]
    base = np.where(was | np.isnan(previous), mean[:, 0], previous)
    dropped = (base - vv_db) >= DROP_DB
    darkened = (bright.sum() >= SCENE_MIN_CELLS
                and np.median(vv_db[bright] - mean[bright, 0]) <= -SCENE_DROP_DB)
    wet = vv_db <= WATER_VV_DB + 2 * WATER_SIGMA_DB  # water-like in absolute terms too
    opens = (p >= P_OPEN) & dropped & wet & (not darkened)
    flooded = ready & ~reference & ~bright & np.where(was, p >= P_STAY, opens)
    # the normal model learns from what is neither flood water nor a darkened scene
    learn = ~flooded & (not darkened)
    rows, learn_slot = cells[learn], slot[learn]
    n = state.count[rows, learn_slot] + 1
    weight = np.where(n <= WARMUP, 1.0 / n, ALPHA)[:, None]
    delta = x[learn] - state.mean[rows, learn_slot]
    state.mean[rows, learn_slot] += weight * delta
    state.var[rows, learn_slot] = (1 - weight) * (state.var[rows, learn_slot]
                                                  + weight * delta ** 2)
    state.count[rows, learn_slot] = n
    state.last_vv[cells, slot] = vv_db
    state.flooded[cells] = flooded
    status = np.full(len(cells), DRY)
    status[~ready] = WARMING_UP
    status[reference] = REFERENCE_WATER
    status[bright] = EXCLUDED
    status[flooded] = FLOODED
    return status, p


@dataclass(frozen=True)
class EventRule:
    """When a flood event of an area opens, updates and closes (hysteresis)."""

    min_km2: float = 0.05        # flooded area that opens an event
    min_share: float = 0.01      # ... and share of the observable cells
    close_after: int = 2         # observations below the rule that close it
    update_change: float = 0.1   # relative change of flooded km² that makes an update


@dataclass
class _Open:
    event_id: str
    flooded_km2: float
    below: int = 0


class AreaEvents:
    """Flood events per area from its cells' status after each observation."""

    def __init__(self, rule: EventRule = EventRule()) -> None:
        self.rule = rule
        self.open: dict[str, _Open] = {}

    def observe(self, area_id: str, observed_at: str, status: np.ndarray, p: np.ndarray,
                cell_km2: float) -> list[dict[str, object]]:
        """Messages (``flood.opened``, ``flood.updated``, ``flood.closed``) that one observation
        of the area's cells gives; ``observed_at``: the acquisition time (ISO 8601), which also
        makes the event id, so a replay opens the same event, never a second."""
        observable = np.isin(status, (DRY, FLOODED))
        flooded = status == FLOODED
        km2 = float(flooded.sum() * cell_km2)
        share = float(flooded.sum() / max(1, observable.sum()))
        above = km2 >= self.rule.min_km2 and share >= self.rule.min_share
        body = {"area_id": area_id, "observed_at": observed_at, "flooded_km2": round(km2, 4),
                "observable_km2": round(float(observable.sum() * cell_km2), 4),
                "mean_likelihood": round(float(p[flooded].mean()) if flooded.any() else 0.0, 4)}
        event = self.open.get(area_id)
        if event is None:
            if not above:
                return []
            event_id = hashlib.sha256(f"{area_id}|{observed_at}".encode()).hexdigest()[:32]
            self.open[area_id] = _Open(event_id, km2)
            return [{"kind": "flood.opened", "event_id": event_id, **body}]
        if not above:
            event.below += 1
            if event.below < self.rule.close_after:
                return []
            del self.open[area_id]
            return [{"kind": "flood.closed", "event_id": event.event_id, **body}]
        event.below = 0
        if abs(km2 - event.flooded_km2) <= self.rule.update_change * event.flooded_km2:
            return []
        event.flooded_km2 = km2
        return [{"kind": "flood.updated", "event_id": event.event_id, **body}]
