import pytest
import torch

from eowatch.models.network import Architecture, EarlyClassifier, shapelet_sizes

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


# the LSTM alone, and with shapelet convolutions (one as wide as the longest test series)
SHAPELETS = [(), (2, 5, 40)]


def make_model(n_bands=13, n_classes=5, layers=2, hidden=32, device="cpu", shapelets=()):
    torch.manual_seed(0)
    arch = Architecture(n_bands=n_bands, n_classes=n_classes, hidden_size=hidden,
                        num_layers=layers, shapelet_sizes=shapelets, shapelets_per_size=8)
    return EarlyClassifier(arch, torch.rand(n_bands) * 0.3, torch.rand(n_bands) * 0.1 + 0.05,
                           season_length_days=365).to(device).eval()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch", [1, 3, 64])
@pytest.mark.parametrize("steps", [1, 7, 40])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("shapelets", SHAPELETS)
def test_step_by_step_equals_full_forward(device, batch, steps, layers, shapelets):
    model = make_model(layers=layers, device=device, shapelets=shapelets)
    x = torch.rand(batch, steps, 13, device=device)
    days = torch.sort(torch.rand(batch, steps, device=device) * 365, dim=1).values
    with torch.no_grad():
        full_lp, full_ps = model(x, days)
        state = model.init_state(batch, device=device)
        for t in range(steps):
            state, lp, ps = model.step(state, x[:, t], days[:, t])
            assert (lp - full_lp[:, t]).abs().max().item() < 1e-5
            assert (ps - full_ps[:, t]).abs().max().item() < 1e-5
    if shapelets:  # h and c, 24 running maxima, 39 steps of 13 bands and the day
        assert state.shape == (batch, layers * 2 * 32 + 24 + 39 * 14)
    else:
        assert state.shape == (batch, layers, 2, 32)


@pytest.mark.parametrize("shapelets", SHAPELETS)
def test_step_equals_forward_on_padded_batches_at_valid_steps(shapelets):
    model = make_model(shapelets=shapelets)
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


@pytest.mark.parametrize("shapelets", SHAPELETS)
def test_fp16_state_is_accepted_and_returned(shapelets):
    model = make_model(shapelets=shapelets)
    state = model.init_state(4, dtype=torch.float16)
    with torch.no_grad():
        new_state, lp, ps = model.step(state, torch.rand(4, 13), torch.full((4,), 30.0))
    assert new_state.dtype == torch.float16 and lp.dtype == torch.float32


@pytest.mark.parametrize("size", [1, 2, 7, 33, 64, 129, 500])
@pytest.mark.parametrize("shapelets", SHAPELETS)
def test_a_step_gives_every_parcel_the_same_bits_in_any_batch(size, shapelets):
    """A decision must not depend on the parcels stepped beside it (replays batch otherwise)."""
    model = make_model(n_classes=6, hidden=64, shapelets=shapelets).eval()
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


def test_rowwise_products_are_matrix_products_in_chunks_of_any_size(monkeypatch):
    """Rows go to the batched product in chunks (GPU kernels limit a call's batch); a row's
    bits do not depend on the chunk it falls in."""
    from eowatch.models import network

    torch.manual_seed(2)
    x, weight = torch.randn(300, 3, 20), torch.randn(20, 7)
    whole = network.rowwise_linear(x, weight)
    assert torch.allclose(whole, x @ weight, atol=1e-5)
    monkeypatch.setattr(network, "BMM_BATCH_LIMIT", 7)
    assert torch.equal(network.rowwise_linear(x, weight), whole)
    assert network.rowwise_linear(x[:0], weight).shape == (0, 3, 7)


def test_a_shape_seen_once_stays_seen():
    """The shapelet features are running maxima: a pattern early in the series still counts
    at its end, where the LSTM alone would have to carry it through every later step."""
    model = make_model(n_bands=1, shapelets=(3,))
    x = torch.zeros(2, 60, 1)
    x[0, 5:8, 0] = torch.tensor([1.0, -1.0, 1.0])
    days = torch.arange(60.0).expand(2, 60)
    with torch.no_grad():
        z = model.features(x, days).transpose(1, 2)
        response = torch.relu(model.shapelets[0](torch.nn.functional.pad(z, (2, 0))))
        strongest = int(response[0, :, 7].argmax())  # the shapelet the pattern excites most
        state = model.init_state(2)
        for t in range(60):
            state, _, _ = model.step(state, x[:, t], days[:, t])
    running_max = state[:, model.arch.lstm_width:][:, :8]
    assert running_max[0, strongest] >= response[0, strongest, 7] - 1e-6
    assert running_max[0, strongest] > running_max[1, strongest]


def test_shapelet_widths_follow_the_series_length():
    assert shapelet_sizes(470, (0.1, 0.2, 0.3, 0.4)) == (47, 94, 141, 188)
    assert shapelet_sizes(23, (0.1, 0.2, 0.3, 0.4)) == (2, 5, 7, 9)
    assert shapelet_sizes(5, (0.1, 0.2)) == (2,)
