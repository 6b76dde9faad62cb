"""Training with the earliness-reward loss, validation-based early stopping and a progress bar."""

from __future__ import annotations

import copy
import logging
import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .datasets.base import SeriesSet
from .loss import earliness_reward_loss, every_step_cross_entropy
from .metrics import Predictions, predict, score
from .network import Architecture, EarlyClassifier, shapelet_sizes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    alpha: float = 0.8
    epsilon: float = 10.0
    hidden_size: int = 64
    num_layers: int = 2
    # between the LSTM's layers and before the heads; 0.4 rather than 0.2 puts the late crop
    # models above a random forest on the dates they read (decision 0016)
    dropout: float = 0.4
    # shapelet convolutions per width (0: the LSTM alone), widths as fractions of the longest
    # training series (decision 0015)
    shapelets: int = 32
    shapelet_widths: tuple[float, ...] = (0.1, 0.2, 0.3, 0.4)
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    # standard deviation of Gaussian noise added to the training inputs, in each band's own
    # standard deviations: a small set is then not learnt by heart (0: none)
    jitter: float = 0.0
    # 0: by the training set's size (auto_batch_size): 64 series a batch starves a small set
    # of optimizer steps, which then never learns or learns only to stop at once
    batch_size: int = 0
    max_epochs: int = 400
    # epochs without a better validation score; 0: PATIENCE_EPOCHS, and at least
    # PATIENCE_STEPS optimizer steps (a small set's epoch is a few steps)
    patience: int = 0
    # epochs that train the classifier alone (cross-entropy at every step) before the
    # earliness reward counts: a stopping head that learns before the classifier has learnt
    # anything can only learn to stop at once; model choice and patience start after them
    warmup_epochs: int = 20
    # the α of the score that chooses the epoch (default the loss's): `eowatch tune` searches
    # the loss's α and keeps the user's for the choice
    score_alpha: float | None = None
    validation_fraction: float = 0.2
    stop_threshold: float = 0.5
    seed: int = 0
    device: str = "cpu"
    progress: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: EarlyClassifier
    best_epoch: int
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)
    validation: Predictions | None = None


PATIENCE_EPOCHS, PATIENCE_STEPS = 30, 300


