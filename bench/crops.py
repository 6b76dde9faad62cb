"""Early crop classification on real MODIS samples from Mato Grosso, 5-fold, beside random forests.

Data: ../shared/data/matogrosso_mod13q1_7classes_1837.parquet (or --data), 23 dates per sample.
For each loss α: accuracy, kappa, macro-F1 and the mean fraction of the season observed at the
decision, mean ± std over folds; in the same folds, a random forest on the first k dates.
Folds are stratified at random (as published) and grouped by location (samples sharing a
location never straddle train and test). Usage: python bench/crops.py [--alphas 0.5,0.7,0.9]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from common import print_table
from eowatch.models.datasets.longformat import read_long_format
from eowatch.models.metrics import predict
from eowatch.models.training import TrainConfig, split_validation, train

SHARED = Path(__file__).resolve().parents[2] / "shared"
DEFAULT_DATA = SHARED / "data" / "matogrosso_mod13q1_7classes_1837.parquet"
RF_DATES = (4, 8, 12, 16, 23)


def folds(data, grouped: bool, seed: int = 0):
    if grouped:
        splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
        return list(splitter.split(data.labels, data.labels, data.groups))
    return list(StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
                .split(data.labels, data.labels))


def random_forest(data, train_idx, test_idx, dates: int, seed: int) -> float:
    features = data.values[:, :dates].reshape(len(data), -1)
    forest = RandomForestClassifier(n_estimators=300, random_state=seed, n_jobs=1)
    forest.fit(features[train_idx], data.labels[train_idx])
    return float((forest.predict(features[test_idx]) == data.labels[test_idx]).mean())


def mean_std(values) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--alphas", default="0.5,0.7,0.9", help="loss α values")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--schemes", default="random,grouped")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = read_long_format(args.data)
    alphas = [float(a) for a in args.alphas.split(",")]
    start = time.perf_counter()
    print(f"{data.name}: {len(data)} samples, {len(data.class_names)} classes, "
          f"{data.max_length} dates, bands {', '.join(data.band_names)}\n")
    for scheme in args.schemes.split(","):
        splits = folds(data, grouped=scheme == "grouped")
        rows, forest_rows = [], []
        for alpha in alphas:
            metrics: dict[str, list[float]] = {k: [] for k in
                                               ("acc", "kappa", "f1", "earl", "season")}
            for fold, (train_idx, test_idx) in enumerate(splits):
                fit, validation = split_validation(data.subset(train_idx), 0.15, fold)
                config = TrainConfig(alpha=alpha, max_epochs=args.epochs, patience=25,
                                     seed=fold, progress=False)
                model = train(fit, config, validation).model
                p = predict(model, data.subset(test_idx))
                for key, value in (("acc", p.accuracy), ("kappa", p.kappa), ("f1", p.macro_f1),
                                   ("earl", p.earliness), ("season", p.season_fraction)):
                    metrics[key].append(value)
            rows.append([alpha, mean_std(metrics["acc"]), mean_std(metrics["kappa"]),
                         mean_std(metrics["f1"]), mean_std(metrics["earl"]),
                         mean_std(metrics["season"])])
            print(f"  [{scheme}] α={alpha} done after {time.perf_counter() - start:.0f} s",
                  flush=True)
        for dates in RF_DATES:
            accuracy = [random_forest(data, tr, te, dates, seed=i)
                        for i, (tr, te) in enumerate(splits)]
            forest_rows.append([dates, f"{dates / data.max_length:.2f}", mean_std(accuracy)])
        print(f"\n{scheme} 5-fold: ELECTS LSTM, deterministic stop (δ ≥ 0.5)")
        print_table(["loss α", "accuracy", "kappa", "macro-F1", "observed at decision",
                     "season elapsed"], rows)
        print(f"\n{scheme} 5-fold: random forest (300 trees) on the first k dates")
        print_table(["k dates", "of season", "accuracy"], forest_rows)
        print()
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
