"""When to stop: the deterministic rule the daemon uses, and the paper's sampling rule.

The reference samples stop ~ Bernoulli(δ_t) at each step. A daemon must give the same decision
when a stream is replayed, so its rule is deterministic: stop at the first step with
δ_t ≥ threshold, and at the last step of the season when it never fires.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .loss import valid_mask


def first_stop(fires: Tensor, lengths: Tensor) -> Tensor:
    """Index of the first valid step where ``fires`` is True, else the last valid step.

    Args:
        fires: [batch, time] bool.
        lengths: [batch] number of valid steps.
    Returns:
        [batch] int64 step index.
    """
    steps = fires.shape[1]
    fires = fires & valid_mask(lengths, steps)
    fires = fires | torch.nn.functional.one_hot(lengths - 1, steps).bool()
    return fires.int().argmax(dim=1)


def deterministic_stop(p_stop: Tensor, lengths: Tensor, threshold: float = 0.5) -> Tensor:
    """First step with δ_t ≥ threshold (forced at the last valid step); [batch] int64."""
    return first_stop(p_stop >= threshold, lengths)


def sampled_stop(p_stop: Tensor, lengths: Tensor,
                 generator: torch.Generator | None = None) -> Tensor:
    """The paper's rule: stop ~ Bernoulli(δ_t) at each step (forced at the last); [batch]."""
    draws = torch.rand(p_stop.shape, generator=generator, device=p_stop.device)
    return first_stop(draws < p_stop, lengths)


def fires(p_stop: Tensor, threshold: float) -> Tensor:
    """The daemon's per-step test: [n] δ_t -> [n] bool."""
    return p_stop >= threshold
