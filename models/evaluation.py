"""`eowatch evaluate`: the metrics table and the plots for one model on one dataset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np

from .artifact import LoadedModel
from .calibration import (
    calibrate,
    decision_log_probs,
    expected_calibration_error,
    plot_reliability,
)
from .datasets.base import SeriesSet
from .metrics import Predictions, predict, summary
from .plots import plot_accuracy_vs_season, plot_confusion, plot_trajectory


@dataclass(frozen=True)
class ClassDays:
    """When a class's decisions fall in its season: decision day median and quartiles, and
    the median first and last observation of its series (the observed season)."""

    samples: int
    median: float
    q1: float
    q3: float
    first: float
    last: float


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    sampled_metrics: dict[str, float]
    decision_days: dict[str, ClassDays]
    predictions: Predictions
    plots: list[Path]
    calibration: dict[str, float]      # temperature, ece_raw, ece_calibrated


def class_days(predictions: Predictions, days: np.ndarray, class_names: tuple[str, ...]
               ) -> dict[str, ClassDays]:
    """Per true class, the decision days against the observed season (as ELECTS reports its
    per-class stop dates)."""
    rows = np.arange(len(predictions.truth))
    first = days[:, 0]
    last = days[rows, predictions.lengths - 1]
    found = {}
    for k, name in enumerate(class_names):
        mine = predictions.truth == k
        if mine.any():
            q1, median, q3 = np.percentile(predictions.stop_day[mine], [25, 50, 75])
            found[name] = ClassDays(int(mine.sum()), float(median), float(q1), float(q3),
                                    float(np.median(first[mine])), float(np.median(last[mine])))
    return found


def evaluate(loaded: LoadedModel, data: SeriesSet, plot_dir: Path | None = None,
             threshold: float | None = None, device: str = "cpu") -> Evaluation:
    meta = loaded.metadata
    data = data.with_classes(meta.class_names)
    loaded.check_bands(data.name, data.band_names)
    threshold = meta.stop_threshold if threshold is None else threshold
    predictions = predict(loaded.model, data, threshold, device)
    sampled = predict(loaded.model, data, threshold, device, rule="sampled")
    plots: list[Path] = []
    if plot_dir is not None:
        plots.append(plot_confusion(predictions, meta.class_names, plot_dir / "confusion.png"))
        plots.append(plot_accuracy_vs_season(predictions, data.days,
                                             plot_dir / "accuracy_vs_season.png"))
        plots.append(plot_trajectory(predictions, data.days, meta.class_names,
                                     data.sample_ids, plot_dir / "trajectory.png",
                                     meta.season_start, meta.time_unit, threshold))
    log_probs = decision_log_probs(predictions)
    raw, calibrated = calibrate(log_probs, 1.0), calibrate(log_probs, meta.temperature)
    calibration = {"temperature": meta.temperature,
                   "ece_raw": expected_calibration_error(raw, predictions.truth),
                   "ece_calibrated": expected_calibration_error(calibrated, predictions.truth)}
    if plot_dir is not None:
        plots.append(plot_reliability(raw, calibrated, predictions.truth,
                                      plot_dir / "reliability.png"))
    return Evaluation(summary(predictions, meta.alpha), summary(sampled, meta.alpha),
                      class_days(predictions, data.days, meta.class_names), predictions, plots,
                      calibration)


def stop_date(season_start: str | None, day: float, time_unit: str = "day") -> str:
    """Day of season -> "MM-DD" when the season has a calendar start, else "day N" (samples
    with seasons of their own) or "step N" (series without dates)."""
    if season_start is None:
        return f"{time_unit} {day:.0f}"
    month, dom = (int(p) for p in season_start.split("-"))
    return (date(2001, month, dom) + timedelta(days=round(day))).strftime("%m-%d")


def format_report(evaluation: Evaluation, season_start: str | None,
                  time_unit: str = "day") -> str:
    lines = ["metric            deterministic   sampled (reference rule)"]
    for key, value in evaluation.metrics.items():
        lines.append(f"{key:<17} {value:>13.4f}   {evaluation.sampled_metrics[key]:>8.4f}")
    c = evaluation.calibration
    lines += ["", f"calibration: temperature {c['temperature']:.3f}; expected calibration "
              f"error {c['ece_raw']:.4f} raw, {c['ece_calibrated']:.4f} calibrated"]
    unit = "step" if time_unit == "step" else "day of season"
    lines += ["", f"{'class':<26} {'n':>5}  decision {unit}: median [q1-q3]  date       "
              "observed season (median first-last)"]
    for name, d in evaluation.decision_days.items():
        lines.append(f"{name:<26} {d.samples:>5}  {d.median:>6.1f} [{d.q1:>5.1f}-{d.q3:>5.1f}]"
                     f"     {stop_date(season_start, d.median, time_unit):<9}  "
                     f"{d.first:.0f}-{d.last:.0f}")
    if evaluation.plots:
        lines += ["", "plots: " + ", ".join(str(p) for p in evaluation.plots)]
    return "\n".join(lines)
