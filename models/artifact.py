"""Model artifacts: one file holding the weights and everything needed to use them.

The file is a torch archive of plain tensors, strings and numbers (loaded with
``weights_only=True``, so loading never executes code) with:
- ``format``/``format_version``: what this is;
- ``metadata``: feed, band names and order, class names, normalisation, time encoding, season
  start, α, architecture, stopping threshold, version, training data hash, metrics;
- ``state_dict``: the weights;
- ``sha256``: a digest of the weights and metadata, checked on load.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from eowatch.errors import EowatchError
from eowatch.seasons import SeasonStartError, check_season_start

from .network import Architecture, EarlyClassifier

FORMAT = "eowatch-early-classifier"
FORMAT_VERSION = 1


class ArtifactError(EowatchError, ValueError):
    """An artifact that cannot be used: corrupt, of another format, or not fit for the feed."""


@dataclass(frozen=True)
class ModelMetadata:
    """What a model was trained on and how to feed it."""

    version: str
    feed: str
    band_names: tuple[str, ...]
    class_names: tuple[str, ...]
    band_mean: tuple[float, ...]
    band_std: tuple[float, ...]
    architecture: dict[str, Any]
    alpha: float
    epsilon: float
    stop_threshold: float = 0.5
    time_encoding: str = "day_of_season"
    season_length_days: float = 365.0
    season_start: str | None = None  # "MM-DD"; None for series without a calendar (UCR)
    time_unit: str = "day"           # what the time input counts: "day" or "step" (UCR)
    # how decisions' probabilities are calibrated: {"method": "temperature", "temperature": T,
    # "ece_before", "ece_after", "fitted_on"}; empty: they are the network's as they are
    calibration: dict[str, Any] = field(default_factory=dict)

    @property
    def temperature(self) -> float:
        return float(self.calibration.get("temperature", 1.0))
    description: str = ""
    training: dict[str, Any] = field(default_factory=dict)  # data name and sha256, seed, epochs
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=lambda: datetime.now(UTC).isoformat())

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        data = json.loads(text)
        for key in ("band_names", "class_names", "band_mean", "band_std"):
            data[key] = tuple(data[key])
        return cls(**data)


def build_model(metadata: ModelMetadata) -> EarlyClassifier:
    return EarlyClassifier(
        Architecture(**metadata.architecture),
        band_mean=torch.tensor(metadata.band_mean),
        band_std=torch.tensor(metadata.band_std),
        season_length_days=metadata.season_length_days,
    )


def _digest(metadata_json: str, state_dict: dict[str, torch.Tensor]) -> str:
    digest = hashlib.sha256(metadata_json.encode())
    for name in sorted(state_dict):
        digest.update(name.encode())
        digest.update(state_dict[name].detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def save_artifact(path: str | Path, model: EarlyClassifier, metadata: ModelMetadata) -> Path:
    """Write the model and its metadata to one file; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    metadata_json = metadata.to_json()
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, "metadata": metadata_json,
                "state_dict": state, "sha256": _digest(metadata_json, state)}, tmp)
    tmp.replace(path)  # never leave a half-written artifact under the final name
    return path


@dataclass(frozen=True)
class LoadedModel:
    model: EarlyClassifier
    metadata: ModelMetadata
    sha256: str

    def check_bands(self, feed: str, band_names: tuple[str, ...] | list[str]) -> None:
        """Refuse a feed whose bands differ from the model's, naming the difference."""
        band_names = tuple(band_names)
        if band_names != self.metadata.band_names:
            missing = [b for b in self.metadata.band_names if b not in band_names]
            extra = [b for b in band_names if b not in self.metadata.band_names]
            detail = (f"missing {missing}, unexpected {extra}" if missing or extra
                      else "same bands in another order")
            raise ArtifactError(
                f"model {self.metadata.version} expects bands {list(self.metadata.band_names)} "
                f"but feed {feed!r} gives {list(band_names)} ({detail}); train a model on this "
                "feed's bands (`eowatch train`) or configure the feed's band list")


def load_artifact(path: str | Path, device: torch.device | str = "cpu") -> LoadedModel:
    """Load and verify an artifact; raises ArtifactError with the fix on any mismatch."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"model artifact {path} not found; give the path of a file written "
                            "by `eowatch train`")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ArtifactError(f"{path} is not a readable model artifact ({exc.__class__.__name__}: "
                            f"{exc}); it may be truncated: copy it again or retrain") from None
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ArtifactError(f"{path} is not an eowatch model artifact")
    if blob.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{path} has artifact format version {blob.get('format_version')}; "
                            f"this eowatch reads version {FORMAT_VERSION}: upgrade eowatch or "
                            "retrain the model")
    metadata_json, state = blob["metadata"], blob["state_dict"]
    digest = _digest(metadata_json, state)
    if digest != blob.get("sha256"):
        raise ArtifactError(f"{path} fails its integrity check (sha256 of weights and metadata "
                            "differs from the one recorded); the file is corrupt: restore it")
    metadata = ModelMetadata.from_json(metadata_json)
    model = build_model(metadata)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ArtifactError(f"{path}: weights do not fit the architecture in its metadata "
                            f"({exc})") from None
    try:
        check_season_start(metadata.season_start)
    except SeasonStartError as exc:
        raise ArtifactError(f"{path}: {exc}; retrain with a valid --season-start") from None
    if len(metadata.band_mean) != len(metadata.band_names):
        raise ArtifactError(f"{path}: normalisation has {len(metadata.band_mean)} values for "
                            f"{len(metadata.band_names)} bands")
    return LoadedModel(model.to(device).eval(), metadata, digest)
