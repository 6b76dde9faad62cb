"""The evaluation plots: a representative early decision per class, calendar dates on the
axis, and earliness named for what it is."""

from __future__ import annotations

import numpy as np

from eowatch.models.metrics import Predictions
from eowatch.models.plots import day_labels, plot_trajectory, representative_samples


def predictions() -> Predictions:
    """Class 0: sample 0 right but forced at the season's end, samples 1-3 right and early
    (days 40, 60, 100); class 1: only a wrong decision (sample 4)."""
    n, steps, classes = 5, 10, 2
    lengths = np.full(n, steps)
    stop_step = np.array([9, 2, 3, 5, 4])
    days = np.tile(np.arange(steps) * 20.0, (n, 1))
    log_probs = np.log(np.full((n, steps, classes), 0.5))
    return Predictions(predicted=np.array([0, 0, 0, 0, 0]), truth=np.array([0, 0, 0, 0, 1]),
                       stop_step=stop_step, lengths=lengths,
                       stop_day=days[np.arange(n), stop_step], season_length_days=200.0,
                       log_probs=log_probs, p_stop=np.full((n, steps), 0.3))


def test_the_representative_decision_is_early_and_typical_not_the_first_right_one():
    chosen = representative_samples(predictions())
    assert chosen[0] == 2          # the median day of the early right ones, not forced sample 0
    assert chosen[1] == 4          # no right decision: the wrong one, rather than nothing


def test_the_axis_shows_calendar_dates_when_the_season_has_a_start(tmp_path):
    label, formatter = day_labels("09-01")
    assert label == "date (season from 01 Sep)" and formatter(30, 0) == "01 Oct"
    assert day_labels(None, "step") == ("step", None)
    p = predictions()
    path = plot_trajectory(p, np.tile(np.arange(10) * 20.0, (5, 1)), ("soy", "cotton"),
                           np.arange(5), tmp_path / "trajectory.png", "09-01")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
