"""SeriesSet: labelled, possibly irregular, possibly ragged multiband time series in memory."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from eowatch.errors import EowatchError


class DatasetError(EowatchError, ValueError):
    """A dataset that cannot be used as it is; the message names the sample and the fix."""


@dataclass(frozen=True)
class SeriesSet:
    """Labelled time series, padded to a common length.

    Attributes:
        values: [n, time, bands] float32 band values (reflectance 0-1 for optical feeds);
            NaN beyond each sample's length.
        days: [n, time] float32 day of season of each step (NaN beyond the length).
        lengths: [n] int64 number of valid steps.
        labels: [n] int64 index into ``class_names``.
        class_names, band_names: the label and band vocabularies, in model order.
        sample_ids: [n] identifiers as the source gives them (named in errors).
        groups: [n] location or other grouping key for grouped cross-validation, or None.
        season_length_days: the length of a season, which scales the time input.
        name: where the data came from.
        season_start: the calendar day "MM-DD" every season starts on, or None: series without
            a calendar (UCR), or samples whose own start dates fall on different days.
        time_unit: what ``days`` counts: "day" (days of season) or "step" (the index of a
            regular series without dates, as UCR's).
    """

    values: np.ndarray
    days: np.ndarray
    lengths: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]
    band_names: tuple[str, ...]
    sample_ids: np.ndarray
    season_length_days: float
    name: str
    groups: np.ndarray | None = None
    season_start: str | None = None
    time_unit: str = "day"

    def __len__(self) -> int:
        return int(self.values.shape[0])

    @property
    def max_length(self) -> int:
        return int(self.values.shape[1])

    def subset(self, index: np.ndarray | Sequence[int]) -> SeriesSet:
        index = np.asarray(index)
        groups = None if self.groups is None else self.groups[index]
        return replace(
            self, values=self.values[index], days=self.days[index], lengths=self.lengths[index],
            labels=self.labels[index], sample_ids=self.sample_ids[index], groups=groups,
        )

    def select_bands(self, bands: Sequence[str]) -> SeriesSet:
        """These bands, in this order (a model's band list); an absent band is an error."""
        absent = [b for b in bands if b not in self.band_names]
        if absent:
            raise DatasetError(f"{self.name} has no band(s) {absent}; it has "
                               f"{list(self.band_names)}")
        columns = [self.band_names.index(b) for b in bands]
        return replace(self, values=self.values[..., columns], band_names=tuple(bands))

    def truncate(self, steps: int) -> SeriesSet:
        """The first ``steps`` steps of every sample (what is known early in the season)."""
        lengths = np.minimum(self.lengths, steps)
        return replace(self, values=self.values[:, :steps], days=self.days[:, :steps],
                       lengths=lengths)

    def fingerprint(self) -> str:
        """sha256 over values, days, lengths and labels: names the training data in artifacts."""
        digest = hashlib.sha256()
        for array in (self.values, self.days, self.lengths, self.labels):
            digest.update(np.ascontiguousarray(array).tobytes())
        digest.update("\x1f".join(self.class_names + self.band_names).encode())
        return digest.hexdigest()

    def _sample(self, row: int) -> str:
        return sample_name(self.sample_ids[row])

    def validate(self) -> SeriesSet:
        """Raise DatasetError naming the first bad sample; return self when all is well."""
        n, steps, bands = self.values.shape
        if n == 0:
            raise DatasetError(f"{self.name}: no samples; check the file and its filters")
        if bands != len(self.band_names):
            raise DatasetError(
                f"{self.name}: values have {bands} bands but {len(self.band_names)} band names")
        if self.days.shape != (n, steps) or self.lengths.shape != (n,):
            raise DatasetError(f"{self.name}: days/lengths do not match values [{n}, {steps}]")
        empty = np.flatnonzero(self.lengths < 1)
        if empty.size:
            raise DatasetError(f"{self.name}: sample {self._sample(empty[0])} has an empty "
                               "series; drop it or give it at least one observation")
        valid = np.arange(steps)[None, :] < self.lengths[:, None]
        bad_values = ~np.isfinite(self.values).all(axis=2) & valid
        bad_days = ~np.isfinite(self.days) & valid
        for what, bad in (("a NaN or infinite band value", bad_values),
                          ("a missing date", bad_days)):
            rows, cols = np.nonzero(bad)
            if rows.size:
                raise DatasetError(
                    f"{self.name}: sample {self._sample(rows[0])} has {what} at step "
                    f"{cols[0]}; fill or drop that observation (cloud-masked acquisitions are "
                    "dropped, not kept as NaN)")
        # valid steps form a prefix, so a valid step's predecessor is valid (and finite) too
        order = np.diff(np.nan_to_num(self.days, nan=0.0), axis=1)
        rows, cols = np.nonzero((order <= 0) & valid[:, 1:])
        if rows.size:
            raise DatasetError(f"{self.name}: sample {self._sample(rows[0])} has dates that "
                               f"do not increase at step {cols[0] + 1}; sort by date and drop "
                               "duplicates")
        unknown = np.flatnonzero((self.labels < 0) | (self.labels >= len(self.class_names)))
        if unknown.size:
            raise DatasetError(f"{self.name}: sample {self._sample(unknown[0])} has a label "
                               "outside the class list")
        return self

    def with_classes(self, class_names: Sequence[str]) -> SeriesSet:
        """Re-index labels onto another class list (a model's); unknown labels are an error."""
        position = {name: i for i, name in enumerate(class_names)}
        names = np.asarray(self.class_names, dtype=object)[self.labels]
        missing = [i for i, name in enumerate(names) if name not in position]
        if missing:
            raise DatasetError(
                f"{self.name}: sample {self._sample(missing[0])} has label "
                f"{names[missing[0]]!r}, which is not one of the model's classes "
                f"{list(class_names)}; drop such samples or train a model that knows the class")
        labels = np.array([position[name] for name in names], dtype=np.int64)
        return replace(self, labels=labels, class_names=tuple(class_names))


def sample_name(sample_id: object) -> str:
    """A sample id as an operator wrote it (numpy scalars shown as plain values)."""
    return repr(sample_id.item() if isinstance(sample_id, np.generic) else sample_id)


def pad_ragged(series: Sequence[np.ndarray], days: Sequence[np.ndarray]) -> tuple[np.ndarray, ...]:
    """Lists of [t_i, bands] and [t_i] arrays -> NaN-padded values, days and lengths."""
    lengths = np.array([len(s) for s in series], dtype=np.int64)
    steps = int(lengths.max()) if len(lengths) else 0
    bands = series[0].shape[1] if len(series) else 0
    values = np.full((len(series), steps, bands), np.nan, dtype=np.float32)
    day_array = np.full((len(series), steps), np.nan, dtype=np.float32)
    for i, (s, d) in enumerate(zip(series, days, strict=True)):
        values[i, : len(s)] = s
        day_array[i, : len(d)] = d
    return values, day_array, lengths


def encode_labels(labels: Sequence[str], class_names: Sequence[str] | None = None
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """Strings -> (int64 indices, class names); classes sorted unless given."""
    names = tuple(class_names) if class_names is not None else tuple(sorted(set(labels)))
    position = {name: i for i, name in enumerate(names)}
    return np.array([position.get(label, -1) for label in labels], dtype=np.int64), names
