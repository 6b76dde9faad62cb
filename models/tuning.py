"""`eowatch tune`: a search over the training settings, scored as the user scores models.

Optuna's TPE sampler proposes settings (learning rate, weight decay, hidden size, layers,
dropout, shapelets per width, input jitter, the loss's α, the classifier's warm-up); each trial
trains on k - 1 folds and scores α·accuracy + (1 − α)·(1 − earliness) on the held-out fold, α
being the user's (not the loss's, which is searched); the trial's score is the mean over folds,
and a trial whose first folds fall below the median of the trials before it is pruned. As sits'
``sits_tuning`` does for its deep models, the best settings are then retrained on the whole
data and written as `eowatch train` writes a model.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .datasets.base import SeriesSet
from .metrics import score
from .training import TrainConfig, split_validation, train

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict[str, Any]
    score: float            # mean over the folds it ran (NaN: pruned before any)
    folds: int              # folds it ran
    state: str              # complete, pruned


def suggest(trial: Any, max_epochs: int) -> dict[str, Any]:
    """One point of the search space (the warm-up at most a third of the epochs: the
    earliness training needs the rest)."""
    return {"learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
            "weight_decay": trial.suggest_float("weight_decay", 1e-6, 1e-2, log=True),
            "hidden_size": trial.suggest_categorical("hidden_size", [16, 32, 64, 128]),
            "num_layers": trial.suggest_int("num_layers", 1, 3),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "shapelets": trial.suggest_categorical("shapelets", [0, 16, 32, 64]),
            "jitter": trial.suggest_float("jitter", 0.0, 0.3),
            "alpha": trial.suggest_float("alpha", 0.2, 0.95),
            "warmup_epochs": trial.suggest_int("warmup_epochs", 0, min(30, max_epochs // 3))}


def folds_of(data: SeriesSet, k: int, seed: int) -> list[tuple[SeriesSet, SeriesSet]]:
    """(train, held out) pairs: k stratified folds (grouped by location when the data has
    groups, so that a field never sits on both sides), or one stratified split when k = 1."""
    if k <= 1:
        return [split_validation(data, 0.2, seed)]
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if data.groups is not None:
        splitter: Any = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
        parts = splitter.split(data.values[:, 0, 0], data.labels, data.groups)
    else:
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed)
        parts = splitter.split(data.values[:, 0, 0], data.labels)
    return [(data.subset(a), data.subset(b)) for a, b in parts]


def tune(data: SeriesSet, trials: int, folds: int, base: TrainConfig, score_alpha: float,
         seed: int = 0, progress: bool = True) -> tuple[dict[str, Any], list[Trial]]:
    """The best settings found in ``trials`` trials, and every trial."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    splits = folds_of(data, folds, seed)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0))

    def objective(trial: optuna.Trial) -> float:
        config = replace(base, **suggest(trial, base.max_epochs), score_alpha=score_alpha,
                         progress=False)
        scores = []
        for fold, (train_part, held_out) in enumerate(splits):
            result = train(train_part, config, held_out)
            scores.append(score(result.validation, score_alpha) if result.validation
                          else 0.0)
            trial.report(float(np.mean(scores)), fold)
            trial.set_user_attr("folds", fold + 1)
            if fold + 1 < len(splits) and trial.should_prune():
                raise optuna.TrialPruned()
        return float(np.mean(scores))

    with logging_redirect_tqdm(), tqdm(total=trials, desc="tune", unit="trial",
                                       disable=not progress) as bar:
        def advance(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
            bar.update(1)
            if study.best_trials:
                bar.set_postfix(best=f"{study.best_value:.3f}")

        study.optimize(objective, n_trials=trials, callbacks=[advance])
    found = [Trial(t.number, dict(t.params),
                   float(t.value) if t.value is not None else (
                       float(t.intermediate_values[max(t.intermediate_values)])
                       if t.intermediate_values else math.nan),
                   int(t.user_attrs.get("folds", 0)), t.state.name.lower())
             for t in study.trials]
    complete = [t for t in found if t.state == "complete"]
    if not complete:
        raise ValueError("no trial completed: raise --trials")
    return max(complete, key=lambda t: t.score).params, found


def trials_table(trials: list[Trial]) -> str:
    """The trials as a text table, best first."""
    names = list(trials[0].params) if trials else []
    header = ["trial", "score", "folds", "state", *names]
    rows = []
    for t in sorted(trials, key=lambda t: -np.nan_to_num(t.score, nan=-1.0)):
        values = [f"{t.params[n]:.3g}" if isinstance(t.params[n], float) else str(t.params[n])
                  for n in names]
        rows.append([str(t.number), f"{t.score:.4f}", str(t.folds), t.state, *values])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)
