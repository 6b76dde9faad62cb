"""The `eowatch train`, `eowatch tune` and `eowatch evaluate` commands."""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING

from eowatch.seasons import SeasonStartError, check_season_start
from eowatch.settings import comma_list

from .datasets import SeriesSet, load_dataset

if TYPE_CHECKING:
    from .training import TrainConfig

log = logging.getLogger(__name__)

DATA_HELP = ("dataset: a long-format .parquet/.csv/.csv.gz file, a UCR .ts/.txt file, "
             "ucr:NAME[:SPLIT], "
             "simulated:N[:SEED] or breizhcrops:ROOT:REGION[:YEAR[:LEVEL]]")


def add_commands(commands: argparse._SubParsersAction) -> None:
    p = commands.add_parser("train", help="train an early-classification model",
                            description="Train an ELECTS model and write its artifact.")
    p.add_argument("--validation", help="validation dataset (default: a stratified split)")
    p.add_argument("--alpha", type=float, default=0.8,
                   help="weight of accuracy against earliness in the loss (default 0.8)")
    p.add_argument("--epochs", type=int, default=400, help="maximum epochs (default 400)")
    p.add_argument("--warmup", type=int, default=20,
                   help="epochs that train the classifier alone before the earliness reward "
                   "counts (default 20)")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--learning-rate", type=float, default=3e-3)
    p.add_argument("--hidden", type=int, default=64, help="LSTM hidden size")
    p.add_argument("--layers", type=int, default=2, help="LSTM layers")
    p.add_argument("--dropout", type=float, default=0.4,
                   help="dropout between the LSTM's layers and before the heads (default 0.4)")
    p.add_argument("--shapelets", type=int, default=32,
                   help="shapelet convolutions per width, widths a tenth to four tenths of the "
                   "longest series, beside the LSTM (default 32; 0: the LSTM alone)")
    p.add_argument("--jitter", type=float, default=0.0,
                   help="Gaussian noise added to the training inputs, in standard deviations "
                   "of each band (default 0: none)")
    _model_arguments(p)
    p.set_defaults(handler=run_train)

    t = commands.add_parser(
        "tune", help="search the training settings, then train with the best",
        description="Search the training settings (learning rate, weight decay, hidden size, "
        "layers, dropout, shapelets, input jitter, the loss's alpha, the warm-up) with Optuna's "
        "TPE sampler, scoring each trial as alpha*accuracy + (1-alpha)*(1-earliness) over k "
        "folds; print the table of trials, then train with the best settings and write the "
        "model as `eowatch train` does.")
    t.add_argument("--trials", type=int, default=30, help="trials to run (default 30)")
    t.add_argument("--folds", type=int, default=3,
                   help="folds per trial (default 3; 1: one 80/20 split)")
    t.add_argument("--alpha", type=float, default=0.8,
                   help="weight of accuracy against earliness in the score (default 0.8)")
    t.add_argument("--epochs", type=int, default=100,
                   help="maximum epochs of each trial and of the final model (default 100)")
    _model_arguments(t)
    t.set_defaults(handler=run_tune)

    e = commands.add_parser("evaluate", help="metrics and plots of a model on a dataset",
                            description="Print accuracy, kappa, macro-F1, earliness, their "
                            "harmonic mean and per-class stop dates; write PNG plots.")
    e.add_argument("model", type=Path, help="artifact written by `eowatch train`")
    e.add_argument("data", help=DATA_HELP)
    e.add_argument("--split", default="test", help="split for ucr: datasets (default test)")
    e.add_argument("--plots", type=Path, help="folder for the PNG plots")
    e.add_argument("--threshold", type=float, help="override the model's stopping threshold")
    e.add_argument("--device", default="cpu")
    e.set_defaults(handler=run_evaluate)


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """The arguments `train` and `tune` share: the data, the output and the model's card."""
    p.add_argument("data", help=DATA_HELP)
    p.add_argument("--out", type=Path, required=True, help="artifact file to write (.pt)")
    p.add_argument("--epsilon", type=float, default=10.0, help="smoothing of P(t) (default 10)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patience", type=int, default=0,
                   help="stop after this many epochs without a better validation score "
                   "(default 0: 30 epochs, and at least 300 optimizer steps)")
    p.add_argument("--batch-size", type=int, default=0,
                   help="series per batch (default 0: an eighth of the training series, "
                   "8 to 64)")
    p.add_argument("--threshold", type=float, default=0.5,
                   help="stop when the stopping probability reaches this (default 0.5)")
    p.add_argument("--feed", default="custom", help="feed the model is for (e.g. sentinel2)")
    p.add_argument("--bands", type=comma_list,
                   help="comma-separated bands to train on, in model order (default: all)")
    p.add_argument("--season-start", type=_season_start,
                   help="season start MM-DD: the day every season starts on (default: the "
                   "data's, a long-format file's start_date); recorded in the artifact, the "
                   "daemon counts days of season from it")
    p.add_argument("--version", help="model version string (default: derived from the data)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--allow-weak", action="store_true",
                   help="write the model even when the training checks find it weak (no better "
                   "than the majority class, far below a 1-NN on whole series, best epoch the "
                   "first, or stopped at --epochs while improving)")


