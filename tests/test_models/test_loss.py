import math

import pytest
import torch

from eowatch.models.loss import earliness_reward_loss, stop_distribution


def test_stop_distribution_uses_delta_of_the_same_step():
    p_stop = torch.tensor([[0.5, 0.5, 0.5]])
    pt = stop_distribution(p_stop, torch.tensor([3]))
    # P(0) = δ0, P(1) = δ1 (1 − δ0), P(2) = remaining mass (1 − δ0)(1 − δ1)
    assert torch.allclose(pt, torch.tensor([[0.5, 0.25, 0.25]]))


def test_stop_distribution_masks_padding_and_sums_to_one():
    p_stop = torch.tensor([[0.2, 0.9, 0.7, 0.4], [0.1, 0.3, 0.6, 0.8]])
    pt = stop_distribution(p_stop, torch.tensor([2, 4]))
    assert torch.allclose(pt[0], torch.tensor([0.2, 0.8, 0.0, 0.0]))
    assert torch.allclose(pt.sum(1), torch.ones(2))
    assert pt[1, 3] == pytest.approx(0.9 * 0.7 * 0.4)


def test_length_one_puts_all_mass_on_the_only_step():
    pt = stop_distribution(torch.tensor([[0.01, 0.5]]), torch.tensor([1]))
    assert torch.allclose(pt, torch.tensor([[1.0, 0.0]]))


def test_loss_by_hand_without_smoothing():
    p0, p1 = 0.6, 0.9  # probability of the true class at t = 0 and t = 1
    log_probs = torch.log(torch.tensor([[[p0, 1 - p0], [p1, 1 - p1]]]))
    p_stop = torch.tensor([[0.25, 0.7]])
    parts = earliness_reward_loss(log_probs, p_stop, torch.tensor([0]), torch.tensor([2]),
                                  alpha=0.7, epsilon=0.0)
    pt = [0.25, 0.75]
    nll = pt[0] * -math.log(p0) + pt[1] * -math.log(p1)
    reward = pt[0] * p0 * (1 - 0 / 2) + pt[1] * p1 * (1 - 1 / 2)
    assert parts.classification.item() == pytest.approx(nll, rel=1e-6)
    assert parts.earliness_reward.item() == pytest.approx(reward, rel=1e-6)
    assert parts.loss.item() == pytest.approx(0.7 * nll - 0.3 * reward, abs=1e-6)


def test_smoothing_adds_epsilon_over_length_to_valid_steps_only():
    log_probs = torch.log(torch.full((1, 3, 2), 0.5))
    p_stop = torch.tensor([[0.5, 0.5, 0.5]])
    parts = earliness_reward_loss(log_probs, p_stop, torch.tensor([1]), torch.tensor([2]),
                                  alpha=1.0, epsilon=1.0)
    # P = [0.5, 0.5, 0] + 1/2 on the two valid steps; NLL = log 2 everywhere
    assert parts.classification.item() == pytest.approx(2.0 * math.log(2), rel=1e-6)


def test_batch_mean_and_gradient_reaches_every_valid_delta():
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 4, requires_grad=True)
    raw = torch.randn(3, 5, requires_grad=True)
    lengths = torch.tensor([5, 3, 1])
    parts = earliness_reward_loss(torch.log_softmax(logits, -1), torch.sigmoid(raw),
                                  torch.tensor([0, 1, 2]), lengths, alpha=0.5)
    parts.loss.backward()
    # the last valid step's δ does not matter (its mass is forced); padding gets no gradient
    assert (raw.grad[0, :4] != 0).all() and raw.grad[0, 4] == 0
    assert (raw.grad[1, :2] != 0).all() and (raw.grad[1, 2:] == 0).all()
    assert (raw.grad[2] == 0).all()
