"""Early-classification metrics: accuracy and earliness at the stopping rule's decision."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import cohen_kappa_score, f1_score

from .datasets.base import SeriesSet
from .network import EarlyClassifier
from .stopping import deterministic_stop, sampled_stop


@dataclass(frozen=True)
class Predictions:
    """Per-sample decisions of a model on a SeriesSet.

    predicted, truth: [n] class index; stop_step: [n] index of the deciding step;
    lengths: [n]; stop_day: [n] day of season at the decision; log_probs: [n, time, classes]
    and p_stop: [n, time] the whole trajectories (for plots).
    """

    predicted: np.ndarray
    truth: np.ndarray
    stop_step: np.ndarray
    lengths: np.ndarray
    stop_day: np.ndarray
    season_length_days: float
    log_probs: np.ndarray
    p_stop: np.ndarray

    @property
    def accuracy(self) -> float:
        return float((self.predicted == self.truth).mean())

    @property
    def earliness(self) -> float:
        """Mean fraction of each series observed at the decision, (stop + 1) / length."""
        return float(((self.stop_step + 1) / self.lengths).mean())

    @property
    def season_fraction(self) -> float:
        """Mean fraction of the season elapsed at the decision (day of season / season length)."""
        return float(np.clip(self.stop_day / self.season_length_days, 0, 1).mean())

    @property
    def kappa(self) -> float:
        return float(cohen_kappa_score(self.truth, self.predicted))

    @property
    def macro_f1(self) -> float:
        return float(f1_score(self.truth, self.predicted, average="macro"))

    @property
    def harmonic_mean(self) -> float:
        """Harmonic mean of accuracy and (1 − earliness), as in the ELECTS paper."""
        a, e = self.accuracy, 1.0 - self.earliness
        return 0.0 if a + e == 0 else 2 * a * e / (a + e)


def score(predictions: Predictions, alpha: float) -> float:
    """α·accuracy + (1 − α)·(1 − earliness): the published early-classification score."""
    return alpha * predictions.accuracy + (1 - alpha) * (1 - predictions.earliness)


@torch.no_grad()
def predict(model: EarlyClassifier, data: SeriesSet, threshold: float = 0.5,
            device: str = "cpu", rule: str = "deterministic", seed: int = 0,
            batch_size: int = 4096) -> Predictions:
    """Run whole sequences and apply a stopping rule ("deterministic" or "sampled")."""
    model.eval()
    log_probs, p_stop = [], []
    for start in range(0, len(data), batch_size):
        x = torch.as_tensor(data.values[start:start + batch_size], device=device)
        days = torch.as_tensor(data.days[start:start + batch_size], device=device)
        lp, ps = model(x, days)
        log_probs.append(lp.cpu())
        p_stop.append(ps.cpu())
    lp_all, ps_all = torch.cat(log_probs), torch.cat(p_stop)
    lengths = torch.as_tensor(data.lengths)
    if rule == "deterministic":
        stop = deterministic_stop(ps_all, lengths, threshold)
    elif rule == "sampled":
        stop = sampled_stop(ps_all, lengths, torch.Generator().manual_seed(seed))
    else:
        raise ValueError(f"unknown stopping rule {rule!r}; use 'deterministic' or 'sampled'")
    rows = torch.arange(len(data))
    predicted = lp_all[rows, stop].argmax(-1).numpy()
    stop_np = stop.numpy()
    return Predictions(predicted=predicted, truth=data.labels.copy(), stop_step=stop_np,
                       lengths=data.lengths.copy(), stop_day=data.days[rows.numpy(), stop_np],
                       season_length_days=data.season_length_days,
                       log_probs=lp_all.numpy(), p_stop=ps_all.numpy())


def summary(predictions: Predictions, alpha: float) -> dict[str, float]:
    return {"accuracy": predictions.accuracy, "kappa": predictions.kappa,
            "macro_f1": predictions.macro_f1, "earliness": predictions.earliness,
            "season_fraction": predictions.season_fraction,
            "harmonic_mean": predictions.harmonic_mean, "score": score(predictions, alpha)}

