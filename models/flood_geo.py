"""Weather-satellite evidence for the flood model: a change model per coarse cell (2 km by
default) of an area, from the geostationary imagers (GOES ABI, Meteosat FCI and SEVIRI) and
DSCOVR EPIC.

What a feed publishes per coarse cell and scene: the mean reflectance of the cell's clear pixels
in red, NIR and SWIR, a water index of those means, the clear share of its pixels and the solar
zenith angle at its centre, and which sensor saw it. The water index is the sensor's best:
``(red − SWIR 1.6 µm) / (red + SWIR)`` where there is a 1.6 µm band (ABI, FCI, SEVIRI: Xu's
MNDWI with red for the green these imagers lack), McFeeters' ``(green − NIR) / (green + NIR)``
for EPIC, which has none. Open water sits near ``WATER_INDEX`` of its sensor; land well below.

As the radar model does per orbit, each coarse cell keeps a *normal* model per sensor (each sees
the cell at its own angle, through its own bands): an exponentially weighted mean and variance of
the water index, a running mean over the first ``WARMUP`` usable scenes, then forgetting with
weight ``ALPHA`` (a memory of about 20 clear scenes: two or three sunny days). A scene is usable
for a cell when at least ``MIN_CLEAR`` of its pixels are clear and the sun is at most
``MAX_SOLAR_ZENITH`` from the zenith (lower, reflectances are too dark and too shaded to read).

A cell's flooded share is the linear unmixing of its index between its normal mean μ and open
water: ``f = (x − μ) / (W − μ)``, clipped to [0, 1]. A cell turns flooded when the index rose
at least ``Z_OPEN`` standard deviations (σ at least ``SIGMA_FLOOR``) with f ≥ ``F_OPEN`` on
every usable scene over at least ``PERSIST_HOURS`` (cloud edges and thin cirrus the cloud mask
missed raise a red/SWIR index too, for an hour or a few: one scene is not enough; the test is in
hours, not scenes, so that it means the same at any scan cadence), and stays flooded while the
rise is at least ``Z_STAY`` σ.

How a 2 km observation informs a 40 m cell: f is the probability that a 40 m cell drawn at
random under the coarse cell is flooded. While the coarse cell is flooded and its last usable
scene is at most ``PRIOR_HOURS`` old, the radar test of every 40 m cell under it takes
``max(0.5, f)`` as its prior instead of the uninformed 0.5 (models/flood.py): the coarse evidence
tips cells the radar finds marginal, and never overrules what the radar sees plainly. The extent
reported stays the radar's (or the optical one's), at 40 m.

Constants and their sources are in docs/flood.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import flood

# what a feed publishes per coarse cell (reflectance factors, the water index, the clear share
# of the cell's pixels, the solar zenith angle in degrees, and flood_geo.SENSORS' code)
GEO_BANDS = ("red", "nir", "swir", "water_index", "clear", "solar_zenith", "sensor")
SENSORS = ("simulated", "goes-east", "goes-west", "mtg-fci", "msg-seviri", "dscovr-epic")
# open water's water index per sensor: red/SWIR index (ABI, FCI, SEVIRI: water reflects
# < 0.02 at 1.6 µm and 0.03-0.1 in red, turbid flood water more) or green/NIR index (EPIC)
WATER_INDEX = {"simulated": 0.6, "goes-east": 0.6, "goes-west": 0.6, "mtg-fci": 0.6,
               "msg-seviri": 0.6, "dscovr-epic": 0.4}

WARMUP = 20                # usable scenes per sensor before a cell may be flooded
ALPHA = 0.05               # forgetting after warm-up
SIGMA_FLOOR = 0.03         # index units: radiometric noise plus the day's changing sun
MIN_CLEAR = 0.6            # clear share of a cell's pixels a usable scene needs
MAX_SOLAR_ZENITH = 80.0    # degrees; the feeds publish nothing beyond 85 (night)
Z_OPEN, Z_STAY = 4.0, 2.0  # rise of the index in σ that floods a cell, that keeps it flooded
F_OPEN = 0.1               # flooded share that floods a cell
PERSIST_HOURS = 3.0        # how long a rise must last on every usable scene to flood a cell
PRIOR_HOURS = 72.0         # how long a flooded coarse cell informs the radar under it


# a coarse cell's state, in the same packed float64 row as a 40 m cell's (flood.STATE_WIDTH):
# per sensor slot its code, count, mean and variance of the water index; then the flooded share
# of the last usable scene, its time (unix seconds), the time of the first of the usable scenes
# in a row above the opening rule (NaN: none); and, at the 40 m layout's place, whether the cell
# is flooded
SLOTS = 4
FRACTION, SEEN_AT, RISING_SINCE = 4 * SLOTS, 4 * SLOTS + 1, 4 * SLOTS + 2
FLOODED = 7 * flood.ORBIT_SLOTS
assert RISING_SINCE < FLOODED < flood.STATE_WIDTH


@dataclass
class GeoState:
    """Views into the packed rows of coarse cells."""

    packed: np.ndarray
    sensor: np.ndarray     # [n, SLOTS] sensor code + 1 of each slot, 0 free
    count: np.ndarray
    mean: np.ndarray
    var: np.ndarray

    @classmethod
    def of(cls, packed: np.ndarray) -> GeoState:
        k = SLOTS
        return cls(packed, packed[:, 0:k], packed[:, k:2 * k], packed[:, 2 * k:3 * k],
                   packed[:, 3 * k:4 * k])

    @staticmethod
    def initial(n: int) -> np.ndarray:
        packed = np.zeros((n, flood.STATE_WIDTH))
        packed[:, RISING_SINCE] = np.nan
        return packed


def sensor_code(name: str) -> int:
    return SENSORS.index(name)


def _slots(state: GeoState, cells: np.ndarray, code: np.ndarray) -> np.ndarray:
    """The slot of each cell's sensor, taking a free (or the least used) slot if new."""
    slot, new = flood.claim_slots(state.sensor, state.count, cells,
                                  code.astype(np.float64) + 1, 0.0)
    if new.any():
        state.mean[cells[new], slot[new]] = 0
        state.var[cells[new], slot[new]] = 0
    return slot


