import numpy as np
import pytest
import torch

from eowatch.cli import main
from eowatch.errors import EowatchError
from eowatch.models.artifact import load_artifact
from eowatch.models.datasets.simulator import ParcelSimulator
from eowatch.models.metrics import predict
from eowatch.models.training import TrainConfig, train
from eowatch.settings import DEFAULT_MODEL

FAST = dict(hidden_size=32, max_epochs=12, patience=12, warmup_epochs=4, progress=False,
            batch_size=32)


def test_training_learns_simulated_crops_and_is_reproducible():
    data = ParcelSimulator(500, seed=2).series()
    first = train(data, TrainConfig(alpha=0.9, seed=7, **FAST))
    second = train(data, TrainConfig(alpha=0.9, seed=7, **FAST))
    for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)
    held_out = ParcelSimulator(300, seed=3).series()
    predictions = predict(first.model, held_out)
    majority = max((held_out.labels == k).mean() for k in range(6))
    assert predictions.accuracy > majority + 0.2


def test_early_stopping_ends_training_after_patience_epochs():
    data = ParcelSimulator(120, seed=2).series()
    result = train(data, TrainConfig(max_epochs=200, patience=3, hidden_size=8, progress=False))
    assert len(result.history) == result.best_epoch + 4 < 200


def test_cli_train_then_evaluate_writes_artifact_and_plots(tmp_path, capsys):
    model = tmp_path / "model.pt"
    assert main(["train", "simulated:200:1", "--out", str(model), "--epochs", "3",
                 "--warmup", "1", "--hidden", "16", "--no-progress", "--feed", "simulated",
                 "--season-start", "01-01", "--allow-weak"]) == 0   # 3 epochs: weak
    loaded = load_artifact(model)
    assert loaded.metadata.feed == "simulated"
    assert loaded.metadata.description == "trained on simulated data"
    assert len(loaded.metadata.training["data_sha256"]) == 64
    capsys.readouterr()
    plots = str(tmp_path / "plots")
    assert main(["evaluate", str(model), "simulated:100:5", "--plots", plots]) == 0
    report = capsys.readouterr().out
    for word in ("accuracy", "kappa", "macro_f1", "earliness", "harmonic_mean", "maize"):
        assert word in report
    for name in ("confusion.png", "accuracy_vs_season.png", "trajectory.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_weak_training_says_why_and_writes_nothing_unless_allowed(tmp_path, capsys):
    """One epoch cannot learn the simulated crops: the run names what is wrong, exits 3 and
    leaves no artifact; with --allow-weak it writes one whose card records the checks."""
    model = tmp_path / "weak.pt"
    arguments = ["train", "simulated:150:3", "--out", str(model), "--epochs", "1",
                 "--warmup", "0", "--hidden", "8", "--no-progress", "--season-start", "01-01"]
    assert main(arguments) == 3
    out = capsys.readouterr().out
    assert "weak model: the best epoch is the first" in out
    assert "training stopped at the epoch limit (1)" in out
    assert "1-NN on whole series" in out and not model.exists()
    assert main([*arguments, "--allow-weak"]) == 0
    training = load_artifact(model).metadata.training
    # the card records the batch size and patience the run used, not the "by size" 0
    samples, config = training["samples"], training["config"]
    assert 100 < samples < 150 and config["batch_size"] == samples // 8
    steps_per_epoch = -(-samples // config["batch_size"])
    assert config["patience"] == -(-300 // steps_per_epoch) > 30
    checks = training["checks"]
    assert checks["problems"] and 0 < checks["majority_accuracy"] < 1
    assert 0 <= checks["nearest_neighbour_accuracy"] <= 1


def test_the_bundled_model_passes_the_training_checks():
    """The shipped model (5,000 simulated parcels, 40 epochs, best at 36) on fresh simulated
    parcels: above the majority class and within reach of a 1-NN reading whole series."""
    from eowatch.models.metrics import predict
    from eowatch.models.training import TrainResult, check_training

    loaded = load_artifact(DEFAULT_MODEL)
    bands = loaded.metadata.band_names
    data = ParcelSimulator(400, seed=11).series().select_bands(bands)
    validation = ParcelSimulator(200, seed=12).series().select_bands(bands)
    predictions = predict(loaded.model, validation, loaded.metadata.stop_threshold)
    result = TrainResult(loaded.model, 36, 0.0, [{}] * 40, predictions)
    check = check_training(result, data, validation, TrainConfig(max_epochs=40))
    assert check.problems == () and check.accuracy > check.majority + 0.3


def test_cli_reports_bad_data_as_an_error_not_a_traceback(tmp_path, capsys):
    assert main(["train", str(tmp_path / "absent.parquet"), "--out", str(tmp_path / "m.pt")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_the_artifact_records_the_season_its_data_started_on(tmp_path, capsys):
    from eowatch.settings import load_settings

    from ..test_daemon.pipeline import make_daemon
    from ..test_models.test_datasets import long_frame

    frame = long_frame(n_samples=8, n_dates=6)
    same, mixed = tmp_path / "same.csv", tmp_path / "mixed.csv"
    frame.to_csv(same, index=False)
    frame.assign(start_date=frame["sample_id"].map(lambda s: f"2013-0{8 + s % 2}-01")).to_csv(
        mixed, index=False)
    for data, expected in ((same, "09-01"), (mixed, None)):
        model = tmp_path / f"{data.stem}.pt"
        assert main(["train", str(data), "--out", str(model), "--epochs", "1", "--hidden", "8",
                     "--no-progress", "--allow-weak"]) == 0
        assert load_artifact(model).metadata.season_start == expected
        assert load_artifact(model).metadata.time_unit == "day"
    assert "EOWATCH_SEASON_START" in capsys.readouterr().out
    # seasons of their own: the report counts days of season, not steps
    assert main(["evaluate", str(model), str(mixed)]) == 0
    report = capsys.readouterr().out
    assert "decision day of season: median" in report
    table = report.split("observed season")[1]
    assert " day " in table and "step" not in table
    # the daemon refuses a model without a season start unless the operator sets one
    with pytest.raises(EowatchError, match="EOWATCH_SEASON_START=MM-DD"):
        make_daemon(tmp_path / "a", "embedded", "t", model_path=model, feeds=())
    daemon = make_daemon(tmp_path / "b", "embedded", "t", model_path=model, feeds=(),
                         season_start="10-01")
    assert daemon.processor.default_season_start == "10-01"
    daemon.shutdown()
    with pytest.raises(EowatchError, match="EOWATCH_SEASON_START: .*month 13"):
        load_settings(season_start="13-01")


def test_an_early_stop_is_logged_on_its_own_line_and_ends_the_bar(capfd):
    """The early-stop line goes above the progress bar, not glued to it, and the bar ends at
    the epochs done (100 %), not part of the way."""
    import logging
    import sys

    handler = logging.StreamHandler(sys.stderr)    # as `eowatch`'s logging.basicConfig
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    root, level = logging.getLogger(), logging.getLogger().level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        data = ParcelSimulator(120, seed=2).series()
        train(data, TrainConfig(max_epochs=200, patience=2, hidden_size=8, progress=True))
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    err = capfd.readouterr().err
    pieces = [p for p in err.replace("\r", "\n").split("\n") if p.strip()]
    stop = [p for p in pieces if "early stop at epoch" in p]
    assert len(stop) == 1 and stop[0].startswith("INFO early stop")   # a line of its own
    bars = [p for p in pieces if p.startswith("train:")]
    assert "100%" in bars[-1] and "200/200" not in bars[-1]


def test_defaults_follow_the_training_sets_size():
    """A small set gets small batches and a patience of 300 optimizer steps (decision 0014);
    a large one keeps 64 series a batch and 30 epochs; explicit values are kept."""
    from eowatch.models.training import resolved

    small, large = resolved(TrainConfig(), 22), resolved(TrainConfig(), 1500)
    assert (small.batch_size, small.patience) == (8, 100)     # 3 steps an epoch
    assert (large.batch_size, large.patience) == (64, 30)
    assert resolved(TrainConfig(batch_size=32, patience=5), 22) == TrainConfig(batch_size=32,
                                                                                patience=5)


def test_a_warm_up_trains_the_classifier_before_the_earliness_reward_counts():
    from eowatch.models.training import check_training

    data = ParcelSimulator(160, seed=4).series()
    result = train(data, TrainConfig(max_epochs=6, warmup_epochs=3, patience=50,
                                     hidden_size=8, progress=False))
    assert len(result.history) == 6 and result.best_epoch >= 3   # chosen after the warm-up
    # the warm-up's loss is the classifier's cross-entropy: positive, unlike the reward's
    assert all(h["loss"] > 0 for h in result.history[:3])
    # a run that never leaves its warm-up is named, not written
    never = train(data, TrainConfig(max_epochs=2, warmup_epochs=2, hidden_size=8,
                                    progress=False))
    assert never.best_epoch == -1
    check = check_training(never, data, data.subset(range(40)),
                           TrainConfig(max_epochs=2, warmup_epochs=2))
    assert any("warm-up" in p for p in check.problems)


def _shapes(n: int, seed: int, length: int = 400):
    """Noisy series whose class is the sign of one short wave somewhere in their first 70
    steps: what a long UCR set of few samples asks, remembering a shape for 300 steps."""
    from eowatch.models.datasets.base import SeriesSet

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    values = rng.normal(0, 0.5, (n, length, 1)).astype(np.float32)
    wave = np.sin(np.linspace(0, 2 * np.pi, 12)).astype(np.float32) * 1.5
    for i, label in enumerate(labels):
        at = rng.integers(5, 60)
        values[i, at:at + 12, 0] += wave if label else -wave
    days = np.tile(np.arange(length, dtype=np.float32), (n, 1))
    return SeriesSet(values, days, np.full(n, length), labels, ("down-up", "up-down"), ("x",),
                     np.arange(n).astype(str), float(length), "shapes", time_unit="step")


def test_the_shapelet_front_end_learns_a_shape_the_lstm_alone_cannot_carry():
    fit, validation, test = _shapes(24, 0), _shapes(12, 1), _shapes(100, 2)
    accuracy = {}
    for shapelets in (32, 0):
        config = TrainConfig(alpha=1.0, shapelets=shapelets, hidden_size=32, max_epochs=40,
                             warmup_epochs=20, progress=False)
        accuracy[shapelets] = predict(train(fit, config, validation).model, test).accuracy
    assert accuracy[32] >= 0.9
    assert accuracy[0] < 0.75   # the LSTM alone: chance (0.49 here)


def test_jitter_adds_noise_in_each_bands_units_to_training_inputs_only(monkeypatch):
    """--jitter S adds Gaussian noise of S band standard deviations to what the model trains
    on; what it is validated on stays as measured."""
    from dataclasses import replace

    from eowatch.models.network import EarlyClassifier
    from eowatch.models.training import band_statistics, split_validation

    data = ParcelSimulator(64, seed=5).series()
    forward = EarlyClassifier.forward
    seen: list[tuple[bool, torch.Tensor]] = []

    def recording(model, x, days):
        seen.append((model.training, x.detach().clone()))
        return forward(model, x, days)

    monkeypatch.setattr(EarlyClassifier, "forward", recording)
    config = TrainConfig(max_epochs=1, warmup_epochs=0, hidden_size=8, progress=False,
                         batch_size=64)
    runs = {}
    for jitter in (0.0, 0.1):
        seen.clear()
        train(data, replace(config, jitter=jitter))
        runs[jitter] = seen.copy()
    (trained, clean), (_, noisy) = runs[0.0][0], runs[0.1][0]
    assert trained   # the first forward is the first training batch, the same series in both
    valid = ~torch.isnan(clean)
    fit, validation = split_validation(data, config.validation_fraction, config.seed)
    _, std = band_statistics(fit)
    ratio = (noisy - clean).nan_to_num().pow(2).sum((0, 1)).div(valid.sum((0, 1))).sqrt() / std
    assert torch.allclose(ratio, torch.full_like(ratio, 0.1), rtol=0.15)
    # validation reads the measured values, with jitter or without
    validated = [x for training, x in runs[0.1] if not training]
    assert validated and torch.equal(validated[0].nan_to_num(), torch.as_tensor(
        validation.values).nan_to_num())


def test_cli_train_defaults_are_the_training_defaults():
    # the CLI states its defaults as literals so that parsing never imports torch: this keeps
    # the two in step
    from eowatch.cli import build_parser

    args = build_parser().parse_args(["train", "data.parquet", "--out", "model.pt"])
    defaults = TrainConfig()
    for flag, field in (("alpha", "alpha"), ("epsilon", "epsilon"), ("hidden", "hidden_size"),
                        ("layers", "num_layers"), ("dropout", "dropout"),
                        ("shapelets", "shapelets"), ("learning_rate", "learning_rate"),
                        ("weight_decay", "weight_decay"), ("jitter", "jitter"),
                        ("batch_size", "batch_size"), ("epochs", "max_epochs"),
                        ("patience", "patience"), ("warmup", "warmup_epochs"),
                        ("threshold", "stop_threshold"), ("seed", "seed"),
                        ("device", "device")):
        assert getattr(args, flag) == getattr(defaults, field), flag
