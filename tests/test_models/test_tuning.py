"""`eowatch tune`: trials scored over folds, a table of them, and the best model written."""

from __future__ import annotations

import numpy as np
import pytest

from eowatch.cli import main
from eowatch.models.artifact import load_artifact
from eowatch.models.datasets.simulator import ParcelSimulator
from eowatch.models.tuning import folds_of


def test_tune_runs_its_trials_prints_them_and_writes_the_best(tmp_path, capsys):
    out = tmp_path / "tuned.pt"
    assert main(["tune", "simulated:150:3", "--trials", "3", "--folds", "2", "--epochs", "6",
                 "--patience", "6", "--out", str(out), "--season-start", "01-01",
                 "--no-progress", "--allow-weak"]) == 0
    printed = capsys.readouterr().out
    table = printed.split("best:")[0].strip().splitlines()
    assert table[0].split()[:4] == ["trial", "score", "folds", "state"]
    assert len(table) == 2 + 3                          # header, rule, one row per trial
    best = dict(item.split("=") for item in printed.split("best: ")[1].splitlines()[0]
                .split(", "))
    config = load_artifact(out).metadata.training["config"]
    assert config["hidden_size"] == int(best["hidden_size"])
    assert config["score_alpha"] == 0.8                  # chosen as the user scores
    assert config["warmup_epochs"] <= 6 // 3
    assert config["jitter"] == pytest.approx(float(best["jitter"]), rel=1e-3)


def test_folds_keep_a_location_on_one_side():
    data = ParcelSimulator(120, seed=1).series()
    data = data.__class__(**{**data.__dict__, "groups": np.arange(len(data)) // 3})
    for train_part, held_out in folds_of(data, 3, seed=0):
        assert not set(train_part.groups) & set(held_out.groups)
        assert len(train_part) + len(held_out) == len(data)
