"""The classifier warm-up on UCR sets that chose no default: accuracy, earliness and score on
each set's TEST split, with and without the warm-up, for two batch sizes, mean of three seeds;
beside them a whole-series 1-NN and the majority class.

    python bench/warmup.py [--sets UnitTest,ArrowHead] [--epochs 150]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from common import print_table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eowatch.models.datasets import load_dataset  # noqa: E402
from eowatch.models.metrics import predict, score  # noqa: E402
from eowatch.models.training import (  # noqa: E402
    TrainConfig,
    nearest_neighbour_accuracy,
    train,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", default="UnitTest,ArrowHead")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--alpha", type=float, default=0.8)
    args = parser.parse_args()
    rows = []
    for name in args.sets.split(","):
        train_set = load_dataset(f"ucr:{name}:train")
        test_set = load_dataset(f"ucr:{name}:test").with_classes(train_set.class_names)
        nn = nearest_neighbour_accuracy(train_set, test_set)
        majority = np.bincount(test_set.labels).max() / len(test_set)
        for batch in (64, 8):
            for warmup in (0, 20):
                runs = []
                for seed in (0, 1, 2):
                    result = train(train_set, TrainConfig(
                        alpha=args.alpha, warmup_epochs=warmup, seed=seed, progress=False,
                        max_epochs=args.epochs, batch_size=batch))
                    p = predict(result.model, test_set)
                    runs.append((p.accuracy, p.earliness, score(p, args.alpha)))
                accuracy, earliness, scored = np.mean(runs, axis=0)
                rows.append([name, batch, warmup, f"{accuracy:.3f}", f"{earliness:.3f}",
                             f"{scored:.3f}", f"{nn:.3f}", f"{majority:.3f}"])
    print_table(["set", "batch", "warm-up", "accuracy", "earliness", "score", "1-NN",
                 "majority"], rows)


if __name__ == "__main__":
    main()
