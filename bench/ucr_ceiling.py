"""How far the usual early classifier gets on the UCR sets with published values: a classifier
per prefix length, stopping at the first prefix whose top class probability reaches a threshold.

This is the family SR2-CF2 belongs to (probabilistic classifiers on prefixes, a stopping rule on
their posteriors). The threshold is chosen per target α twice: fairly, on 5-fold out-of-fold
probabilities of the training split, and as an oracle, on the test split itself, which no honest
selection can do: the oracle's score is an upper bound for that classifier with that rule, and
tells whether a published score is within reach of the family or not.

Prefixes every 1/24 of the series (every step on ItalyPowerDemand's 24). Score = α·accuracy +
(1 − α)·(1 − earliness), earliness the fraction of the series read.

Usage: python bench/ucr_ceiling.py [--sets GunPoint,ItalyPowerDemand]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from common import print_table
from eowatch.models.datasets.ucr import read_ucr
from ucr import ALPHAS, PUBLISHED, best_published, published_score

CLASSIFIERS = {
    "logistic regression": LogisticRegression(max_iter=3000),
    "random forest": RandomForestClassifier(200, random_state=0, n_jobs=-1),
    "Gaussian process": GaussianProcessClassifier(random_state=0),
}
THRESHOLDS = np.linspace(0.5, 1.0, 51)


def prefix_probabilities(classifier, train, test, prefixes) -> tuple[np.ndarray, np.ndarray]:
    """[series, prefixes, classes] probabilities: out-of-fold on ``train``, fitted on all of
    ``train`` for ``test``."""
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    oof, held = [], []
    for k in prefixes:
        x_train = train.values[:, :k].reshape(len(train), -1)
        x_test = test.values[:, :k].reshape(len(test), -1)
        oof.append(cross_val_predict(clone(classifier), x_train, train.labels, cv=folds,
                                     method="predict_proba"))
        held.append(clone(classifier).fit(x_train, train.labels).predict_proba(x_test))
    return np.stack(oof, 1), np.stack(held, 1)


def stop_at(probabilities: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the first prefix whose top probability reaches ``threshold``, else the last."""
    fires = probabilities.max(2) >= threshold
    fires[:, -1] = True
    return fires.argmax(1)


def outcome(probabilities, labels, fractions, threshold, alpha) -> tuple[float, float, float]:
    """(accuracy, earliness, score) of the rule at ``threshold``."""
    stop = stop_at(probabilities, threshold)
    predicted = probabilities[np.arange(len(labels)), stop].argmax(1)
    accuracy = float((predicted == labels).mean())
    earliness = float(fractions[stop].mean())
    return accuracy, earliness, published_score(accuracy, earliness, alpha)


def best_threshold(probabilities, labels, fractions, alpha) -> float:
    return max(THRESHOLDS, key=lambda t: outcome(probabilities, labels, fractions, t, alpha)[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default=",".join(PUBLISHED))
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning)
    start = time.perf_counter()
    rows, reached = [], {"fair": 0, "oracle": 0}
    for name in args.sets.split(","):
        train = read_ucr(name, "train")
        test = read_ucr(name, "test", class_names=train.class_names)
        length = train.max_length
        prefixes = np.unique(np.linspace(1, length, min(length, 24)).round().astype(int))
        fractions = prefixes / length
        best_rows: dict[float, list[float]] = {}  # α -> best fair, best oracle, published
        for label, classifier in CLASSIFIERS.items():
            oof, held = prefix_probabilities(classifier, train, test, prefixes)
            for alpha in ALPHAS:
                published = best_published(name, alpha)
                fair = outcome(held, test.labels, fractions,
                               best_threshold(oof, train.labels, fractions, alpha), alpha)
                oracle = outcome(held, test.labels, fractions,
                                 best_threshold(held, test.labels, fractions, alpha), alpha)
                rows.append([name, alpha, label, *fair, *oracle, published])
                best = best_rows.setdefault(alpha, [0.0, 0.0, published])
                best[0], best[1] = max(best[0], fair[2]), max(best[1], oracle[2])
        for fair_score, oracle_score, published in best_rows.values():
            reached["fair"] += fair_score >= published
            reached["oracle"] += oracle_score >= published
    print(f"Prefix classifiers with a confidence threshold, test splits; "
          f"{time.perf_counter() - start:.0f} s")
    print_table(["dataset", "α", "classifier", "accuracy", "earliness", "score (τ on train)",
                 "accuracy", "earliness", "score (τ on test: oracle)", "best published"], rows)
    print(f"\nbest published score reached by one of the classifiers: {reached['fair']} of "
          f"{len(rows) // len(CLASSIFIERS)} rows with the threshold chosen on the training "
          f"split, {reached['oracle']} with the oracle's")


if __name__ == "__main__":
    main()
