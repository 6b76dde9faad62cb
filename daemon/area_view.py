"""What the API shows of an area: its cells' flood status as of the last checkpoint, the
flooded extent, and a PNG quick-look."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eowatch.cells import extent
from eowatch.models import flood

from .areas import P_FLOOD, STATUS, FloodModel
from .state import record_dtype
from .store.store import Store

UNOBSERVED = -1
# RGB of each status in the quick-look
PALETTE = {UNOBSERVED: (0.85, 0.85, 0.85), flood.WARMING_UP: (0.70, 0.70, 0.70),
           flood.DRY: (0.93, 0.89, 0.78), flood.FLOODED: (0.05, 0.45, 0.95),
           flood.REFERENCE_WATER: (0.05, 0.15, 0.45), flood.EXCLUDED: (0.35, 0.35, 0.35)}


@dataclass(frozen=True)
class AreaCells:
    """An area's cells and their last status (UNOBSERVED before their first observation)."""

    grid: dict[str, Any]
    rows: np.ndarray
    cols: np.ndarray
    status: np.ndarray
    p_flood: np.ndarray

    @classmethod
    def of(cls, store: Store, area_id: str, grid: dict[str, Any],
           coarse: bool = False) -> AreaCells:
        """The area's 40 m cells, or (``coarse``) its weather-satellite cells with ``grid``
        their grid definition."""
        _, rows, cols, data = store.area_states(FloodModel.key, area_id, coarse)
        status = np.full(len(rows), UNOBSERVED, np.int64)
        p = np.zeros(len(rows))
        have = np.array([d is not None for d in data], bool)
        if have.any():
            dtype = record_dtype(FloodModel.state_shape, len(FloodModel.output_names),
                                 torch.float64)
            records = np.frombuffer(b"".join(bytes(d) for d in data if d is not None), dtype)
            outputs = records["log_probs"]
            seen = records["observations"] > 0
            status[np.flatnonzero(have)[seen]] = outputs[seen, STATUS].astype(np.int64)
            p[have] = outputs[:, P_FLOOD]
        return cls(grid, np.array(rows, np.int64), np.array(cols, np.int64), status, p)

    def summary(self) -> dict[str, Any]:
        """Cells and km² by status."""
        km2 = (self.grid["size"] / 1000) ** 2
        names = {UNOBSERVED: "unobserved", **dict(enumerate(flood.STATUS_NAMES))}
        counts = {name: int((self.status == code).sum()) for code, name in names.items()}
        return {"cells": len(self.status), "cell_size_m": self.grid["size"],
                "by_status": {name: {"cells": n, "km2": round(n * km2, 4)}
                              for name, n in counts.items()}}

    def coarse_summary(self, fine_size: float) -> dict[str, Any]:
        """The weather satellites' view (coarse cells): cells by their last status, and the
        flooded km² of the area they estimate (each flooded cell's share × the area's km²
        under it, ``fine_size`` the side of the area's cells in metres)."""
        counts = np.asarray(self.grid["fine_cells"])[self.rows, self.cols]
        fine_km2 = (fine_size / 1000) ** 2
        wet = self.status == flood.FLOODED
        return {**self.summary(),
                "flooded_km2": round(float((self.p_flood * counts * fine_km2)[wet].sum()), 4)}

    def flooded_extent(self) -> dict[str, Any]:
        wet = self.status == flood.FLOODED
        return extent(self.grid, self.rows[wet], self.cols[wet])

    def quicklook(self, min_side: int = 400) -> bytes:
        """The cells coloured by status (PALETTE), north up, as a PNG."""
        from matplotlib.image import imsave

        image = np.ones((self.grid["rows"], self.grid["cols"], 3))  # outside the area: white
        for code, rgb in PALETTE.items():
            mine = self.status == code
            image[self.rows[mine], self.cols[mine]] = rgb
        scale = max(1, -(-min_side // max(image.shape[:2])))
        image = image.repeat(scale, axis=0).repeat(scale, axis=1)
        buffer = io.BytesIO()
        imsave(buffer, image, format="png")
        return buffer.getvalue()