def _season_start(text: str) -> str:
    try:
        return str(check_season_start(text))
    except SeasonStartError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run_train(args: argparse.Namespace) -> int:
    from .training import TrainConfig

    data = load_dataset(args.data, split="train", bands=args.bands,
                        season_start=args.season_start)
    validation = None
    if args.validation:
        validation = load_dataset(args.validation, split="test", class_names=data.class_names,
                                  bands=data.band_names, season_start=args.season_start)
    config = TrainConfig(alpha=args.alpha, epsilon=args.epsilon, hidden_size=args.hidden,
                         num_layers=args.layers, dropout=args.dropout,
                         shapelets=args.shapelets, learning_rate=args.learning_rate,
                         weight_decay=args.weight_decay, jitter=args.jitter,
                         batch_size=args.batch_size, max_epochs=args.epochs,
                         patience=args.patience, warmup_epochs=args.warmup,
                         stop_threshold=args.threshold, seed=args.seed, device=args.device,
                         progress=not args.no_progress)
    return write_model(args, data, validation, config)


def run_tune(args: argparse.Namespace) -> int:
    from .training import TrainConfig
    from .tuning import trials_table, tune

    data = load_dataset(args.data, split="train", bands=args.bands,
                        season_start=args.season_start)
    base = TrainConfig(epsilon=args.epsilon, batch_size=args.batch_size,
                       max_epochs=args.epochs, patience=args.patience,
                       stop_threshold=args.threshold, seed=args.seed, device=args.device,
                       progress=not args.no_progress)
    best, trials = tune(data, args.trials, args.folds, base, args.alpha, args.seed,
                        progress=not args.no_progress)
    print(trials_table(trials))
    print("best: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                               for k, v in best.items()))
    config = replace(base, **best, score_alpha=args.alpha)
    return write_model(args, data, None, config)


def write_model(args: argparse.Namespace, data: SeriesSet, validation: SeriesSet | None,
                config: TrainConfig) -> int:
    """Train with ``config``, check the model, and write it (unless weak and not allowed)."""
    from .artifact import ModelMetadata, save_artifact
    from .calibration import fit_calibration
    from .metrics import summary
    from .training import check_training, resolved, split_validation, train

    if validation is None:
        data, validation = split_validation(data, config.validation_fraction, config.seed)
    config = resolved(config, len(data))  # the card records the batch size trained with
    result = train(data, config, validation)
    check = check_training(result, data, validation, config)
    calibration = fit_calibration(result.validation) if result.validation else {}
    if calibration:
        print(f"calibration: temperature {calibration['temperature']:.3f}, expected "
              f"calibration error on the validation split {calibration['ece_before']:.3f} -> "
              f"{calibration['ece_after']:.3f}")
    print(f"validation accuracy {check.accuracy:.3f}; majority class {check.majority:.3f}; "
          f"1-NN on whole series {check.nearest_neighbour:.3f}")
    if check.problems:
        for problem in check.problems:
            print(f"weak model: {problem}")
        if not args.allow_weak:
            print(f"{args.out} not written: tune the training (`eowatch train --help`), or "
                  "write it anyway with --allow-weak")
            return 3
    fingerprint = data.fingerprint()
    metrics = summary(result.validation, args.alpha) if result.validation else {}
    season_start = args.season_start or data.season_start
    if season_start is None:
        print("note: the data has no common season start (its samples' start_date differ, or "
              "its series have no calendar), so the model records none; the daemon will need "
              "EOWATCH_SEASON_START=MM-DD, or retrain with --season-start")
    model = result.model.cpu()
    metadata = ModelMetadata(
        version=args.version or f"{data.name}-a{config.alpha:g}-s{args.seed}-{fingerprint[:8]}",
        feed=args.feed, band_names=data.band_names, class_names=data.class_names,
        band_mean=tuple(model.band_mean.tolist()), band_std=tuple(model.band_std.tolist()),
        architecture=asdict(model.arch), alpha=config.alpha, epsilon=args.epsilon,
        stop_threshold=args.threshold, season_length_days=data.season_length_days,
        season_start=season_start, time_unit=data.time_unit,
        description=("trained on simulated data" if data.name.startswith("simulated") else ""),
        training={"data": data.name, "data_sha256": fingerprint, "samples": len(data),
                  "best_epoch": result.best_epoch, "config": config.to_dict(),
                  "checks": check.to_dict()},
        metrics={"validation": metrics}, calibration=calibration)
    path = save_artifact(args.out, model, metadata)
    print(f"wrote {path} (model {metadata.version}); validation: "
          + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from .artifact import load_artifact
    from .evaluation import evaluate, format_report

    loaded = load_artifact(args.model, args.device)
    data = load_dataset(args.data, split=args.split, class_names=loaded.metadata.class_names,
                        bands=loaded.metadata.band_names, season_start=loaded.metadata.season_start)
    result = evaluate(loaded, data, args.plots, args.threshold, args.device)
    print(f"model {loaded.metadata.version} on {data.name} ({len(data)} samples)")
    print(format_report(result, loaded.metadata.season_start, loaded.metadata.time_unit))
    return 0
