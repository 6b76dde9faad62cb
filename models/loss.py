"""The ELECTS earliness-reward loss.

    P(t)  = δ_t ∏_{τ<t} (1 − δ_τ)          for t < L − 1
    P(L−1) = ∏_{τ<L−1} (1 − δ_τ)            the remaining mass goes to the last valid step
    P'(t) = P(t) + ε / L                     additive smoothing (paper eq. 7)
    loss  = α Σ_t P'(t) NLL_t − (1 − α) Σ_t P'(t) p̂_t(y) (1 − t / L)

with t counted from 0 and L the sequence's number of valid steps; padded steps carry no mass.

This implements the equation as written. The reference code's loop starts at t = 1, so its P(0)
is built from δ_1 and δ_0 is never used: its distribution is the equation's shifted by one step.
Here δ_t is the probability of stopping *after seeing* step t, which is also what the daemon's
stopping rule reads at step t (docs/decisions/0002-loss-without-shift.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


def valid_mask(lengths: Tensor, steps: int) -> Tensor:
    """[batch] lengths -> [batch, steps] bool, True on valid steps."""
    return torch.arange(steps, device=lengths.device)[None, :] < lengths[:, None]


def stop_distribution(p_stop: Tensor, lengths: Tensor) -> Tensor:
    """P(t): probability that the decision is made at step t.

    Args:
        p_stop: [batch, time] δ_t, 0-1.
        lengths: [batch] number of valid steps (>= 1).

    Returns:
        [batch, time]; each row sums to 1 over its valid steps, 0 on padding.
    """
    steps = p_stop.shape[1]
    mask = valid_mask(lengths, steps)
    last = F.one_hot(lengths - 1, steps).bool()
    keep = 1.0 - p_stop
    # survival before t: exclusive cumulative product of (1 - δ)
    survival = torch.cumprod(torch.cat((torch.ones_like(keep[:, :1]), keep[:, :-1]), 1), 1)
    pt = torch.where(last, survival, p_stop * survival)
    return pt * mask


@dataclass
class LossParts:
    loss: Tensor
    classification: Tensor
    earliness_reward: Tensor


def earliness_reward_loss(
    log_probs: Tensor,
    p_stop: Tensor,
    targets: Tensor,
    lengths: Tensor,
    alpha: float,
    epsilon: float = 10.0,
) -> LossParts:
    """ELECTS loss, averaged over the batch.

    Args:
        log_probs: [batch, time, classes] log class probabilities.
        p_stop: [batch, time] stopping probabilities δ_t.
        targets: [batch] class index.
        lengths: [batch] number of valid steps.
        alpha: weight of accuracy against earliness, 0-1.
        epsilon: additive smoothing of P(t), spread as ε / L over the valid steps.
    """
    steps = p_stop.shape[1]
    mask = valid_mask(lengths, steps)
    length = lengths[:, None].to(p_stop.dtype)
    pt = (stop_distribution(p_stop, lengths) + epsilon / length) * mask
    target_log_probs = log_probs.gather(2, targets[:, None, None].expand(-1, steps, 1))[..., 0]
    nll = -target_log_probs
    t = torch.arange(steps, device=p_stop.device, dtype=p_stop.dtype)[None, :]
    reward = pt * target_log_probs.exp() * (1.0 - t / length)
    classification = (pt * nll).sum(1).mean()
    earliness_reward = (reward * mask).sum(1).mean()
    loss = alpha * classification - (1.0 - alpha) * earliness_reward
    return LossParts(loss, classification, earliness_reward)


def every_step_cross_entropy(log_probs: Tensor, targets: Tensor, lengths: Tensor) -> Tensor:
    """The classifier's loss alone: the mean negative log-likelihood of the true class over
    every valid step (the warm-up before the earliness reward counts)."""
    steps = log_probs.shape[1]
    mask = valid_mask(lengths, steps).to(log_probs.dtype)
    nll = -log_probs.gather(2, targets[:, None, None].expand(-1, steps, 1))[..., 0]
    return ((nll * mask).sum(1) / mask.sum(1)).mean()