def auto_batch_size(n_series: int) -> int:
    """At least eight optimizer steps an epoch, 8 to 64 series a batch."""
    return min(64, max(8, n_series // 8))


def resolved(config: TrainConfig, n_series: int) -> TrainConfig:
    """``config`` with the batch size and the patience it trains with on ``n_series``
    series."""
    batch = config.batch_size if config.batch_size > 0 else auto_batch_size(n_series)
    patience = config.patience
    if patience <= 0:
        steps_per_epoch = -(-n_series // batch)
        patience = max(PATIENCE_EPOCHS, -(-PATIENCE_STEPS // steps_per_epoch))
    return replace(config, batch_size=batch, patience=patience)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def band_statistics(data: SeriesSet) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-band mean and std over valid observations: [bands], [bands]."""
    valid = np.arange(data.max_length)[None, :] < data.lengths[:, None]
    observed = data.values[valid]
    return torch.tensor(observed.mean(0)), torch.tensor(observed.std(0))


def split_validation(data: SeriesSet, fraction: float, seed: int) -> tuple[SeriesSet, SeriesSet]:
    """Stratified split into (train, validation)."""
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for label in np.unique(data.labels):
        idx = rng.permutation(np.flatnonzero(data.labels == label))
        val.extend(idx[: max(1, round(len(idx) * fraction))] if len(idx) > 1 else [])
    val_mask = np.zeros(len(data), bool)
    val_mask[val] = True
    return data.subset(np.flatnonzero(~val_mask)), data.subset(np.flatnonzero(val_mask))


def to_tensors(data: SeriesSet, device: str) -> tuple[torch.Tensor, ...]:
    return (torch.as_tensor(data.values, device=device), torch.as_tensor(data.days, device=device),
            torch.as_tensor(data.lengths, device=device),
            torch.as_tensor(data.labels, device=device))


def train(data: SeriesSet, config: TrainConfig, validation: SeriesSet | None = None) -> TrainResult:
    """Train an EarlyClassifier; keep the weights of the best validation score.

    The score is α·accuracy + (1 − α)·(1 − earliness) under the deterministic stopping rule,
    the quantity the loss trades off.
    """
    seed_everything(config.seed)
    if validation is None:
        data, validation = split_validation(data, config.validation_fraction, config.seed)
    config = resolved(config, len(data))
    mean, std = band_statistics(data)
    arch = Architecture(n_bands=len(data.band_names), n_classes=len(data.class_names),
                        hidden_size=config.hidden_size, num_layers=config.num_layers,
                        dropout=config.dropout, shapelets_per_size=config.shapelets,
                        shapelet_sizes=shapelet_sizes(data.max_length, config.shapelet_widths)
                        if config.shapelets else ())
    model = EarlyClassifier(arch, mean, std, data.season_length_days).to(config.device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate,
                                  weight_decay=config.weight_decay)
    x, days, lengths, labels = to_tensors(data, config.device)
    generator = torch.Generator().manual_seed(config.seed)
    best = TrainResult(model=copy.deepcopy(model), best_epoch=-1, best_score=-np.inf)
    # log lines go above the bar, not into it
    with logging_redirect_tqdm(), tqdm(total=config.max_epochs, desc="train", unit="epoch",
                                       disable=not config.progress) as bar:
        for epoch in range(config.max_epochs):
            if _epoch(model, optimizer, x, days, lengths, labels, generator, config, validation,
                      best, epoch, bar):
                # an early stop ends the bar at what was done, not stuck part of the way
                bar.total = epoch + 1
                bar.refresh()
                log.info("early stop at epoch %d: no better validation score since epoch %d",
                         epoch, best.best_epoch)
                break
    best.model.eval()
    return best


def _epoch(model: EarlyClassifier, optimizer: torch.optim.Optimizer, x: torch.Tensor,
           days: torch.Tensor, lengths: torch.Tensor, labels: torch.Tensor,
           generator: torch.Generator, config: TrainConfig, validation: SeriesSet,
           best: TrainResult, epoch: int, bar: Any) -> bool:
    """One epoch of training and its validation; True when training should stop early."""
    model.train()
    total = 0.0
    order = torch.randperm(len(x), generator=generator).to(config.device)
    for batch in order.split(config.batch_size):
        steps = int(lengths[batch].max())
        inputs = x[batch, :steps]
        if config.jitter:
            noise = torch.randn(inputs.shape, generator=generator).to(config.device)
            inputs = inputs + config.jitter * model.band_std * noise
        log_probs, p_stop = model(inputs, days[batch, :steps])
        if epoch < config.warmup_epochs:
            loss = every_step_cross_entropy(log_probs, labels[batch], lengths[batch])
        else:
            loss = earliness_reward_loss(log_probs, p_stop, labels[batch], lengths[batch],
                                         config.alpha, config.epsilon).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        total += float(loss.detach()) * len(batch)
    predictions = predict(model, validation, config.stop_threshold, config.device)
    val_score = score(predictions, config.alpha if config.score_alpha is None
                      else config.score_alpha)
    best.history.append({"epoch": epoch, "loss": total / len(x), "val_score": val_score,
                         "val_accuracy": predictions.accuracy,
                         "val_earliness": predictions.earliness})
    if epoch >= config.warmup_epochs and val_score > best.best_score:
        best.model, best.best_epoch, best.best_score = copy.deepcopy(model), epoch, val_score
        best.validation = predictions
    bar.update(1)
    bar.set_postfix(loss=f"{total / len(x):.3f}", val_acc=f"{predictions.accuracy:.3f}",
                    val_earl=f"{predictions.earliness:.2f}", best=f"{best.best_score:.3f}")
    # patience counts from the end of the warm-up
    return epoch - max(best.best_epoch, config.warmup_epochs - 1) >= config.patience


def nearest_neighbour_accuracy(train: SeriesSet, test: SeriesSet) -> float:
    """Accuracy on ``test`` of a 1-nearest-neighbour (Euclidean) reading whole series,
    normalised by ``train``'s band statistics; padding reads as the mean."""
    from sklearn.neighbors import KNeighborsClassifier

    mean, std = (t.cpu().numpy() for t in band_statistics(train))

    def flat(series: SeriesSet) -> np.ndarray:
        values = (series.values - mean) / np.where(std > 0, std, 1.0)
        return np.nan_to_num(values, nan=0.0).reshape(len(series.labels), -1)

    train_x, test_x = flat(train), flat(test)
    width = max(train_x.shape[1], test_x.shape[1])
    train_x = np.pad(train_x, ((0, 0), (0, width - train_x.shape[1])))
    test_x = np.pad(test_x, ((0, 0), (0, width - test_x.shape[1])))
    knn = KNeighborsClassifier(1).fit(train_x, train.labels)
    return float((knn.predict(test_x) == test.labels).mean())


@dataclass(frozen=True)
class TrainingCheck:
    """How the chosen model compares on the validation split, and what is wrong with it."""

    accuracy: float              # the model's, under its stopping rule
    majority: float              # always answering the most frequent class
    nearest_neighbour: float     # 1-NN on the whole, normalised series
    problems: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"val_accuracy": self.accuracy, "majority_accuracy": self.majority,
                "nearest_neighbour_accuracy": self.nearest_neighbour,
                "problems": list(self.problems)}


# below the full-series 1-NN by more than this much accuracy, an early model is called weak:
# reading less of the season costs some accuracy, not this much
BASELINE_MARGIN = 0.25


def check_training(result: TrainResult, data: SeriesSet, validation: SeriesSet,
                   config: TrainConfig) -> TrainingCheck:
    """Compare the chosen model with two baselines and look for the marks of a training that
    failed: no better than the majority class, far below a full-series nearest neighbour, the
    best epoch the first, or stopped by the epoch limit while still improving."""
    accuracy = result.validation.accuracy if result.validation else 0.0
    majority = float(np.bincount(validation.labels).max() / len(validation.labels))
    neighbour = nearest_neighbour_accuracy(data, validation)
    problems = []
    if accuracy <= majority:
        problems.append(f"validation accuracy {accuracy:.3f} is no better than always "
                        f"answering the most frequent class ({majority:.3f})")
    if accuracy < neighbour - BASELINE_MARGIN:
        problems.append(f"validation accuracy {accuracy:.3f} is far below a nearest neighbour "
                        f"reading whole series ({neighbour:.3f})")
    if config.warmup_epochs and result.best_epoch < config.warmup_epochs:
        problems.append(f"no epoch after the {config.warmup_epochs} warm-up epochs was chosen: "
                        "the earliness training never ran; raise --epochs")
    elif result.best_epoch <= 0:
        problems.append("the best epoch is the first: the model kept its initial weights")
    epochs = len(result.history)
    if epochs >= config.max_epochs and result.best_epoch == epochs - 1:
        problems.append(f"training stopped at the epoch limit ({config.max_epochs}) while the "
                        "validation score still improved (the last epoch was the best): "
                        "raise --epochs")
    return TrainingCheck(accuracy, majority, neighbour, tuple(problems))
