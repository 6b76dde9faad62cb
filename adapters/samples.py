"""Training data from a feed: labelled parcels + one season of Sentinel-2 -> long format.

The same search and reading code as the daemon's feed, so a model trained on what this writes
sees exactly what the daemon will feed it. ``eowatch train`` reads the Parquet it writes.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import shapely

from eowatch.parcels import ImportError_, prepare

from .sentinel2 import FEED, ItemError, Sentinel2Config, read_item
from .tiles import ParcelSet

log = logging.getLogger(__name__)


@dataclass
class ExtractReport:
    items: int = 0
    failed: list[str] = field(default_factory=list)
    rows: int = 0
    cloudy: int = 0

    def summary(self) -> str:
        return (f"{self.items} items read, {len(self.failed)} unreadable"
                + (f" ({', '.join(self.failed[:10])})" if self.failed else "")
                + f"; {self.rows} rows written, {self.cloudy} below the valid fraction")


def labelled_parcels(path: Path, id_field: str | None, label_field: str
                     ) -> tuple[ParcelSet, np.ndarray]:
    """Parcels of a vector file (any CRS) and their labels; unusable features are skipped with a
    warning naming them."""
    keep, ids, geometries, attributes, report = prepare(path, id_field)
    if label_field not in attributes:
        raise ImportError_(f"{path}: no label attribute {label_field!r}; it has "
                           f"{list(attributes)}: choose one with --label-field")
    for reason, skipped in report.skipped.items():
        log.warning("%s: skipped %d parcels with %s: %s", path, len(skipped), reason,
                    ", ".join(skipped[:10]))
    labels = np.array([None if v is None else str(v) for v in attributes[label_field]],
                      dtype=object)[keep]
    labelled = labels != None  # noqa: E711  (element-wise)
    index = np.asarray(keep)[labelled]
    parcels = ParcelSet(ids[index], np.zeros(len(index), np.int64), geometries[index])
    return parcels, labels[labelled]


def extract(parcels: ParcelSet, labels: np.ndarray, start: datetime, end: datetime,
            band_names: Sequence[str], config: Sentinel2Config, min_valid_fraction: float,
            out: Path) -> ExtractReport:
    """Write one row per (parcel, acquisition) of [start, end] in the long format."""
    report = ExtractReport()
    items = config.search().items(parcels.search_area(), start, end, query=config.query)
    centre = shapely.centroid(parcels.geometries)
    frames = []
    for item in items:
        try:
            rows = read_item(item, parcels, band_names, config)
        except ItemError as exc:
            log.warning("skipping %s: %s", item.id, exc)
            report.failed.append(item.id)
            continue
        report.items += 1
        if rows is None:
            continue
        clear = rows.valid_fraction >= min_valid_fraction
        report.cloudy += int((~clear).sum())
        index = rows.parcel_index[clear]
        frame = pd.DataFrame(rows.values[clear], columns=list(band_names))
        frame.insert(0, "sample_id", parcels.ids[index])
        frame.insert(1, "label", labels[index])
        frame.insert(2, "date", pd.Timestamp(rows.acquired_at).tz_convert(None))
        frame["valid_fraction"] = rows.valid_fraction[clear]
        frame["longitude"] = shapely.get_x(centre[index])
        frame["latitude"] = shapely.get_y(centre[index])
        frame["start_date"] = pd.Timestamp(start).tz_convert(None).normalize()
        frame["feed"] = FEED
        frame["acquisition_id"] = item.id
        frames.append(frame)
    columns = ["sample_id", "label", "date", *band_names, "valid_fraction", "longitude",
               "latitude", "start_date", "feed", "acquisition_id"]
    table = (pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns))
    table = table.sort_values(["sample_id", "date"], kind="stable").reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    report.rows = len(table)
    return report
