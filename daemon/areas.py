"""Areas watched for floods: the flood change model (models/flood.py) as the state model of
cells, and the processor that turns each area's cells into flood events.

Cells are stepped by the machinery every state model shares (processing.py: dense state,
checkpoints with offsets, shards, dead letters); what is particular to them: no seasons (the
normal backscatter is learned on and on), the darkened-scene rule judged per area and
acquisition, and after each acquisition one verdict per area. Each area's event state (open or
not, since when, ...) is a row of a second state table under ``<model key>/areas``, in the
area's shard: it is checkpointed in the same transaction as the cells and the source offsets,
so a replay after a crash reaches the same events, with the same ids, never a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
import torch

from eowatch.cells import COARSE, coarse_place, extent, parent_area, parse_cell_ids
from eowatch.contract.messages import SCHEMA_VERSION, Decision, ObservationChunk
from eowatch.models import flood, flood_geo

from .bus.base import Record
from .metrics import Metrics
from .observation_log import Series
from .outcomes import BatchOutput
from .processing import Processor
from .registry import TargetRegistry
from .rows import Rows
from .state import StateTable
from .state_model import Decided

log = logging.getLogger(__name__)
STATUS, P_FLOOD = 0, 1  # the flood model's output columns
PLACE_WIDTH = 5         # AreaProcessor.cell_place's columns
# what the processor reads: a radar observation fills the first four columns, an optical one
# the next two, a weather-satellite one (of a coarse cell) the last seven, the others NaN
# (feeds publish one set: flood.BANDS, flood.OPTICAL_BANDS or flood_geo.GEO_BANDS)
FEED_BANDS = (flood.BANDS, flood.OPTICAL_BANDS, flood_geo.GEO_BANDS)
CELL_BANDS = tuple(b for bands in FEED_BANDS for b in bands)
RADAR = [CELL_BANDS.index(b) for b in ("VV", "VH", "orbit")]   # incidence may be unknown
OPTICAL = [CELL_BANDS.index(b) for b in flood.OPTICAL_BANDS]
GEO = [CELL_BANDS.index(b) for b in ("clear", "solar_zenith", "sensor")]  # index: NaN if cloudy
VV, VH, ORBIT, MNDWI = (CELL_BANDS.index(b) for b in ("VV", "VH", "orbit", "MNDWI"))
INDEX, CLEAR, ZENITH, SENSOR = (CELL_BANDS.index(b) for b in
                                ("water_index", "clear", "solar_zenith", "sensor"))


def is_radar(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values[:, RADAR]).all(axis=1)


def is_geo(values: np.ndarray) -> np.ndarray:
    return np.isfinite(values[:, GEO]).all(axis=1) & ~is_radar(values)


def evidence_of(values: np.ndarray) -> str:
    """The kind of evidence of an observation (one row)."""
    row = values[None]
    return (flood.RADAR if is_radar(row)[0] else flood.GEOSTATIONARY if is_geo(row)[0]
            else flood.OPTICAL)


def unify(chunk: ObservationChunk) -> ObservationChunk:
    """A radar, optical or weather-satellite chunk with its values in CELL_BANDS columns
    (others NaN); any other chunk as it is (the band check refuses it)."""
    for bands in FEED_BANDS:
        if chunk.band_names == bands:
            values = np.full((len(chunk.values), len(CELL_BANDS)), np.nan, np.float32)
            values[:, [CELL_BANDS.index(b) for b in bands]] = chunk.values
            return replace(chunk, band_names=CELL_BANDS, values=values)
    return chunk


def step_cells(state: flood.FloodState, rows: np.ndarray, values: np.ndarray,
               groups: np.ndarray, times: np.ndarray,
               prior: float | np.ndarray = flood.PRIOR) -> tuple[np.ndarray, np.ndarray]:
    """Step each cell (a row of ``state``) by its observation: radar, optical or (coarse
    cells) weather satellite. ``prior``: the radar's flood prior per cell."""
    status, p = np.empty(len(rows), np.int64), np.empty(len(rows))
    radar, geo = is_radar(values), is_geo(values)
    optical = ~radar & ~geo
    if radar.any():
        v = values[radar].astype(np.float64)
        status[radar], p[radar] = flood.step(
            state, rows[radar], v[:, ORBIT], v[:, VV], v[:, VH], groups[radar],
            np.broadcast_to(np.asarray(prior, np.float64), rows.shape)[radar])
    if optical.any():
        status[optical], p[optical] = flood.step_optical(
            state, rows[optical], values[optical, MNDWI].astype(np.float64))
    if geo.any():
        v = values[geo].astype(np.float64)
        status[geo], p[geo] = flood_geo.step(state.packed, rows[geo], v[:, SENSOR], v[:, INDEX],
                                             v[:, CLEAR], v[:, ZENITH], times[geo])
    return status, p


