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
from datetime import UTC, datetime
from typing import Any

import numpy as np

# what an observation of a cell carries: mean VV and VH backscatter in dB (averaged in linear
# power), the mean incidence angle in degrees, and the relative orbit of the acquisition
BANDS = ("VV", "VH", "incidence", "orbit")
# what a clear optical observation of a cell carries (Sentinel-2: reflectance means of the cell's
# clear pixels): McFeeters' NDWI (green - NIR) / (green + NIR) and Xu's MNDWI
# (green - SWIR 1.6 µm) / (green + SWIR), which tells water from built-up land better
OPTICAL_BANDS = ("NDWI", "MNDWI")
VERSION = "flood-2"        # the layout of the packed state below; a new layout, a new version

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
MNDWI_WATER = 0.0          # Xu (2006): open water has MNDWI > 0
MNDWI_WIDTH = 0.1          # logistic width of the optical flood probability around it
MIN_COVER = 0.5            # clear share of an area an optical or weather-satellite verdict
                           # needs, unless it opens an event

# status of a cell after an observation (unseen: a coarse cell a weather-satellite scene could
# not use, models/flood_geo.py)
WARMING_UP, DRY, FLOODED, REFERENCE_WATER, EXCLUDED, UNSEEN = range(6)
STATUS_NAMES = ("warming_up", "dry", "flooded", "reference_water", "excluded", "unseen")


# one cell's state, packed in one float64 vector (the consumer keeps it as a row of its
# state table and checkpoints it as is): per orbit slot its relative orbit, observation count,
# VV/VH mean and variance and previous VV; then whether the cell is flooded
STATE_WIDTH = ORBIT_SLOTS * 7 + 1


@dataclass
class FloodState:
    """The model's state for n cells, as views into one packed [n, STATE_WIDTH] array."""

    packed: np.ndarray     # [n, STATE_WIDTH] float64: what the views below look into
    orbit: np.ndarray      # [n, K] relative orbit of each slot, -1 free
    count: np.ndarray      # [n, K]
    mean: np.ndarray       # [n, K, 2] VV, VH dB
    var: np.ndarray        # [n, K, 2]
    last_vv: np.ndarray    # [n, K] previous VV dB of this orbit
    flooded: np.ndarray    # [n] 1.0 while flooded

    @classmethod
    def of(cls, packed: np.ndarray) -> FloodState:
        """Views into ``packed`` (writes through them change it)."""
        if packed.dtype != np.float64 or packed.ndim != 2 or packed.shape[1] != STATE_WIDTH:
            raise ValueError(f"flood state must be float64 [n, {STATE_WIDTH}], not "
                             f"{packed.dtype} {list(packed.shape)}")
        k, n = ORBIT_SLOTS, len(packed)
        return cls(packed, packed[:, 0:k], packed[:, k:2 * k],
                   packed[:, 2 * k:4 * k].reshape(n, k, 2),
                   packed[:, 4 * k:6 * k].reshape(n, k, 2), packed[:, 6 * k:7 * k],
                   packed[:, 7 * k])

    @staticmethod
    def initial(n: int) -> np.ndarray:
        """The packed state of n cells never observed."""
        packed = np.zeros((n, STATE_WIDTH))
        packed[:, 0:ORBIT_SLOTS] = -1
        packed[:, 6 * ORBIT_SLOTS:7 * ORBIT_SLOTS] = np.nan
        return packed

    @classmethod
    def empty(cls, n: int) -> FloodState:
        return cls.of(cls.initial(n))


def _log_normal_pdf(x: np.ndarray, mean: np.ndarray, sigma: np.ndarray | float
                    ) -> np.ndarray:
    return -0.5 * ((x - mean) / sigma) ** 2 - np.log(sigma)


def claim_slots(keys: np.ndarray, count: np.ndarray, cells: np.ndarray, wanted: np.ndarray,
                free_key: float) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the slot (a column of ``keys`` [n, K]) that holds ``wanted`` (an orbit, a
    sensor); a cell that has none takes a free slot (key ``free_key``) or else its least used
    one, whose key is set and count zeroed. Returns (slot, which cells took a new one): the
    caller resets the rest of a new slot's fields."""
    mine = keys[cells] == wanted[:, None]
    slot = np.argmax(mine, axis=1)
    new = ~mine.any(axis=1)
    if new.any():
        free = np.where(keys[cells[new]] == free_key, 0, count[cells[new]] + 1)
        slot[new] = np.argmin(free, axis=1)
        keys[cells[new], slot[new]] = wanted[new]
        count[cells[new], slot[new]] = 0
    return slot, new


