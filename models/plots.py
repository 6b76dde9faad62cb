"""Evaluation plots, written as PNG files."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # headless: files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
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
    ax.set_title(f"accuracy {predictions.accuracy:.3f}, decided after "
                 f"{predictions.earliness:.0%} of the season observed")
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


def representative_samples(predictions: Predictions) -> dict[int, int]:
    """Per true class, the sample whose decision shows how the model decides that class: among
    its samples decided right before the season's end (not forced at the last step), the one
    decided on the class's median day; a forced or wrong decision only when there is no other."""
    chosen = {}
    early = predictions.stop_step < predictions.lengths - 1
    right = predictions.predicted == predictions.truth
    for k in np.unique(predictions.truth).tolist():
        mine = predictions.truth == k
        for pool in (mine & right & early, mine & right, mine):
            candidates = np.flatnonzero(pool)
            if candidates.size:
                days = predictions.stop_day[candidates]
                chosen[int(k)] = int(candidates[np.argmin(np.abs(days - np.median(days)))])
                break
    return chosen


def day_labels(season_start: str | None, time_unit: str = "day") -> tuple[str, Any]:
    """The axis label and tick formatter of days of season: calendar dates when the season has
    a start, else days (or steps)."""
    if season_start is None:
        return ("step" if time_unit == "step" else "day of season"), None
    month, dom = (int(p) for p in season_start.split("-"))
    start = date(2001, month, dom)

    def formatter(value: float, _position: int) -> str:
        return (start + timedelta(days=round(value))).strftime("%d %b")

    return f"date (season from {start:%d %b})", FuncFormatter(formatter)


def plot_trajectory(predictions: Predictions, days: np.ndarray, class_names: tuple[str, ...],
                    sample_ids: np.ndarray, path: Path, season_start: str | None = None,
                    time_unit: str = "day", threshold: float = 0.5) -> Path:
    """One row per class: a representative decision (``representative_samples``), its class
    probabilities (the true class solid) and its stop probability against the threshold, the
    decision marked."""
    chosen = representative_samples(predictions)
    label, formatter = day_labels(season_start, time_unit)
    fig, axes = plt.subplots(len(chosen), 1, figsize=(7, 1.9 * len(chosen) + 0.6),
                             sharex=True, squeeze=False)
    for ax, (k, sample) in zip(axes[:, 0], sorted(chosen.items()), strict=True):
        n = int(predictions.lengths[sample])
        t = days[sample, :n]
        probs = np.exp(predictions.log_probs[sample, :n])
        for j, name in enumerate(class_names):
            ax.plot(t, probs[:, j], "-" if j == k else ":", lw=2 if j == k else 1,
                    label=name if ax is axes[0, 0] else None)
        ax.plot(t, predictions.p_stop[sample, :n], color="black", lw=1.2,
                label="stop probability" if ax is axes[0, 0] else None)
        ax.axhline(threshold, color="black", ls="--", lw=0.8)
        ax.axvline(predictions.stop_day[sample], color="red", alpha=0.7)
        ax.plot(t, np.full(n, -0.04), "|", color="grey", ms=4)   # the observations
        ax.set_ylim(-0.08, 1.02)
        forced = predictions.stop_step[sample] >= n - 1
        when = (formatter(predictions.stop_day[sample], 0) if formatter
                else f"{label} {predictions.stop_day[sample]:.0f}")
        ax.set_title(f"{class_names[k]} (sample {sample_ids[sample]}): decided "
                     f"{class_names[predictions.predicted[sample]]} on {when}"
                     + (", forced at the season's end" if forced else ""), fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=4, loc="upper left")
    axes[-1, 0].set_xlabel(label)
    if formatter is not None:
        axes[-1, 0].xaxis.set_major_formatter(formatter)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
