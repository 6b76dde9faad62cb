"""The consumer runs any state model: a second one, for cells of areas, beside the crop model."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import shapely
import torch

from eowatch.cells import CellGrid, cell_rows
from eowatch.contract.feeds import chunks_by_shard
from eowatch.contract.messages import Decision
from eowatch.daemon.bus.base import OutMessage
from eowatch.daemon.processing import Processor
from eowatch.daemon.registry import TargetRegistry
from eowatch.daemon.state_model import Decided
from eowatch.daemon.store.tables import DecisionRow

from .pipeline import drain, make_daemon


class CountingModel:
    """The smallest state model: counts each cell's observations and sums its first band."""

    targets = "cells"
    key = "counting-v1"
    version = "counting-v1"
    band_names = ("VV", "VH")
    state_shape = (2,)
    output_names = ("count", "sum")

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros((n, 2), device=device, dtype=dtype)

    def step(self, state, values, days):
        new = state + torch.stack([torch.ones_like(values[:, 0]), values[:, 0]], dim=1)
        return new, new.clone(), torch.zeros(len(state))

    def fires(self, scores: np.ndarray) -> np.ndarray:
        return np.zeros(len(scores), bool)

    def decide(self, decided: Decided) -> list[Decision]:
        return []


def test_cells_go_to_their_own_state_model_and_are_checkpointed_under_it(tmp_path, unique):
    daemon = make_daemon(tmp_path, "embedded", unique)
    try:
        grid = CellGrid.of("river", shapely.box(-1.8, 48.0, -1.7965, 48.0024), 40)
        daemon.store.upsert_areas([{"id": "river", "geometry": shapely.to_geojson(
            shapely.box(-1.8, 48.0, -1.7965, 48.0024))}])
        daemon.store.replace_cells("river", grid.definition(),
                                   cell_rows(grid, daemon.settings.shards))
        cells = Processor(CountingModel(), TargetRegistry(daemon.store.cell_columns),
                          daemon.metrics, 0.0, "01-01", load_states=daemon.store.load_states)
        daemon.consumer.processors["cells"] = cells  # before the first assignment
        ids, _, _ = grid.cells()
        shards = np.array([r["shard"] for r in cell_rows(grid, daemon.settings.shards)])
        for day, vv in ((1, -12.0), (13, -20.0)):
            chunks = chunks_by_shard("sentinel1", f"S1_{day}", datetime(2026, 5, day, tzinfo=UTC),
                                     ("VV", "VH"), ids, shards,
                                     np.tile([vv, vv - 6], (len(ids), 1)).astype(np.float32),
                                     np.ones(len(ids), np.float32), targets="cells")
            daemon.bus.publish(daemon.topics["observations"],
                               [OutMessage(c.key, c.encode(), c.shard) for c in chunks])
        drain(daemon)
        assert daemon.store.count(DecisionRow) == 150   # the crop model went on beside it
        assert daemon.store.dead_letter_counts() == {}
        table = cells.table
        rows = table.lookup(ids)
        assert (rows >= 0).all() and (table.observations[rows] == 2).all()
        assert np.allclose(table.outputs[rows], [[2.0, -32.0]])
        stored = daemon.store.get_state("counting-v1", ids[0])
        assert stored is not None   # checkpointed under its own model key
        assert daemon.store.get_state(daemon.model.sha256, ids[0]) is None
        gauge = daemon.metrics.registry.get_sample_value
        assert gauge("eowatch_targets_tracked", {"targets": "cells"}) == len(ids)
        assert gauge("eowatch_targets_tracked", {"targets": "parcels"}) == 150
    finally:
        daemon.shutdown()