def _slots(state: FloodState, cells: np.ndarray, orbit: np.ndarray) -> np.ndarray:
    """The slot of each cell's ``orbit``, taking a free (or the least used) slot if new."""
    slot, new = claim_slots(state.orbit, state.count, cells, orbit, -1.0)
    if new.any():
        state.mean[cells[new], slot[new]] = 0
        state.var[cells[new], slot[new]] = 0
        state.last_vv[cells[new], slot[new]] = np.nan
    return slot


def _darkened(vv_db: np.ndarray, mean_vv: np.ndarray, bright: np.ndarray,
              groups: np.ndarray) -> np.ndarray:
    """Per cell: whether its group (an area's cells in one acquisition) is a darkened scene."""
    darkened = np.zeros(len(vv_db), bool)
    for group in np.unique(groups[bright]):
        members = bright & (groups == group)
        if members.sum() >= SCENE_MIN_CELLS and \
                np.median(vv_db[members] - mean_vv[members]) <= -SCENE_DROP_DB:
            darkened |= groups == group
    return darkened


def _status(ready: np.ndarray, reference: np.ndarray, bright: np.ndarray,
            flooded: np.ndarray) -> np.ndarray:
    status = np.full(len(ready), DRY)
    status[~ready] = WARMING_UP
    status[reference] = REFERENCE_WATER
    status[bright] = EXCLUDED
    status[flooded] = FLOODED
    return status