class FloodModel:
    """The per-cell flood change model behind the state-model protocol. Its state is float64
    on the CPU whatever the daemon's device: numpy steps it in place, through views."""

    targets = "cells"
    key = version = flood.VERSION
    band_names: tuple[str, ...] = CELL_BANDS
    state_shape: tuple[int, ...] = (flood.STATE_WIDTH,)
    output_names: tuple[str, ...] = ("status", "p_flood")

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.from_numpy(flood.FloodState.initial(n)).to(device, dtype)

    def step(self, state: torch.Tensor, values: torch.Tensor, days: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All rows as one group (AreaProcessor steps per area and acquisition instead)."""
        packed = state.cpu().numpy().astype(np.float64)
        status, p = step_cells(flood.FloodState.of(packed), np.arange(len(packed)),
                               values.cpu().numpy(), np.zeros(len(packed), np.int64),
                               np.zeros(len(packed)))
        outputs = torch.from_numpy(np.column_stack([status, p]))
        return torch.from_numpy(packed), outputs, torch.zeros(len(packed))

    def fires(self, scores: np.ndarray) -> np.ndarray:
        return np.zeros(len(scores), bool)

    def decide(self, decided: Decided) -> list[Decision]:
        return []


class _AreaEvents:
    """The layout of the area table's rows: one area's event state (models/flood.py)."""

    targets = "areas"
    state_shape = (flood.EVENT_WIDTH,)
    output_names = ("flooded_km2",)

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros((n, flood.EVENT_WIDTH), device=device, dtype=dtype)


def alert_id(event_id: str, kind: str, observed_at: str) -> str:
    return hashlib.sha256(f"{event_id}|{kind}|{observed_at}".encode()).hexdigest()[:32]


class AreaProcessor(Processor):
    """Steps the cells of areas and turns each area's observation into flood events.

    With a log, each cell's observations and its status and flood probability after each are
    logged per calendar year (cells have no seasons), for their evidence. A late observation
    is not inserted at its date: the flood model's verdicts are per acquisition and area, and
    were published."""

    reorders_late = False

    def __init__(self, registry: TargetRegistry, metrics: Metrics, min_valid_fraction: float,
                 read_area: Callable[[str], tuple[dict[str, Any] | None, int]],
                 load_states: Callable[[str, list[int]], list[tuple[str, int, bytes, str | None]]]
                 | None = None, budget_bytes: int | None = None,
                 rule: flood.EventRule | None = None,
                 read_log: Callable[[str, Sequence[str]], dict[tuple[str, int], Series]]
                 | None = None) -> None:
        super().__init__(FloodModel(), registry, metrics, min_valid_fraction, "01-01",
                         "cpu", torch.float64, load_states, budget_bytes, read_log=read_log)
        self.areas = StateTable(_AreaEvents(), "cpu", torch.float64)  # type: ignore[arg-type]
        self.areas_key = f"{self.model.key}/areas"
        self.read_area, self.rule = read_area, rule or flood.EventRule()
        self.areas_known: dict[str, tuple[dict[str, Any], int]] = {}
        # per row of the cell table: its area (a code into area_names), grid row and column,
        # whether it is a coarse cell, and (40 m cells) the flat index of the coarse cell over
        # it (-1: none), parsed from the cell id once in the row's life
        self.area_names: list[str] = []
        self.area_codes: dict[str, int] = {}
        self.cell_place = np.full((0, PLACE_WIDTH), -1, np.int64)

    def places(self, rows: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """[n, PLACE_WIDTH] area code, grid row and column, coarse or not, and the coarse cell
        over it of the cells at these table rows."""
        if len(self.cell_place) < self.table.capacity:
            grown = np.full((self.table.capacity, PLACE_WIDTH), -1, np.int64)
            grown[:len(self.cell_place)] = self.cell_place
            self.cell_place = grown
        unknown = self.cell_place[rows, 0] < 0
        if unknown.any():
            grids, grid_rows, grid_cols = parse_cell_ids(ids[unknown])
            areas = np.array([parent_area(g) for g in grids.tolist()], dtype=object)
            for area in dict.fromkeys(areas.tolist()):
                if area not in self.area_codes:
                    self.area_codes[area] = len(self.area_names)
                    self.area_names.append(area)
            codes = np.array([self.area_codes[a] for a in areas.tolist()], np.int64)
            coarse = (grids != areas).astype(np.int64)
            over = np.full(len(codes), -1, np.int64)
            for area in np.unique(areas[coarse == 0]).tolist():
                grid, _ = self.area_info(area)
                if grid is None or "coarse" not in grid:
                    continue
                mine = (areas == area) & (coarse == 0)
                r, c = coarse_place(grid, grid["coarse"], grid_rows[mine], grid_cols[mine])
                over[mine] = r * grid["coarse"]["cols"] + c
            self.cell_place[rows[unknown]] = np.column_stack(
                [codes, grid_rows, grid_cols, coarse, over])
        return self.cell_place[rows]

    def priors(self, place: np.ndarray, times: np.ndarray) -> np.ndarray:
        """The radar's flood prior of 40 m cells (their ``places``), from the coarse cells
        over them (models/flood_geo.py)."""
        prior = np.full(len(place), flood.PRIOR)
        has = place[:, 4] >= 0
        if not has.any():
            return prior
        # one key per (area, coarse cell): a 1-D unique is far cheaper than a row-wise one
        keys, inverse = np.unique((place[has, 0] << 32) | place[has, 4], return_inverse=True)
        ids = []
        for key in keys.tolist():
            area, flat = self.area_names[key >> 32], key & 0xFFFFFFFF
            cols = self.areas_known[area][0]["coarse"]["cols"]  # type: ignore[index]
            ids.append(f"{area}{COARSE}/{flat // cols}-{flat % cols}")
        found = self.table.lookup(np.array(ids, dtype=object))
        if not (found >= 0).any():
            return prior          # no coarse cell observed yet: the uninformed prior
        columns = np.full((len(keys), len(flood_geo.PRIOR_COLUMNS)), np.nan)
        columns[found >= 0] = self.table.state.numpy()[found[found >= 0]][
            :, flood_geo.PRIOR_COLUMNS]
        prior[has] = flood_geo.prior(columns[inverse.ravel()], times[has])
        return prior

    def tables(self) -> dict[str, StateTable]:
        return {self.model.key: self.table, self.areas_key: self.areas}

    def report(self) -> None:
        """Cells decide nothing; their areas report as they are observed."""

    def restore(self, table: StateTable, key: str, shards: list[int]) -> None:
        super().restore(table, key, shards)
        if table is self.table:  # the areas' event state travels with their cells
            super().restore(self.areas, self.areas_key, shards)
            for area in self.areas.ids[self.areas.live].tolist():
                self._report(area, self.areas.state[self.areas.lookup(
                    np.array([area], dtype=object))[0]].numpy())

    def drop_shards(self, shards: Iterable[int]) -> None:
        shards = [s for s in shards if s in self.loaded]
        rows = np.flatnonzero(np.isin(self.areas.shard, shards))
        for area in self.areas.ids[rows].tolist():
            self.metrics.flood_open.remove(area)
            self.metrics.flooded_km2.remove(area)
        self.areas.drop_shards(shards)
        freed = np.flatnonzero(np.isin(self.table.shard, shards))
        self.cell_place[freed[freed < len(self.cell_place)]] = -1  # the rows get other cells
        super().drop_shards(shards)

    def process(self, items: list[tuple[Record, ObservationChunk]], out: BatchOutput) -> None:
        super().process([(record, unify(chunk)) for record, chunk in items], out)

    def bad_values(self, values: np.ndarray) -> np.ndarray:
        """Rows with no whole radar, optical or weather-satellite observation."""
        return ~(is_radar(values) | np.isfinite(values[:, OPTICAL]).all(axis=1)
                 | is_geo(values))

    def seasons(self, chunk: Any, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cells have no seasons: their normal backscatter is learned on and on."""
        return np.zeros(len(positions), np.int64), np.zeros(len(positions), np.float32)

    @torch.inference_mode()
    def step(self, rows: np.ndarray, batch: Rows) -> None:
        """One vectorised step of every cell of the wave, in place in the packed state."""
        t = self.table
        started = time.perf_counter()
        state = flood.FloodState.of(t.state.numpy())
        groups, place = self.groups(rows, batch)
        prior = self.priors(place, batch.time) if is_radar(batch.values).any() else flood.PRIOR
        status, p = step_cells(state, rows, batch.values, groups, batch.time, prior)
        self.metrics.step_seconds.labels(self.model.targets).observe(
            time.perf_counter() - started)
        self.metrics.batch_parcels.labels(self.model.targets).observe(len(rows))
        t.outputs[rows, STATUS], t.outputs[rows, P_FLOOD] = status, p
        t.observations[rows] += 1
        t.last_time[rows] = batch.time
        t.acquisition[rows] = batch.acquisition
        t.dirty.update(rows.tolist())
        if self.log is not None:
            self.log.add(batch.target_ids, self.log_seasons(batch), batch.time, batch.values,
                         t.outputs[rows], p, 0)

    def log_seasons(self, batch: Rows) -> np.ndarray:
        """Cells are logged per calendar year of the acquisition."""
        return batch.time.astype("datetime64[s]").astype("datetime64[Y]").astype(np.int64) \
            + 1970

    def groups(self, rows: np.ndarray, batch: Rows) -> tuple[np.ndarray, np.ndarray]:
        """Per cell, a code of its (area, acquisition); and the cells' places."""
        place = self.places(rows, batch.target_ids)
        acquisitions, names = pd.factorize(batch.acquisition)
        return place[:, 0] * len(names) + acquisitions, place

    def conclude(self, rows: np.ndarray, batch: Rows, out: BatchOutput) -> None:
        """One verdict per area and acquisition: the area's event opens, updates, closes, is
        confirmed or withdrawn. An optical or weather-satellite acquisition that saw less than
        ``flood.MIN_COVER`` of the area clear may only open an event: the water it saw is news,
        the clouds say nothing of a flood's end or extent."""
        status = self.table.outputs[rows, STATUS].astype(np.int64)
        p = self.table.outputs[rows, P_FLOOD].astype(np.float64)
        groups, place = self.groups(rows, batch)
        order = np.argsort(groups, kind="stable")
        for members in np.split(order, np.flatnonzero(np.diff(groups[order])) + 1):
            first = members[0]
            area = self.area_names[place[first, 0]]
            grid, cells = self.area_info(area)
            if grid is None:
                continue
            evidence = evidence_of(batch.values[first])
            fine_km2 = (grid["size"] / 1000) ** 2
            if evidence == flood.GEOSTATIONARY:
                if "coarse" not in grid:
                    continue
                counts = np.asarray(grid["coarse"]["fine_cells"])
                cell_km2 = counts[place[members, 1], place[members, 2]] * fine_km2
                seen_km2 = cell_km2[status[members] != flood.UNSEEN].sum()
                share: np.ndarray | None = p[members]
            else:   # optical feeds publish the clear cells only
                cell_km2, share = np.full(len(members), fine_km2), None
                seen_km2 = len(members) * fine_km2 if evidence == flood.OPTICAL else np.inf
            is_flooded = status[members] == flood.FLOODED
            row = self.areas.add(np.array([area], dtype=object), batch.shards[[first]])[0]
            event = self.areas.state[row].numpy()  # a view: observe_area writes through it
            at = float(batch.time[first])
            if flood.already_seen(event, evidence, at):
                continue  # this acquisition already counted (a retried wave)
            if seen_km2 < flood.MIN_COVER * cells * fine_km2 and (
                    event[flood.OPEN] or not is_flooded.any()):
                continue  # clouds or night over most of the area: only water seen is news
            message = flood.observe_area(event, area, at, status[members], p[members],
                                         cell_km2, self.rule, evidence, share)
            self.areas.last_time[row] = max(self.areas.last_time[row], at)
            self.areas.observations[row] += 1
            self.areas.acquisition[row] = batch.acquisition[first]
            self.areas.dirty.add(int(row))
            flooded = members[is_flooded]
            if evidence != flood.GEOSTATIONARY or event[flood.PENDING]:
                # the flooded km² gauge: 40 m evidence, or weather satellites' until confirmed
                self.areas.outputs[row, 0] = (cell_km2 if share is None else
                                              cell_km2 * share)[is_flooded].sum()
            self._report(area, event)
            if message is None:
                continue
            extent_grid = grid["coarse"] if evidence == flood.GEOSTATIONARY else grid
            out.alerts.append({
                "schema_version": SCHEMA_VERSION,
                "alert_id": alert_id(message["event_id"], message["kind"],
                                     message["observed_at"]),
                **message, "acquisition_id": batch.acquisition[first],
                "shard": int(batch.shards[first]), "sources": [str(batch.feed[first])],
                "model_version": self.model.version,
                "extent": extent(extent_grid, place[flooded, 1], place[flooded, 2])})
            self.metrics.alerts.labels(message["kind"]).inc()

    def _report(self, area: str, event: np.ndarray) -> None:
        self.metrics.flood_open.labels(area).set(float(event[flood.OPEN]))
        row = self.areas.lookup(np.array([area], dtype=object))[0]
        self.metrics.flooded_km2.labels(area).set(float(self.areas.outputs[row, 0]))

    def area_info(self, area: str) -> tuple[dict[str, Any] | None, int]:
        """An area's grid definition and its number of cells, read from the store once."""
        if area not in self.areas_known:
            grid, cells = self.read_area(area)
            if grid is None:
                log.warning("area %s has cells but no grid: import it again", area)
                return None, 0
            self.areas_known[area] = (grid, cells)
        return self.areas_known[area]


def alert_row(alert: dict[str, Any]) -> dict[str, Any]:
    """An alert as the store keeps it: indexed columns and the message as JSON."""
    return {"alert_id": alert["alert_id"], "area_id": alert["area_id"], "kind": alert["kind"],
            "event_id": alert["event_id"],
            "observed_at": datetime.fromisoformat(alert["observed_at"]),
            "payload": json.dumps(alert)}
