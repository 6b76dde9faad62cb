"""Shared helpers of the benchmark scripts: model selection and table printing."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from eowatch.models.datasets.base import SeriesSet
from eowatch.models.metrics import Predictions, predict, score
from eowatch.models.training import TrainConfig, split_validation, train


@dataclass(frozen=True)
class Candidate:
    loss_alpha: float
    seed: int
    validation: Predictions
    test: Predictions


def train_candidates(train_set: SeriesSet, test_set: SeriesSet, config: TrainConfig,
                     loss_alphas: Sequence[float], seeds: Sequence[int]) -> list[Candidate]:
    """One model per (loss α, seed); each keeps its validation and test predictions.

    The loss's α and the score's α are not the same knob: the loss weighs the negative
    log-likelihood, the score weighs accuracy. So α of the loss is a hyper-parameter, chosen
    per target score on the validation split only.
    """
    candidates = []
    for seed in seeds:
        fit, validation = split_validation(train_set, config.validation_fraction, seed)
        for alpha in loss_alphas:
            result = train(fit, replace(config, alpha=alpha, seed=seed), validation)
            candidates.append(Candidate(alpha, seed, predict(result.model, validation,
                                                             config.stop_threshold),
                                        predict(result.model, test_set, config.stop_threshold)))
            print(f"  {train_set.name}: trained loss α={alpha} seed={seed}: validation acc "
                  f"{candidates[-1].validation.accuracy:.3f} earliness "
                  f"{candidates[-1].validation.earliness:.3f}", file=sys.stderr, flush=True)
    return candidates


def select(candidates: Sequence[Candidate], target_alpha: float) -> tuple[float, list[Candidate]]:
    """The loss α whose models score best at the target α on validation, on average over the
    seeds (each seed splits its own validation set, so the mean is less of a coin toss on a
    small set), and those models."""
    by_alpha: dict[float, list[Candidate]] = {}
    for candidate in candidates:
        by_alpha.setdefault(candidate.loss_alpha, []).append(candidate)
    chosen = max(by_alpha, key=lambda a: sum(score(c.validation, target_alpha)
                                             for c in by_alpha[a]) / len(by_alpha[a]))
    return chosen, by_alpha[chosen]


def print_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(h) for h in header]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, row in enumerate(cells):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _fmt(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)
