"""Calibrated confidence: temperature scaling recovers an over-confidence it was given, the
expected calibration error says so, the model card and the daemon's decisions carry it."""

from __future__ import annotations

import numpy as np
from scipy.special import log_softmax

from eowatch.cli import main
from eowatch.models.artifact import load_artifact
from eowatch.models.calibration import calibrate, expected_calibration_error, fit_temperature


def overconfident(n=4000, classes=4, temperature=3.0, seed=0):
    """Labels drawn from softmax(z), reported as log_softmax(z * temperature): too sure."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, (n, classes))
    truth = np.exp(log_softmax(z, axis=1))
    labels = np.array([rng.choice(classes, p=p) for p in truth])
    return log_softmax(z * temperature, axis=1), labels


def test_temperature_scaling_undoes_an_over_confidence():
    log_probs, labels = overconfident(temperature=3.0)
    t = fit_temperature(log_probs, labels)
    assert abs(t - 3.0) < 0.3
    before = expected_calibration_error(calibrate(log_probs, 1.0), labels)
    after = expected_calibration_error(calibrate(log_probs, t), labels)
    assert before > 0.1 and after < 0.03
    # it never changes a decision
    assert (calibrate(log_probs, t).argmax(1) == log_probs.argmax(1)).all()


def test_train_records_the_calibration_and_evaluate_reports_it(tmp_path, capsys):
    model = tmp_path / "m.pt"
    assert main(["train", "simulated:200:1", "--out", str(model), "--epochs", "4",
                 "--warmup", "1", "--hidden", "16", "--no-progress", "--season-start", "01-01",
                 "--allow-weak"]) == 0
    card = load_artifact(model).metadata
    assert card.calibration["method"] == "temperature" and card.temperature > 0
    assert "expected calibration error on the validation split" in capsys.readouterr().out
    assert main(["evaluate", str(model), "simulated:100:5", "--plots",
                 str(tmp_path / "plots")]) == 0
    report = capsys.readouterr().out
    assert f"temperature {card.temperature:.3f}" in report
    assert "median [q1-q3]" in report and "observed season" in report
    assert (tmp_path / "plots" / "reliability.png").read_bytes()[:4] == b"\x89PNG"


def test_decisions_carry_the_calibrated_probabilities():
    from dataclasses import replace

    from eowatch.daemon.state_model import CropModel, Decided
    from eowatch.models.artifact import LoadedModel
    from eowatch.settings import DEFAULT_MODEL

    loaded = load_artifact(DEFAULT_MODEL)
    hot = LoadedModel(loaded.model, replace(loaded.metadata, calibration={
        "method": "temperature", "temperature": 2.0}), loaded.sha256)
    outputs = np.log(np.array([[0.9] + [0.1 / 5] * 5], np.float32))
    decided = Decided(target_ids=["p1"], seasons=[2025], feeds=["f"], outputs=outputs,
                      scores=np.array([0.9]), days=[100.0], times=[1.7e9],
                      acquisitions=["a"], observations=[5], shards=[0], forced=False)
    plain, = CropModel(loaded).decide(decided)
    calibrated, = CropModel(hot).decide(decided)
    assert plain.crop == calibrated.crop
    assert calibrated.probabilities[plain.crop] < plain.probabilities[plain.crop]
    assert abs(sum(calibrated.probabilities.values()) - 1) < 1e-5
