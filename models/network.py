"""The ELECTS early classifier: an LSTM with a class head and a learned stopping head.

Rußwurm et al., "End-to-end learned early classification of time series for in-season crop type
mapping", ISPRS J. Photogramm. Remote Sens. 2023 (arXiv 1901.10681).

Beside the LSTM, an optional shapelet front end as in the paper's UCR experiments: causal
convolutions a tenth to four tenths of the series long, each kept as the running maximum of its
(rectified) response so far. A shape seen once stays seen, however long ago: the LSTM alone
does not fit long series of few samples (decision 0015).

Two entry points share every weight and every operation, so that they agree to float precision:
- ``forward(x, days)`` reads whole sequences (training, evaluation);
- ``step(state, x_t, day_t)`` advances a batch of parcels by one acquisition (the daemon).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Architecture:
    """Hyper-parameters that define the weights' shapes."""

    n_bands: int
    n_classes: int
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    # sigmoid(-6) ~ 0.0025: training starts by (almost) never stopping, as in the paper.
    stop_bias_init: float = -6.0
    # widths in steps of the shapelet front end's convolutions (none: the LSTM alone)
    shapelet_sizes: tuple[int, ...] = ()
    shapelets_per_size: int = 32

    def __post_init__(self) -> None:
        # metadata read back from JSON gives a list
        object.__setattr__(self, "shapelet_sizes", tuple(int(k) for k in self.shapelet_sizes))
        if any(k < 1 for k in self.shapelet_sizes):
            raise ValueError(f"shapelet widths must be at least 1 step: {self.shapelet_sizes}")

    @property
    def n_shapelets(self) -> int:
        return len(self.shapelet_sizes) * self.shapelets_per_size

    @property
    def state_shape(self) -> tuple[int, ...]:
        """Per-parcel state: (layers, 2 for h and c, hidden) for the LSTM alone; with shapelets
        one flat vector: the LSTM's h and c, each shapelet's running maximum, and the inputs
        of the last (widest - 1) steps that the next convolution window reads."""
        if not self.shapelet_sizes:
            return (self.num_layers, 2, self.hidden_size)
        return (self.lstm_width + self.n_shapelets + self.window_width,)

    @property
    def lstm_width(self) -> int:
        return self.num_layers * 2 * self.hidden_size

    @property
    def window_steps(self) -> int:
        """Past inputs the widest convolution reads beside the current one."""
        return max(self.shapelet_sizes) - 1

    @property
    def window_width(self) -> int:
        return self.window_steps * (self.n_bands + 1)


def shapelet_sizes(series_length: int, fractions: tuple[float, ...]) -> tuple[int, ...]:
    """Convolution widths as fractions of the longest training series, 2 steps at least."""
    return tuple(sorted({max(2, round(f * series_length)) for f in fractions}))


BMM_BATCH_LIMIT = 65_535


def rowwise_linear(x: Tensor, weight: Tensor) -> Tensor:
    """``x @ weight`` ([..., inputs] by [inputs, outputs]) with each row its own matrix
    product, so that a row's result is bit-for-bit the same in any batch.

    One matrix product over the whole batch lets BLAS pick its kernel by the batch size, which
    moves the last bits; a batched product of one-row matrices runs the same kernel on every
    row whatever their number, and is several times faster than a product summed
    elementwise, which builds the whole [rows, outputs, inputs] product in memory.
    """
    rows = x.reshape(-1, 1, x.shape[-1])
    # at most 65,535 matrices a call: some GPU kernels put the batch on a grid axis of that
    # size, and a row's result does not depend on the rows beside it anyway
    out = torch.cat([torch.bmm(chunk, weight.expand(len(chunk), *weight.shape))
                     for chunk in rows.split(BMM_BATCH_LIMIT)])
    return out.reshape(*x.shape[:-1], weight.shape[-1])


