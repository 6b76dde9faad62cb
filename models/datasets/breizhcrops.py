"""BreizhCrops (Rußwurm et al. 2020) from its on-disk layout; nothing is downloaded.

Layout::

    <root>/classmapping.csv                    code (CODE_CULTU) -> id, classname (9 classes)
    <root>/<year>/<level>/<region>.csv         index: idx, id, CODE_CULTU, path, sequencelength, ...
    <root>/<year>/<level>/<region>.h5          one dataset per parcel, keyed by the index's path:
                                               a [T, 17] array B1, B10, B11, B12, B2 ... B9,
                                               QA10, QA20, QA60, doa (ns timestamp)

Band values are Sentinel-2 L1C digital numbers; reflectance = DN / 10000.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from .base import DatasetError, SeriesSet, pad_ragged, sample_name

FILE_COLUMNS = ("B1", "B10", "B11", "B12", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A",
                "B9", "QA10", "QA20", "QA60", "doa")
# the model's band order: Sentinel-2's own, as every eowatch Sentinel-2 feed publishes it
S2_BANDS = ("B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10",
            "B11", "B12")
# Bottom-of-atmosphere (L2A) products drop B10: cirrus (1375 nm) sees the atmosphere, not the
# ground. The bundled model and the Sentinel-2 feed's default collection use these 12.
S2_L2A_BANDS = tuple(b for b in S2_BANDS if b != "B10")
_FILE_NAME = {b: ("B" + b[1:].lstrip("0")) if b != "B8A" else "B8A" for b in S2_BANDS}
DN_SCALE = 1e-4


def read_breizhcrops(root: str | Path, region: str, year: int = 2017,
                     level: str = "L1C") -> SeriesSet:
    """One region of BreizhCrops as a SeriesSet in S2 band order, reflectance 0-1.

    Day of season counts from 1 January of ``year``.
    """
    root = Path(root)
    folder = root / str(year) / level
    index_path, h5_path, mapping_path = (folder / f"{region}.csv", folder / f"{region}.h5",
                                         root / "classmapping.csv")
    for path in (index_path, h5_path, mapping_path):
        if not path.is_file():
            raise DatasetError(f"BreizhCrops: {path} not found; expected the layout "
                               "<root>/classmapping.csv and "
                               "<root>/<year>/<level>/<region>.{csv,h5}")
    mapping = pd.read_csv(mapping_path, index_col=0)
    missing = {"id", "classname", "code"} - set(mapping.columns)
    if missing:
        raise DatasetError(f"{mapping_path}: missing column(s) {sorted(missing)}")
    classes = mapping.sort_values("id").groupby("id", sort=True)["classname"].first()
    class_names = tuple(classes.tolist())
    code_to_class = dict(zip(mapping["code"], mapping["id"], strict=True))
    position = {class_id: i for i, class_id in enumerate(classes.index)}

    index = pd.read_csv(index_path)
    index = index[index["CODE_CULTU"].isin(code_to_class) & (index["sequencelength"] > 0)]
    if index.empty:
        raise DatasetError(f"{index_path}: no parcel with a mapped crop code and a series")
    columns = [FILE_COLUMNS.index(_FILE_NAME[b]) for b in S2_BANDS]
    doa_column = FILE_COLUMNS.index("doa")
    season_start = np.datetime64(f"{year}-01-01", "ns").astype(np.int64)
    series, days = [], []
    with h5py.File(h5_path, "r") as h5:
        for parcel_id, key in zip(index["id"], index["path"], strict=True):
            if key not in h5:
                raise DatasetError(f"{h5_path}: parcel {sample_name(parcel_id)} ({key}) is in the "
                                   "index but not in the HDF5 file; the two files are from "
                                   "different releases")
            array = np.asarray(h5[key])
            if array.ndim != 2 or array.shape[1] != len(FILE_COLUMNS):
                raise DatasetError(f"{h5_path}: parcel {sample_name(parcel_id)} has shape "
                                   f"{array.shape}, "
                                   f"expected [T, {len(FILE_COLUMNS)}]")
            series.append(array[:, columns].astype(np.float32) * DN_SCALE)
            days.append(((array[:, doa_column].astype(np.int64) - season_start)
                         / 86_400e9).astype(np.float32))
    values, day_array, lengths = pad_ragged(series, days)
    labels = np.array([position[code_to_class[c]] for c in index["CODE_CULTU"]], dtype=np.int64)
    return SeriesSet(values=values, days=day_array, lengths=lengths, labels=labels,
                     class_names=class_names, band_names=S2_BANDS,
                     sample_ids=index["id"].to_numpy(), season_length_days=365.0,
                     season_start="01-01",
                     name=f"breizhcrops-{year}-{level}-{region}").validate()
