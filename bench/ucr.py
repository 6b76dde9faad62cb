"""Early classification on UCR GunPoint and ItalyPowerDemand, beside the published table.

For each target α the model is chosen on a validation split of the training set (never on the
test set) among models trained with several loss α and seeds; the test split is then scored.
Published values (accuracy / earliness as fraction observed) from the ELECTS paper's table.
Usage: python bench/ucr.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch

from common import print_table, select, train_candidates
from eowatch.models.datasets.ucr import read_ucr
from eowatch.models.training import TrainConfig

ALPHAS = (0.6, 0.7, 0.8, 0.9)
PUBLISHED = {  # dataset -> method -> [(accuracy, earliness)] for α = .6, .7, .8, .9
    "GunPoint": {"ELECTS v1": [(.69, .23), (.82, .38), (.90, .49), (.93, .72)],
                 "SR2-CF2": [(.88, .25), (.94, .25), (.93, .25), (.93, .25)]},
    "ItalyPowerDemand": {"ELECTS v1": [(.60, .16), (.65, .29), (.86, .77), (.87, .89)],
                         "SR2-CF2": [(.72, .07), (.82, .23), (.87, .32), (.90, .37)]},
}
CONFIGS = {  # small data: many small batches
    "GunPoint": TrainConfig(batch_size=8, max_epochs=400, patience=100, learning_rate=3e-3,
                            validation_fraction=0.25, progress=False),
    "ItalyPowerDemand": TrainConfig(batch_size=8, max_epochs=300, patience=80,
                                    learning_rate=2e-3, validation_fraction=0.25, progress=False),
}


def published_score(acc: float, earliness: float, alpha: float) -> float:
    return alpha * acc + (1 - alpha) * (1 - earliness)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, fewer loss α")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is fastest for these tiny models)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    loss_alphas = (0.3, 0.6, 0.9) if args.quick else (0.2, 0.4, 0.6, 0.8, 0.9, 1.0)
    seeds = (0,) if args.quick else (0, 1)
    rows, start = [], time.perf_counter()
    for name, config in CONFIGS.items():
        train_set, test_set = read_ucr(name, "train"), read_ucr(name, "test")
        candidates = train_candidates(train_set, test_set, config, loss_alphas, seeds)
        for i, alpha in enumerate(ALPHAS):
            chosen = select(candidates, alpha)
            test = chosen.test
            ours = published_score(test.accuracy, test.earliness, alpha)
            best = max(published_score(*PUBLISHED[name][m][i], alpha) for m in PUBLISHED[name])
            elects, sr2 = PUBLISHED[name]["ELECTS v1"][i], PUBLISHED[name]["SR2-CF2"][i]
            rows.append([name, alpha, chosen.loss_alpha, test.accuracy, test.earliness, ours,
                         f"{elects[0]:.2f}/{elects[1]:.2f}", f"{sr2[0]:.2f}/{sr2[1]:.2f}", best,
                         "yes" if ours >= best else "no"])
    print(f"UCR early classification, test splits, deterministic stop (δ ≥ 0.5); "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["dataset", "α", "loss α", "accuracy", "earliness", "score", "ELECTS v1 acc/earl",
                 "SR2-CF2 acc/earl", "best published score", "≥ best"], rows)


if __name__ == "__main__":
    main()
