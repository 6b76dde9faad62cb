import pytest
import torch

from eowatch.models.network import Architecture, EarlyClassifier

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_model(n_bands=13, n_classes=5, layers=2, hidden=32, device="cpu"):
    torch.manual_seed(0)
    arch = Architecture(n_bands=n_bands, n_classes=n_classes, hidden_size=hidden,
                        num_layers=layers)
    return EarlyClassifier(arch, torch.rand(n_bands) * 0.3, torch.rand(n_bands) * 0.1 + 0.05,
                           season_length_days=365).to(device).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("steps", [1, 7, 40])
@pytest.mark.parametrize("layers", [1, 2])
def test_step_by_step_equals_full_forward(device, batch, steps, layers):
    model = make_model(layers=layers, device=device)
    x = torch.rand(batch, steps, 13, device=device)
    days = torch.sort(torch.rand(batch, steps, device=device) * 365, dim=1).values
    with torch.no_grad():
        full_lp, full_ps = model(x, days)
        state = model.init_state(batch, device=device)
        for t in range(steps):
            state, lp, ps = model.step(state, x[:, t], days[:, t])
            assert (lp - full_lp[:, t]).abs().max().item() < 1e-5
            assert (ps - full_ps[:, t]).abs().max().item() < 1e-5
    assert state.shape == (batch, layers, 2, 32)


def test_step_equals_forward_on_padded_batches_at_valid_steps():
    model = make_model()
    lengths = [5, 2, 8]
    x = torch.full((3, 8, 13), float("nan"))
    days = torch.full((3, 8), float("nan"))
    for i, n in enumerate(lengths):
        x[i, :n] = torch.rand(n, 13)
        days[i, :n] = torch.arange(n) * 5.0
    with torch.no_grad():
        full_lp, _ = model(x, days)
        for i, n in enumerate(lengths):
            state = model.init_state(1)
            for t in range(n):
                state, lp, _ = model.step(state, x[i:i + 1, t], days[i:i + 1, t])
            assert (lp[0] - full_lp[i, n - 1]).abs().max().item() < 1e-5


def test_time_is_an_input():
    model = make_model()
    x = torch.rand(1, 4, 13)
    with torch.no_grad():
        a, _ = model(x, torch.tensor([[0.0, 5.0, 10.0, 15.0]]))
        b, _ = model(x, torch.tensor([[0.0, 30.0, 60.0, 90.0]]))
    assert (a[:, 1:] - b[:, 1:]).abs().max() > 1e-4


def test_stopping_starts_almost_never():
    model = make_model()
    with torch.no_grad():
        _, p_stop = model(torch.rand(16, 10, 13), torch.arange(10.0).expand(16, 10) * 10)
    assert p_stop.max() < 0.05


def test_fp16_state_is_accepted_and_returned():
    model = make_model()
    state = model.init_state(4, dtype=torch.float16)
    with torch.no_grad():
        new_state, lp, ps = model.step(state, torch.rand(4, 13), torch.full((4,), 30.0))
    assert new_state.dtype == torch.float16 and lp.dtype == torch.float32


@pytest.mark.parametrize("size", [1, 2, 7, 33, 64, 129, 500])
def test_a_step_gives_every_parcel_the_same_bits_in_any_batch(size):
    """A decision must not depend on the parcels stepped beside it (replays batch otherwise)."""
    model = make_model(n_classes=6, hidden=64).eval()
    torch.manual_seed(1)
    state = torch.randn(600, *model.state_shape) * 0.3
    x, days = torch.rand(600, 13) * 0.5, torch.rand(600) * 300
    with torch.inference_mode():
        whole = model.step(state, x, days)
        for start in (0, 600 - size):
            part = model.step(state[start:start + size], x[start:start + size],
                              days[start:start + size])
            for a, b in zip(whole, part, strict=True):
                assert torch.equal(a[start:start + size], b)
