import torch

from eowatch.models.loss import stop_distribution
from eowatch.models.stopping import deterministic_stop, sampled_stop


def test_deterministic_rule_takes_first_step_at_or_above_threshold():
    p_stop = torch.tensor([[0.1, 0.5, 0.9, 0.2], [0.1, 0.2, 0.3, 0.4], [0.6, 0.1, 0.1, 0.1]])
    stop = deterministic_stop(p_stop, torch.tensor([4, 4, 4]), threshold=0.5)
    assert stop.tolist() == [1, 3, 0]  # never firing: forced at the last step


def test_deterministic_rule_ignores_padding_and_forces_last_valid_step():
    p_stop = torch.tensor([[0.1, 0.2, 0.9, 0.9]])
    assert deterministic_stop(p_stop, torch.tensor([2])).tolist() == [1]


def test_threshold_is_configurable():
    p_stop = torch.tensor([[0.3, 0.6, 0.95]])
    lengths = torch.tensor([3])
    assert deterministic_stop(p_stop, lengths, 0.25).tolist() == [0]
    assert deterministic_stop(p_stop, lengths, 0.9).tolist() == [2]


def test_sampled_rule_follows_the_stop_distribution():
    p_stop = torch.tensor([[0.3, 0.5, 0.2, 0.1]]).expand(20000, 4)
    lengths = torch.full((20000,), 4)
    stops = sampled_stop(p_stop, lengths, torch.Generator().manual_seed(1))
    observed = torch.bincount(stops, minlength=4).float() / 20000
    expected = stop_distribution(p_stop[:1], lengths[:1])[0]
    assert torch.allclose(observed, expected, atol=0.015)
