"""State models: what the consumer machinery runs on the targets of one kind.

The machinery (sharded dense state, checkpoints with offsets, rebalancing, paging, seasons,
dead letters: processing.py, consuming.py) knows a model only through ``StateModel``. The
ELECTS crop model (``CropModel``) is the first; a per-cell change model for flood areas plugs in
the same way, reading observations whose ``targets`` it names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np
import torch

from eowatch.contract.messages import Decision, decision_id
from eowatch.models.artifact import LoadedModel
from eowatch.models.calibration import calibrate


@dataclass(frozen=True)
class Decided:
    """Targets whose decision falls now, column by column (one entry per target)."""

    target_ids: list[str]
    shards: list[int]
    seasons: list[int]
    days: list[float]
    outputs: np.ndarray   # [n, outputs] the model's outputs after the target's last step
    scores: np.ndarray    # [n] the stopping score after it
    observations: list[int]
    times: list[float]    # unix seconds of the last step's acquisition
    acquisitions: list[str]
    feeds: list[str]
    forced: bool          # the season ended before the rule fired


class StateModel(Protocol):
    """A recurrent model run per target: a state per target, stepped by observations."""

    targets: str                    # the kind of target ids it reads (ObservationChunk.targets)
    key: str                        # its state rows in the store belong to it (artifact hash)
    version: str
    band_names: tuple[str, ...]     # what each observation carries, in order
    state_shape: tuple[int, ...]    # of one target's state
    output_names: tuple[str, ...]   # one per output column

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """States of ``n`` targets before their first observation (and at a season's start)."""

    def step(self, state: torch.Tensor, values: torch.Tensor, days: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One batched step: (new states, outputs [n, outputs], stopping score [n])."""

    def fires(self, scores: np.ndarray) -> np.ndarray:
        """Which targets decide now, from their stopping score."""

    def decide(self, decided: Decided) -> list[Decision]:
        """The events for targets that decide."""


class CropModel:
    """ELECTS: an LSTM whose outputs are class log-probabilities and whose stopping head says
    when to stop reading the season; a parcel decides when it passes the threshold."""

    targets = "parcels"

    def __init__(self, loaded: LoadedModel, stop_threshold: float | None = None) -> None:
        self.net, meta = loaded.model, loaded.metadata
        self.key, self.version = loaded.sha256, meta.version
        self.band_names, self.output_names = meta.band_names, meta.class_names
        self.state_shape = tuple(self.net.state_shape)
        self.threshold = stop_threshold or meta.stop_threshold
        self.temperature = meta.temperature   # decisions carry calibrated probabilities

    def initial_state(self, n: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        return torch.zeros((n, *self.state_shape), device=device, dtype=dtype)

    def step(self, state: torch.Tensor, values: torch.Tensor, days: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net.step(state, values, days)

    def fires(self, scores: np.ndarray) -> np.ndarray:
        return scores >= self.threshold

    def decide(self, decided: Decided) -> list[Decision]:
        names = self.output_names
        probabilities = calibrate(decided.outputs, self.temperature).round(6).tolist()
        classes = np.argmax(decided.outputs, axis=1).tolist()
        p_stop = decided.scores.astype(np.float64).round(6).tolist()
        return [Decision(
            decision_id=decision_id(parcel, decided.seasons[i], self.version), parcel_id=parcel,
            season=decided.seasons[i], feed=decided.feeds[i], model_version=self.version,
            crop=names[classes[i]], probabilities=dict(zip(names, probabilities[i], strict=True)),
            p_stop=p_stop[i], day_of_season=decided.days[i],
            acquired_at=datetime.fromtimestamp(decided.times[i], UTC),
            acquisition_id=decided.acquisitions[i], observations=decided.observations[i],
            forced=decided.forced, shard=decided.shards[i])
            for i, parcel in enumerate(decided.target_ids)]