def step(state: FloodState, cells: np.ndarray, orbit: int | np.ndarray, vv_db: np.ndarray,
         vh_db: np.ndarray, groups: np.ndarray | None = None,
         prior: float | np.ndarray = PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """Apply one observation to each of ``cells`` (distinct); returns (status, flood
    probability). ``orbit``: the relative orbit, one for all or one per cell; ``groups``: which
    cells judge a darkened scene together (an area's cells in one acquisition; default all);
    ``prior``: the prior probability of flood, one or per cell (weather-satellite evidence
    raises it: models/flood_geo.py)."""
    cells = np.asarray(cells)
    orbit = np.broadcast_to(np.asarray(orbit, np.float64), cells.shape)
    groups = np.zeros(len(cells), np.int64) if groups is None else np.asarray(groups)
    slot = _slots(state, cells, orbit)
    count = state.count[cells, slot]
    mean = state.mean[cells, slot]                      # [m, 2]
    sigma = np.maximum(np.sqrt(state.var[cells, slot]), SIGMA_FLOOR)
    x = np.column_stack([vv_db, vh_db]).astype(np.float64)
    water = _log_normal_pdf(x, np.array([WATER_VV_DB, WATER_VH_DB]), WATER_SIGMA_DB).sum(1)
    normal = _log_normal_pdf(x, mean, sigma).sum(1)
    prior = np.asarray(prior, np.float64)
    log_odds = np.log(prior / (1 - prior)) + water - normal
    p = 1.0 / (1.0 + np.exp(-np.clip(log_odds, -50, 50)))
    ready = count >= WARMUP
    reference = ready & (mean[:, 0] <= WATER_LIKE_DB)
    bright = ready & (mean[:, 0] > BRIGHT_DB)
    previous = state.last_vv[cells, slot]
    was = state.flooded[cells] > 0
    base = np.where(was | np.isnan(previous), mean[:, 0], previous)
    dropped = (base - x[:, 0]) >= DROP_DB
    darkened = _darkened(x[:, 0], mean[:, 0], bright, groups)
    wet = x[:, 0] <= WATER_VV_DB + 2 * WATER_SIGMA_DB  # water-like in absolute terms too
    opens = (p >= P_OPEN) & dropped & wet & ~darkened
    flooded = ready & ~reference & ~bright & np.where(was, p >= P_STAY, opens)
    # the normal model learns from what is neither flood water nor a darkened scene
    learn = ~flooded & ~darkened
    rows, learn_slot = cells[learn], slot[learn]
    n = state.count[rows, learn_slot] + 1
    weight = np.where(n <= WARMUP, 1.0 / n, ALPHA)[:, None]
    delta = x[learn] - state.mean[rows, learn_slot]
    state.mean[rows, learn_slot] += weight * delta
    state.var[rows, learn_slot] = (1 - weight) * (state.var[rows, learn_slot]
                                                  + weight * delta ** 2)
    state.count[rows, learn_slot] = n
    state.last_vv[cells, slot] = x[:, 0]
    state.flooded[cells] = flooded
    return _status(ready, reference, bright, flooded), p


def step_optical(state: FloodState, cells: np.ndarray, mndwi: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Apply one clear optical observation to each of ``cells``: open water (MNDWI above
    ``MNDWI_WATER``) where the radar's normal backscatter says the cell is dry land is flood
    water; elsewhere the cell is not flooded. Cells the radar has not learned yet, reference
    water and excluded cells keep those statuses. Returns (status, flood probability); the
    normal backscatter models are left as they are."""
    cells = np.asarray(cells)
    counts = state.count[cells]
    known = np.argmax(counts, axis=1)                     # the orbit observed most
    ready = counts[np.arange(len(cells)), known] >= WARMUP
    mean_vv = state.mean[cells, known, 0]
    reference = ready & (mean_vv <= WATER_LIKE_DB)
    bright = ready & (mean_vv > BRIGHT_DB)
    p = 1.0 / (1.0 + np.exp(-np.clip((mndwi - MNDWI_WATER) / MNDWI_WIDTH, -50, 50)))
    flooded = ready & ~reference & ~bright & (p >= 0.5)
    state.flooded[cells] = flooded
    return _status(ready, reference, bright, flooded), p


@dataclass(frozen=True)
class EventRule:
    """When a flood event of an area opens, updates and closes (hysteresis)."""

    min_km2: float = 0.05        # flooded area that opens an event
    min_share: float = 0.01      # ... and share of the observable cells
    close_after: int = 2         # observations below the rule that close it
    update_change: float = 0.1   # relative change of flooded km² that makes an update


# an area's event state, packed in one float64 vector (a row of the consumer's area table):
# whether an event is open, the time of the observation that opened it (unix seconds), the
# flooded km² its last message reported, the observations below the rule since, whether it
# waits for confirmation (opened by weather satellites alone), which kinds of evidence saw it
# (bits of SOURCE_BITS), and the time of the last radar or optical verdict and of the last
# weather-satellite one (each kind arrives in its own order: S1 hours late, GOES in minutes)
EVENT_WIDTH = 8
OPEN, OPENED_AT, REPORTED_KM2, BELOW, PENDING, SEEN_BY, LAST_FINE, LAST_GEO = range(EVENT_WIDTH)
RADAR, OPTICAL, GEOSTATIONARY = "radar", "optical", "geostationary"
ALERT_KINDS = ("flood.opened", "flood.updated", "flood.confirmed", "flood.withdrawn",
               "flood.closed")
ENDED = ("flood.closed", "flood.withdrawn")   # the kinds that end an event
SOURCE_BITS = {RADAR: 1, OPTICAL: 2, GEOSTATIONARY: 4}


def iso_time(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="seconds")


def event_id(area_id: str, opened_at: float) -> str:
    """Deterministic: a replay opens the same event, never a second."""
    return hashlib.sha256(f"{area_id}|{iso_time(opened_at)}".encode()).hexdigest()[:32]


def already_seen(event: np.ndarray, evidence: str, observed_at: float) -> bool:
    """Whether the area's verdict of this kind of evidence at this time already counted (a
    retried wave, a replay)."""
    return bool(event[LAST_GEO if evidence == GEOSTATIONARY else LAST_FINE] >= observed_at)


def observe_area(event: np.ndarray, area_id: str, observed_at: float, status: np.ndarray,
                 p: np.ndarray, cell_km2: float | np.ndarray, rule: EventRule = EventRule(),
                 evidence: str = RADAR, share: np.ndarray | None = None
                 ) -> dict[str, Any] | None:
    """The message that one observation of an area's cells gives, if any; updates the area's
    packed ``event`` state in place. ``observed_at``: the acquisition time (unix seconds),
    which also makes the event id; ``cell_km2``: each cell's km² in the area; ``share``: the
    flooded share of each cell (coarse cells), 1 when None.

    Radar and optical verdicts open, update and close events (``flood.opened``,
    ``flood.updated``, ``flood.closed``). A weather-satellite verdict opens an event flagged
    ``confirmed: false``; the next radar or optical verdict confirms it (``flood.confirmed``)
    or withdraws it (``flood.withdrawn``); until then weather satellites update it, and withdraw
    it when they no longer see it. Once confirmed, the 40 m evidence alone reports the extent
    and closes it. A weather-satellite scene older than the last radar or optical verdict
    changes no event."""
    geo = evidence == GEOSTATIONARY
    if geo and observed_at < event[LAST_FINE]:
        event[LAST_GEO] = observed_at
        return None   # a 40 m verdict since says more than this scene of its past
    event[LAST_GEO if geo else LAST_FINE] = observed_at
    observable = np.isin(status, (DRY, FLOODED))
    flooded = status == FLOODED
    km2 = np.broadcast_to(np.asarray(cell_km2, np.float64), status.shape)
    flooded_km2 = float((km2 * (1.0 if share is None else share))[flooded].sum())
    observable_km2 = float(km2[observable].sum())
    above = flooded_km2 >= rule.min_km2 and flooded_km2 >= rule.min_share * observable_km2
    bit = SOURCE_BITS[evidence]

    def message(kind: str, opened_at: float) -> dict[str, Any]:
        seen_by = int(event[SEEN_BY]) | (bit if above else 0)
        return {"kind": kind, "event_id": event_id(area_id, opened_at), "area_id": area_id,
                "observed_at": iso_time(observed_at), "flooded_km2": round(flooded_km2, 4),
                "observable_km2": round(observable_km2, 4),
                "mean_likelihood": round(float(p[flooded].mean()) if flooded.any() else 0.0, 4),
                "evidence": evidence,
                "seen_by": [name for name, b in SOURCE_BITS.items() if seen_by & b],
                "confirmed": not event[PENDING]}

    if not event[OPEN]:
        if not above:
            return None
        event[[OPEN, OPENED_AT, REPORTED_KM2, BELOW, PENDING, SEEN_BY]] = (
            1.0, observed_at, flooded_km2, 0.0, float(geo), bit)
        return message("flood.opened", observed_at)
    opened_at = float(event[OPENED_AT])
    if event[PENDING] and not geo:
        if above:
            event[[PENDING, REPORTED_KM2, BELOW]] = (0.0, flooded_km2, 0.0)
            event[SEEN_BY] = int(event[SEEN_BY]) | bit
            return message("flood.confirmed", opened_at)
        if observed_at < opened_at:
            return None   # a pass older than what opened it says nothing of it
        found = message("flood.withdrawn", opened_at)
        event[[OPEN, OPENED_AT, REPORTED_KM2, BELOW, PENDING, SEEN_BY]] = 0.0
        return found
    if above:
        event[SEEN_BY] = int(event[SEEN_BY]) | bit
    if geo and not event[PENDING]:
        return None       # confirmed: the 40 m evidence reports and closes it
    if not above:
        event[BELOW] += 1
        if event[BELOW] < rule.close_after:
            return None
        # an event nothing at 40 m ever confirmed ends withdrawn, not closed
        found = message("flood.withdrawn" if event[PENDING] else "flood.closed", opened_at)
        event[[OPEN, OPENED_AT, REPORTED_KM2, BELOW, PENDING, SEEN_BY]] = 0.0
        return found
    event[BELOW] = 0
    if abs(flooded_km2 - event[REPORTED_KM2]) <= rule.update_change * event[REPORTED_KM2]:
        return None
    event[REPORTED_KM2] = flooded_km2
    return message("flood.updated", opened_at)


class AreaEvents:
    """Flood events of several areas, each area's state kept here (the consumer keeps them
    in its state table instead)."""

    def __init__(self, rule: EventRule = EventRule()) -> None:
        self.rule = rule
        self.events: dict[str, np.ndarray] = {}

    def observe(self, area_id: str, observed_at: float, status: np.ndarray, p: np.ndarray,
                cell_km2: float | np.ndarray, evidence: str = RADAR,
                share: np.ndarray | None = None) -> list[dict[str, Any]]:
        event = self.events.setdefault(area_id, np.zeros(EVENT_WIDTH))
        message = observe_area(event, area_id, observed_at, status, p, cell_km2, self.rule,
                               evidence, share)
        return [] if message is None else [message]
