"""Early crop classification on real MODIS samples from Mato Grosso, 5-fold, beside random forests.

Data: ../shared/data/matogrosso_mod13q1_7classes_1837.parquet (or --data), 23 dates per sample.
For each loss α: accuracy, kappa, macro-F1 and the mean fraction of the season observed at the
decision, mean ± std over folds; in the same folds, a random forest on the first k dates.
Folds are stratified at random (as published) and grouped by location (samples sharing a
location never straddle train and test). With --plot, one figure of the accuracy-versus-
earliness frontier: each ELECTS model read at several stopping thresholds (the frontier it
offers) against the random forest's fixed-date curve, per fold scheme.
Usage: python bench/crops.py [--alphas 0.2,0.35,0.5,0.7,0.9] [--plot frontier.png]
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
RF_DATES = (4, 6, 8, 10, 12, 14, 16, 23)
# the stopping rule's, read on each model: every 0.05 from 0.1 to 0.95
THRESHOLDS = tuple(round(0.1 + 0.05 * i, 2) for i in range(18))


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
    parser.add_argument("--alphas", default="0.2,0.35,0.5,0.7,0.9", help="loss α values")
    parser.add_argument("--epochs", type=int, default=120)
    parser.add_argument("--hidden", type=int, default=64, help="LSTM hidden size")
    parser.add_argument("--warmup", type=int, default=TrainConfig.warmup_epochs,
                        help="epochs of the classifier alone before the earliness reward")
    parser.add_argument("--shapelets", type=int, default=TrainConfig.shapelets,
                        help="shapelet convolutions per width (0: the LSTM alone)")
    parser.add_argument("--dropout", type=float, default=TrainConfig.dropout,
                        help="dropout between the LSTM's layers and before the heads")
    parser.add_argument("--jitter", type=float, default=TrainConfig.jitter,
                        help="Gaussian noise on the training inputs, in band standard deviations")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--schemes", default="random,grouped")
    parser.add_argument("--plot", type=Path, help="write the frontier figure (PNG) here")
    args = parser.parse_args()
    frontier: dict[str, dict] = {}
    torch.set_num_threads(args.threads)
    data = read_long_format(args.data)
    alphas = [float(a) for a in args.alphas.split(",")]
    start = time.perf_counter()
    print(f"{data.name}: {len(data)} samples, {len(data.class_names)} classes, "
          f"{data.max_length} dates, bands {', '.join(data.band_names)}\n")
    for scheme in args.schemes.split(","):
        splits = folds(data, grouped=scheme == "grouped")
        rows, forest_rows = [], []
        points: dict[tuple[float, float], list[tuple[float, float]]] = {}
        for alpha in alphas:
            metrics: dict[str, list[float]] = {k: [] for k in
                                               ("acc", "kappa", "f1", "earl", "season")}
            epochs = []   # (best epoch, epochs run) per fold: did any stop at the limit?
            for fold, (train_idx, test_idx) in enumerate(splits):
                fit, validation = split_validation(data.subset(train_idx), 0.15, fold)
                config = TrainConfig(alpha=alpha, max_epochs=args.epochs, patience=25,
                                     hidden_size=args.hidden, warmup_epochs=args.warmup,
                                     shapelets=args.shapelets, jitter=args.jitter,
                                     dropout=args.dropout, seed=fold,
                                     progress=False)
                result = train(fit, config, validation)
                model = result.model
                epochs.append(f"{result.best_epoch}/{len(result.history)}")
                p = predict(model, data.subset(test_idx))
                for threshold in THRESHOLDS:
                    q = predict(model, data.subset(test_idx), threshold)
                    # the forest's axis: the share of the dates read before deciding
                    points.setdefault((alpha, threshold), []).append((q.earliness, q.accuracy))
                for key, value in (("acc", p.accuracy), ("kappa", p.kappa), ("f1", p.macro_f1),
                                   ("earl", p.earliness), ("season", p.season_fraction)):
                    metrics[key].append(value)
            rows.append([alpha, mean_std(metrics["acc"]), mean_std(metrics["kappa"]),
                         mean_std(metrics["f1"]), mean_std(metrics["earl"]),
                         mean_std(metrics["season"]), " ".join(epochs)])
            print(f"  [{scheme}] α={alpha} done after {time.perf_counter() - start:.0f} s",
                  flush=True)
        forest = []
        for dates in RF_DATES:
            accuracy = [random_forest(data, tr, te, dates, seed=i)
                        for i, (tr, te) in enumerate(splits)]
            forest_rows.append([dates, f"{dates / data.max_length:.2f}", mean_std(accuracy)])
            forest.append((dates / data.max_length, float(np.mean(accuracy))))
        frontier[scheme] = {"elects": points, "forest": forest}
        print(f"\n{scheme} 5-fold: ELECTS LSTM, deterministic stop (δ ≥ 0.5)")
        print_table(["loss α", "accuracy", "kappa", "macro-F1", "observed at decision",
                     "season elapsed", "best/run epochs per fold"], rows)
        print(f"\n{scheme} 5-fold: random forest (300 trees) on the first k dates")
        print_table(["k dates", "of season", "accuracy"], forest_rows)
        print()
    for scheme, found in frontier.items():
        print(f"{scheme} frontier: {compare_frontiers(found)}")
    print(f"total {time.perf_counter() - start:.0f} s")
    if args.plot:
        print(f"frontier: {plot_frontier(frontier, args.plot)}")


def upper_envelope(points: dict) -> list[tuple[float, float]]:
    """The (share of the dates read, accuracy) points, each the mean over the folds, that no
    point reading less beats: the frontier ELECTS offers."""
    every = sorted(tuple(np.mean(pts, axis=0)) for pts in points.values())
    best, upper = -1.0, []
    for x, y in every:
        if y > best:
            best = y
            upper.append((float(x), float(y)))
    return upper


def compare_frontiers(found: dict, start: float = 0.30, end: float = 0.70) -> str:
    """ELECTS's frontier against the forest's curve, both joined linearly as plotted (mixing
    two models parcel by parcel reaches any point between them), at every 1 % of the dates read
    from ``start`` to ``end``: the smallest margin and where."""
    upper = upper_envelope(found["elects"])
    grid = np.linspace(start, end, round((end - start) * 100) + 1)
    ours = np.interp(grid, *zip(*upper, strict=True))
    ours[grid < upper[0][0]] = 0.0      # no model decides that early
    forest = np.interp(grid, *zip(*found["forest"], strict=True))
    margin = ours - forest
    worst = int(np.argmin(margin))
    verdict = "above" if margin.min() > 0 else "NOT above"
    every_tenth = ", ".join(f"{g:.0%} {m:+.3f}" for g, m in zip(grid, margin, strict=True)
                            if round(g * 100) % 10 == 0)
    return (f"{verdict} the forest at every 1 % from {start:.0%} to {end:.0%}; smallest "
            f"margin {margin[worst]:+.3f} at {grid[worst]:.0%} ({ours[worst]:.3f} against "
            f"{forest[worst]:.3f}); margins at {every_tenth}")


def plot_frontier(frontier: dict[str, dict], path: Path) -> Path:
    """Accuracy against the fraction of the season observed at the decision: each (α,
    threshold) of ELECTS as its mean over the folds, their upper envelope, and the forest."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(frontier), figsize=(5.2 * len(frontier), 4.2),
                             squeeze=False)
    for ax, (scheme, found) in zip(axes[0], frontier.items(), strict=True):
        every = np.array([np.mean(pts, axis=0) for pts in found["elects"].values()])
        ax.scatter(every[:, 0], every[:, 1], s=14, alpha=0.6, color="tab:blue",
                   label="ELECTS (each α and threshold, mean of folds)")
        upper = upper_envelope(found["elects"])
        ax.plot(*zip(*upper, strict=True), color="tab:blue", lw=2, label="ELECTS frontier")
        fx, fy = zip(*found["forest"], strict=True)
        ax.plot(fx, fy, "s--", color="tab:orange", label="random forest on the first k dates")
        ax.set_title(f"Mato Grosso, {scheme} 5-fold")
        ax.set_xlabel("fraction of the season observed at the decision")
        ax.set_ylabel("accuracy")
        ax.set_xlim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
