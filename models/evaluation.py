"""`eowatch evaluate`: the metrics table and the plots for one model on one dataset."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from .artifact import LoadedModel
from .datasets.base import SeriesSet
from .metrics import Predictions, per_class_stop_day, predict, summary
from .plots import plot_accuracy_vs_season, plot_confusion, plot_trajectory


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, float]
    sampled_metrics: dict[str, float]
    stop_day_by_class: dict[str, float]
    predictions: Predictions
    plots: list[Path]


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
    return Evaluation(summary(predictions, meta.alpha), summary(sampled, meta.alpha),
                      per_class_stop_day(predictions, meta.class_names), predictions, plots)


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
    where = "step" if time_unit == "step" else "day of season, date"
    lines += ["", f"class                      mean stop ({where})"]
    for name, day in evaluation.stop_day_by_class.items():
        lines.append(f"{name:<26} {day:>6.1f}  {stop_date(season_start, day, time_unit)}")
    if evaluation.plots:
        lines += ["", "plots: " + ", ".join(str(p) for p in evaluation.plots)]
    return "\n".join(lines)
