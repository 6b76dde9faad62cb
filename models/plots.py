"""Evaluation plots, written as PNG files."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import confusion_matrix  # noqa: E402

from .metrics import Predictions  # noqa: E402


def plot_confusion(predictions: Predictions, class_names: tuple[str, ...], path: Path) -> Path:
    matrix = confusion_matrix(predictions.truth, predictions.predicted,
                              labels=np.arange(len(class_names)))
    shares = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    size = 2.5 + 0.6 * len(class_names)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center",
                color="white" if shares[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted at the decision")
    ax.set_ylabel("true")
    ax.set_title(f"accuracy {predictions.accuracy:.3f}, earliness {predictions.earliness:.2f}")
    return _save(fig, path)


def accuracy_by_season_fraction(predictions: Predictions, days: np.ndarray,
                                fractions: np.ndarray) -> np.ndarray:
    """Accuracy of the class argmax at the last observation within each fraction of the season.

    Samples with no observation yet at a fraction count as wrong (no answer).
    """
    lengths = predictions.lengths
    valid = np.arange(days.shape[1])[None, :] < lengths[:, None]
    scores = []
    for f in fractions:
        seen = valid & (np.nan_to_num(days, nan=np.inf) <= f * predictions.season_length_days)
        last = seen.sum(1) - 1
        rows = np.flatnonzero(last >= 0)
        argmax = predictions.log_probs[rows, last[rows]].argmax(-1)
        scores.append((argmax == predictions.truth[rows]).sum() / len(lengths))
    return np.array(scores)


def plot_accuracy_vs_season(predictions: Predictions, days: np.ndarray, path: Path) -> Path:
    fractions = np.linspace(0.05, 1.0, 20)
    accuracy = accuracy_by_season_fraction(predictions, days, fractions)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(fractions, accuracy, marker="o", label="class argmax at that date")
    ax.scatter([predictions.season_fraction], [predictions.accuracy], color="red", zorder=3,
               label="at the learned stop (mean date)")
    ax.set_xlabel("fraction of the season observed")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_trajectory(predictions: Predictions, days: np.ndarray, class_names: tuple[str, ...],
                    sample: int, sample_id: object, path: Path) -> Path:
    n = int(predictions.lengths[sample])
    t = days[sample, :n]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    probs = np.exp(predictions.log_probs[sample, :n])
    for k, name in enumerate(class_names):
        style = "-" if k == predictions.truth[sample] else "--"
        top.plot(t, probs[:, k], style, label=name)
    top.set_ylabel("class probability")
    top.legend(fontsize=7, ncol=2)
    bottom.plot(t, predictions.p_stop[sample, :n], color="black")
    bottom.set_ylabel("stop probability δ")
    bottom.set_xlabel("day of season")
    for ax in (top, bottom):
        ax.axvline(predictions.stop_day[sample], color="red", alpha=0.6)
        ax.set_ylim(-0.02, 1.02)
    top.set_title(f"sample {sample_id}: true {class_names[predictions.truth[sample]]}, decided "
                  f"{class_names[predictions.predicted[sample]]} on day "
                  f"{predictions.stop_day[sample]:.0f}")
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