class EarlyClassifier(nn.Module):
    """LSTM backbone, class log-probabilities and stopping probability at every step.

    Inputs are reflectance (or any band values) and the day of season: time is an input, so
    irregular revisits and cloud-dropped acquisitions are not read as consecutive steps.
    Normalisation lives inside the model (buffers) and travels with the artifact.
    """

    band_mean: Tensor
    band_std: Tensor
    season_length: Tensor

    def __init__(
        self,
        arch: Architecture,
        band_mean: Tensor | None = None,
        band_std: Tensor | None = None,
        season_length_days: float = 365.0,
    ) -> None:
        super().__init__()
        self.arch = arch
        mean = torch.zeros(arch.n_bands) if band_mean is None else band_mean.float()
        std = torch.ones(arch.n_bands) if band_std is None else band_std.float()
        if mean.shape != (arch.n_bands,) or std.shape != (arch.n_bands,):
            raise ValueError(f"normalisation needs {arch.n_bands} values per statistic")
        self.register_buffer("band_mean", mean.clone())
        self.register_buffer("band_std", std.clamp_min(1e-6).clone())
        self.register_buffer("season_length", torch.tensor(float(season_length_days)))
        self.lstm = nn.LSTM(
            input_size=arch.n_bands + 1,
            hidden_size=arch.hidden_size,
            num_layers=arch.num_layers,
            dropout=arch.dropout if arch.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.shapelets = nn.ModuleList(
            nn.Conv1d(arch.n_bands + 1, arch.shapelets_per_size, k) for k in arch.shapelet_sizes)
        # Identity adds no weights: artifacts of the LSTM alone keep their state dict
        self.shapelet_norm = nn.LayerNorm(arch.n_shapelets) if arch.n_shapelets else nn.Identity()
        self.head_dropout = nn.Dropout(arch.dropout)
        n_features = arch.hidden_size + arch.n_shapelets
        self.class_head = nn.Linear(n_features, arch.n_classes)
        self.stop_head = nn.Linear(n_features, 1)
        nn.init.constant_(self.stop_head.bias, arch.stop_bias_init)

    @property
    def state_shape(self) -> tuple[int, ...]:
        return self.arch.state_shape

    def features(self, x: Tensor, days: Tensor) -> Tensor:
        """[..., bands] reflectance and [...] day of season -> [..., bands + 1] model input.

        Padding (NaN) becomes 0 so that it cannot poison the recurrence; padded steps come
        after a sequence's last valid step, so they never influence a valid output.
        """
        z = (x - self.band_mean) / self.band_std
        t = (days / self.season_length).unsqueeze(-1)
        return torch.nan_to_num(torch.cat((z, t), dim=-1), nan=0.0)

    def heads(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """LSTM output and shapelet features [..., hidden + shapelets] -> (log_probs [...,
        classes], p_stop [...]).

        Both heads as one row-wise product (rowwise_linear), so that a parcel's decision does
        not depend on which parcels were stepped beside it, or on a replay after a crash
        batching them otherwise.
        """
        hidden = self.head_dropout(hidden)
        weight = torch.cat((self.class_head.weight, self.stop_head.weight))
        bias = torch.cat((self.class_head.bias, self.stop_head.bias))
        logits = rowwise_linear(hidden, weight.t()) + bias
        return torch.log_softmax(logits[..., :-1], dim=-1), torch.sigmoid(logits[..., -1])

    def forward(self, x: Tensor, days: Tensor) -> tuple[Tensor, Tensor]:
        """Whole sequences.

        Args:
            x: [batch, time, bands] band values (NaN where padded).
            days: [batch, time] day of season of each acquisition.

        Returns:
            log_probs [batch, time, classes] and p_stop [batch, time] (probability, 0-1).
        """
        z = self.features(x, days)
        out, _ = self.lstm(z)
        if self.arch.shapelet_sizes:
            # zeros before the first step, as the zero state's window; causal: the response at
            # t ends at t, so padding after a series' end never reaches a valid step
            zt = z.transpose(1, 2)
            responses = [torch.relu(conv(nn.functional.pad(zt, (k - 1, 0))))
                         for k, conv in zip(self.arch.shapelet_sizes, self.shapelets, strict=True)]
            running_max = torch.cummax(torch.cat(responses, 1), dim=-1).values.transpose(1, 2)
            out = torch.cat((out, self.shapelet_norm(running_max)), -1)
        return self.heads(out)

    def init_state(self, n: int, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
        """Zero state for n parcels: [n, *state_shape]."""
        return torch.zeros((n, *self.state_shape), device=device, dtype=dtype)

    def step(self, state: Tensor, x: Tensor, days: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Advance n parcels by one acquisition each.

        Args:
            state: [n, *state_shape] (any float dtype; computed in the weights' dtype).
            x: [n, bands] band values of this acquisition.
            days: [n] day of season of this acquisition.

        Returns:
            (new state [n, *state_shape] in the input state's dtype,
             log_probs [n, classes], p_stop [n]).
        """
        n, arch = len(state), self.arch
        work = state.to(self.band_mean.dtype).reshape(n, -1)
        lstm_state = work[:, :arch.lstm_width].reshape(n, arch.num_layers, 2, arch.hidden_size)
        h0 = lstm_state[:, :, 0].transpose(0, 1).contiguous()
        c0 = lstm_state[:, :, 1].transpose(0, 1).contiguous()
        z = self.features(x.unsqueeze(1), days.unsqueeze(1))
        out, (h1, c1) = self.lstm(z, (h0, c0))
        new_lstm = torch.stack((h1, c1), dim=1).permute(2, 0, 1, 3)
        if not arch.shapelet_sizes:
            log_probs, p_stop = self.heads(out[:, 0])
            return new_lstm.to(state.dtype), log_probs, p_stop
        _, running_max, past = work.split((arch.lstm_width, arch.n_shapelets, arch.window_width),
                                          dim=1)
        window = torch.cat((past.reshape(n, arch.window_steps, arch.n_bands + 1), z), 1)
        # each response a row-wise product over its window, not a convolution kernel: the same
        # bits in any batch, as in heads(); a kernel [shapelets, inputs, k] reads as one
        # [k * inputs, shapelets] matrix, in the window's order of steps and inputs
        responses = []
        for k, conv in zip(arch.shapelet_sizes, cast(list[nn.Conv1d], list(self.shapelets)),
                           strict=True):
            kernel = conv.weight.permute(2, 1, 0).reshape(-1, len(conv.weight))
            responses.append(torch.relu(rowwise_linear(window[:, -k:].reshape(n, -1), kernel)
                                        + cast(Tensor, conv.bias)))   # each built with a bias
        running_max = torch.maximum(running_max, torch.cat(responses, 1))
        log_probs, p_stop = self.heads(torch.cat((out[:, 0], self.shapelet_norm(running_max)), -1))
        new_state = torch.cat((new_lstm.reshape(n, -1), running_max, window[:, 1:].reshape(n, -1)),
                              1)
        return new_state.to(state.dtype), log_probs, p_stop
