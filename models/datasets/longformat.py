"""The long-format Parquet that users bring: one row per (sample, date).

Columns: ``sample_id``, ``label``, ``date`` (ISO date or timestamp) and one numeric column per
band; optional ``longitude``/``latitude`` (grouping key for grouped folds) and ``start_date``
(the sample's season start; otherwise the season starts at ``season_start``). Every other column
is ignored unless named in ``bands``. ``eowatch samples extract`` writes this format.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eowatch.seasons import SeasonStartError, parse_season_start, season_begin

from .base import DatasetError, SeriesSet, encode_labels, sample_name

REQUIRED = ("sample_id", "label", "date")
NON_BANDS = {"sample_id", "label", "date", "longitude", "latitude", "start_date", "end_date",
             "parcel_id", "feed", "acquisition_id", "valid_fraction"}


def band_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns
            if c not in NON_BANDS and pd.api.types.is_numeric_dtype(frame[c])]


def season_days(dates: pd.Series, starts: pd.Series) -> np.ndarray:
    """Days since season start, as float32."""
    return ((dates - starts) / pd.Timedelta(days=1)).to_numpy(np.float32)


def read_long_format(
    path: str | Path,
    bands: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    season_start: str | None = None,
    season_length_days: float = 365.0,
) -> SeriesSet:
    """Read a long-format Parquet (or CSV) file into a SeriesSet.

    Args:
        bands: band columns in model order (default: every numeric non-key column, file order).
        class_names: a model's classes; labels outside them are an error naming the sample.
        season_start: "MM-DD" season start used when the file has no ``start_date`` column;
            the season containing each sample's first date is used. Without either, the
            file is refused: a season silently starting on 1 January would run past day 365
            for a season that crosses the new year.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    # CSV may be compressed (.csv.gz, .csv.bz2, .csv.xz, .csv.zst): pandas infers it
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise DatasetError(f"{path}: missing column(s) {missing}; the long format needs "
                           f"{list(REQUIRED)} and one column per band")
    if frame.empty:
        raise DatasetError(f"{path}: no samples; check the file and its filters")
    bands = list(bands) if bands is not None else band_columns(frame)
    absent = [b for b in bands if b not in frame.columns]
    if absent or not bands:
        raise DatasetError(f"{path}: band column(s) {absent or '(none)'} not in the file; it has "
                           f"{band_columns(frame)}")
    frame = frame.assign(date=pd.to_datetime(frame["date"], utc=True))
    frame = frame.sort_values(["sample_id", "date"], kind="stable").reset_index(drop=True)
    starts = _season_starts(frame, season_start, path)
    days = season_days(frame["date"], starts)

    ids, first, counts = np.unique(frame["sample_id"].to_numpy(), return_index=True,
                                   return_counts=True)
    labels_per_sample = frame.groupby("sample_id", sort=True)["label"].nunique()
    mixed = labels_per_sample[labels_per_sample > 1]
    if len(mixed):
        raise DatasetError(f"{path}: sample {sample_name(mixed.index[0])} has more than one "
                           "label; a sample is one parcel and one season")
    steps = int(counts.max())
    row_in_sample = np.arange(len(frame)) - np.repeat(first, counts)
    sample_index = np.repeat(np.arange(len(ids)), counts)
    values = np.full((len(ids), steps, len(bands)), np.nan, dtype=np.float32)
    values[sample_index, row_in_sample] = frame[bands].to_numpy(np.float32)
    day_array = np.full((len(ids), steps), np.nan, dtype=np.float32)
    day_array[sample_index, row_in_sample] = days
    labels = frame["label"].astype(str).to_numpy()[first]
    codes, names = encode_labels(list(labels), class_names)
    unknown = np.flatnonzero(codes < 0)
    if unknown.size:
        raise DatasetError(f"{path}: sample {sample_name(ids[unknown[0]])} has label "
                           f"{labels[unknown[0]]!r}, "
                           f"which is not one of the model's classes {list(names)}; drop such "
                           "samples or train a model that knows the class")
    groups = None
    if {"longitude", "latitude"} <= set(frame.columns):
        lonlat = frame[["longitude", "latitude"]].to_numpy()[first].round(6)
        _, groups = np.unique(lonlat, axis=0, return_inverse=True)
    return SeriesSet(values=values, days=day_array, lengths=counts.astype(np.int64),
                     labels=codes, class_names=names, band_names=tuple(bands), sample_ids=ids,
                     season_length_days=season_length_days, name=path.name,
                     season_start=_common_start(starts),
                     groups=groups).validate()


def _common_start(starts: pd.Series) -> str | None:
    """The MM-DD every sample's season starts on, or None when they differ."""
    days = starts.dt.strftime("%m-%d").unique()
    return str(days[0]) if len(days) == 1 else None


def _season_starts(frame: pd.DataFrame, season_start: str | None, path: Path) -> pd.Series:
    if season_start is None and "start_date" in frame.columns:
        return pd.to_datetime(frame["start_date"], utc=True)
    if season_start is None:
        raise DatasetError(f"{path}: no start_date column, so the season's start is unknown; "
                           "add one (the start of each sample's season) or give the day the "
                           "seasons start on with --season-start MM-DD (e.g. 09-01)")
    start_text = season_start
    try:
        parse_season_start(start_text)
    except SeasonStartError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    first_date = frame.groupby("sample_id")["date"].transform("min")
    year = first_date.dt.year
    begins = {y: pd.Timestamp(season_begin(y, start_text))
              for y in range(int(year.min()) - 1, int(year.max()) + 1)}
    start = year.map(begins)
    # a first date before this year's start belongs to the season that began last year
    before = first_date < start
    start[before] = (year[before] - 1).map(begins)
    return start
