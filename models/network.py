"""The ELECTS early classifier: an LSTM with a class head and a learned stopping head.

Rußwurm et al., "End-to-end learned early classification of time series for in-season crop type
mapping", ISPRS J. Photogramm. Remote Sens. 2023 (arXiv 1901.10681).

Two entry points share every weight and every operation, so that they agree to float precision:
- ``forward(x, days)`` reads whole sequences (training, evaluation);
- ``step(state, x_t, day_t)`` advances a batch of parcels by one acquisition (the daemon).
"""

from __future__ import annotations

from dataclasses import dataclass

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
        self.head_dropout = nn.Dropout(arch.dropout)
        self.class_head = nn.Linear(arch.hidden_size, arch.n_classes)
        self.stop_head = nn.Linear(arch.hidden_size, 1)
        nn.init.constant_(self.stop_head.bias, arch.stop_bias_init)

    @property
    def state_shape(self) -> tuple[int, int, int]:
        """Per-parcel state: (layers, 2 for h and c, hidden)."""
        return (self.arch.num_layers, 2, self.arch.hidden_size)

    def features(self, x: Tensor, days: Tensor) -> Tensor:
        """[..., bands] reflectance and [...] day of season -> [..., bands + 1] model input.

        Padding (NaN) becomes 0 so that it cannot poison the recurrence; padded steps come
        after a sequence's last valid step, so they never influence a valid output.
        """
        z = (x - self.band_mean) / self.band_std
        t = (days / self.season_length).unsqueeze(-1)
        return torch.nan_to_num(torch.cat((z, t), dim=-1), nan=0.0)

    def heads(self, hidden: Tensor) -> tuple[Tensor, Tensor]:
        """LSTM output [..., hidden] -> (log_probs [..., classes], p_stop [...]).

        Both heads as one product summed over the hidden units, not as matrix products: a
        row's result is then bit-for-bit the same in any batch (BLAS picks kernels by batch
        size, which moves the last bits), so a parcel's decision does not depend on which
        parcels were stepped beside it, or on a replay after a crash batching them otherwise.
        """
        hidden = self.head_dropout(hidden)
        weight = torch.cat((self.class_head.weight, self.stop_head.weight))
        bias = torch.cat((self.class_head.bias, self.stop_head.bias))
        logits = (hidden.unsqueeze(-2) * weight).sum(-1) + bias
        return torch.log_softmax(logits[..., :-1], dim=-1), torch.sigmoid(logits[..., -1])

    def forward(self, x: Tensor, days: Tensor) -> tuple[Tensor, Tensor]:
        """Whole sequences.

        Args:
            x: [batch, time, bands] band values (NaN where padded).
            days: [batch, time] day of season of each acquisition.

        Returns:
            log_probs [batch, time, classes] and p_stop [batch, time] (probability, 0-1).
        """
        out, _ = self.lstm(self.features(x, days))
        return self.heads(out)

    def init_state(self, n: int, device: torch.device | str | None = None,
                   dtype: torch.dtype = torch.float32) -> Tensor:
        """Zero state for n parcels: [n, layers, 2, hidden]."""
        return torch.zeros((n, *self.state_shape), device=device, dtype=dtype)

    def step(self, state: Tensor, x: Tensor, days: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Advance n parcels by one acquisition each.

        Args:
            state: [n, layers, 2, hidden] (any float dtype; computed in the weights' dtype).
            x: [n, bands] band values of this acquisition.
            days: [n] day of season of this acquisition.

        Returns:
            (new state [n, layers, 2, hidden] in the input state's dtype,
             log_probs [n, classes], p_stop [n]).
        """
        work = state.to(self.band_mean.dtype)
        h0 = work[:, :, 0].transpose(0, 1).contiguous()
        c0 = work[:, :, 1].transpose(0, 1).contiguous()
        out, (h1, c1) = self.lstm(self.features(x.unsqueeze(1), days.unsqueeze(1)), (h0, c0))
        new_state = torch.stack((h1, c1), dim=1).permute(2, 0, 1, 3).to(state.dtype)
        log_probs, p_stop = self.heads(out[:, 0])
        return new_state, log_probs, p_stop
