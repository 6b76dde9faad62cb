"""Calibrated confidence of decisions: temperature scaling, fitted on the validation split.

A decision's class probabilities are the model's at the step it stops. Networks trained with a
log-loss are often over-confident there; temperature scaling (Guo et al., ICML 2017) divides the
log-probabilities by one scalar T > 0 before the softmax, T chosen to minimise the negative
log-likelihood of the true classes on held-out decisions. It changes no decision (the argmax
stays) and only how sure each one says it is. The expected calibration error (ECE: the
|accuracy − confidence| gap over 15 equal-width bins of confidence, weighted by their counts)
measures it before and after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax

from .metrics import Predictions

BINS = 15


def decision_log_probs(predictions: Predictions) -> np.ndarray:
    """[n, classes] the log-probabilities at each sample's decision step."""
    n = len(predictions.truth)
    return predictions.log_probs[np.arange(n), predictions.stop_step]


def calibrate(log_probs: np.ndarray, temperature: float) -> np.ndarray:
    """Class probabilities after temperature scaling (log-probabilities are logits up to a
    constant per row, which the softmax drops)."""
    return np.exp(log_softmax(np.asarray(log_probs, np.float64) / temperature, axis=-1))


def fit_temperature(log_probs: np.ndarray, labels: np.ndarray) -> float:
    """The T in [0.05, 20] that minimises the NLL of the true classes."""
    log_probs = np.asarray(log_probs, np.float64)
    rows = np.arange(len(labels))

    def nll(log_t: float) -> float:
        return float(-log_softmax(log_probs / np.exp(log_t), axis=1)[rows, labels].mean())

    found = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def fit_calibration(validation: Predictions) -> dict[str, Any]:
    """Temperature scaling of the decisions on a validation split, with the expected
    calibration error before and after (what a model card records)."""
    log_probs, labels = decision_log_probs(validation), validation.truth
    temperature = fit_temperature(log_probs, labels)
    return {"method": "temperature", "temperature": round(temperature, 6),
            "ece_before": round(expected_calibration_error(calibrate(log_probs, 1.0), labels), 6),
            "ece_after": round(expected_calibration_error(calibrate(log_probs, temperature),
                                                          labels), 6),
            "fitted_on": "validation"}


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray,
                               bins: int = BINS) -> float:
    """ECE of the top-class confidence."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    gap = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            gap += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(gap)


def plot_reliability(before: np.ndarray, after: np.ndarray, labels: np.ndarray,
                     path: Path, bins: int = BINS) -> Path:
    """Reliability diagram: accuracy against confidence per bin, before and after."""
    from .plots import _save, plt

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    edges = np.linspace(0.0, 1.0, bins + 1)
    for probabilities, name, style in ((before, "raw", "o-"), (after, "calibrated", "s-")):
        confidence = probabilities.max(axis=1)
        correct = probabilities.argmax(axis=1) == labels
        which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
        xs = [confidence[which == b].mean() for b in range(bins) if (which == b).any()]
        ys = [correct[which == b].mean() for b in range(bins) if (which == b).any()]
        ece = expected_calibration_error(probabilities, labels, bins)
        ax.plot(xs, ys, style, ms=4, label=f"{name} (ECE {ece:.3f})")
    ax.set_xlabel("confidence of the decision")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1.0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _save(fig, path)