def step(packed: np.ndarray, cells: np.ndarray, sensor: np.ndarray, index: np.ndarray,
         clear: np.ndarray, solar_zenith: np.ndarray, observed_at: np.ndarray
         ) -> tuple[np.ndarray, np.ndarray]:
    """Apply one scene to each of ``cells`` (rows of ``packed``, distinct); returns (status,
    flooded share). Unusable scenes (cloud, low sun) change nothing and give UNSEEN."""
    state = GeoState.of(packed)
    cells = np.asarray(cells)
    code = np.asarray(sensor).astype(np.int64)
    usable = (np.isfinite(index) & (clear >= MIN_CLEAR) & (solar_zenith <= MAX_SOLAR_ZENITH)
              & (code >= 0) & (code < len(SENSORS)))
    status = np.full(len(cells), flood.UNSEEN)
    share = np.zeros(len(cells))
    if not usable.any():
        return status, share
    rows, x, code = cells[usable], index[usable].astype(np.float64), code[usable]
    at = np.asarray(observed_at, np.float64)[usable]
    slot = _slots(state, rows, code)
    count, mean = state.count[rows, slot], state.mean[rows, slot]
    sigma = np.maximum(np.sqrt(state.var[rows, slot]), SIGMA_FLOOR)
    water = np.array([WATER_INDEX[s] for s in SENSORS])[code]
    rise = (x - mean) / sigma
    fraction = np.clip((x - mean) / np.maximum(water - mean, 1e-6), 0.0, 1.0)
    ready = count >= WARMUP
    was = packed[rows, FLOODED] > 0
    rising = ready & (rise >= Z_OPEN) & (fraction >= F_OPEN)
    since = np.where(rising, np.fmin(packed[rows, RISING_SINCE], at), np.nan)
    flooded = ready & np.where(was, rise >= Z_STAY, at - since >= PERSIST_HOURS * 3600)
    learn = ~flooded & ~rising              # a suspect scene teaches nothing either
    n = count + 1
    weight = np.where(n <= WARMUP, 1.0 / n, ALPHA)
    delta = x - mean
    lr, ls = rows[learn], slot[learn]
    state.mean[lr, ls] += weight[learn] * delta[learn]
    state.var[lr, ls] = (1 - weight[learn]) * (state.var[lr, ls]
                                               + weight[learn] * delta[learn] ** 2)
    state.count[lr, ls] = n[learn]
    packed[rows, RISING_SINCE] = since
    packed[rows, FLOODED] = flooded
    packed[rows, FRACTION] = np.where(flooded, fraction, 0.0)
    packed[rows, SEEN_AT] = at
    status[usable] = np.where(flooded, flood.FLOODED, np.where(ready, flood.DRY,
                                                               flood.WARMING_UP))
    share[usable] = np.where(flooded, fraction, 0.0)
    return status, share


PRIOR_COLUMNS = [FLOODED, SEEN_AT, FRACTION]   # what the prior reads of a coarse cell


def prior(columns: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The flood prior a 40 m cell takes from its coarse cell at time ``at`` (unix seconds):
    ``columns`` [n, 3] are the coarse cell's PRIOR_COLUMNS (NaN rows: no coarse cell)."""
    flooded, seen_at, fraction = columns.T
    recent = (flooded > 0) & (np.abs(at - seen_at) <= PRIOR_HOURS * 3600)  # NaN: False
    return np.minimum(np.where(recent, np.maximum(flood.PRIOR, fraction), flood.PRIOR), 0.95)
