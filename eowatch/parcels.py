"""Import parcels and areas of interest from GeoJSON, GeoPackage or Shapefile, in any CRS.

Geometries are stored in WGS84 as GeoJSON. Features with an empty, missing or invalid geometry
(or a duplicate id) are reported with their ids and skipped, never dropped silently.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import pyproj
import shapely

from eowatch.errors import EowatchError
from eowatch.seasons import SeasonStartError, check_season_start

from .contract.messages import shards_of
from .geometry import reproject

WGS84 = pyproj.CRS.from_epsg(4326)


class ImportError_(EowatchError, ValueError):
    """A vector file that cannot be imported at all."""


@dataclass
class ImportReport:
    imported: int = 0
    skipped: dict[str, list[str]] = field(default_factory=dict)  # reason -> feature ids

    def skip(self, reason: str, ids: list[str]) -> None:
        if ids:
            self.skipped.setdefault(reason, []).extend(ids)

    def summary(self) -> str:
        lines = [f"imported {self.imported}"]
        for reason, ids in self.skipped.items():
            shown = ", ".join(ids[:20]) + (" ..." if len(ids) > 20 else "")
            lines.append(f"skipped {len(ids)} with {reason}: {shown}")
        return "\n".join(lines)


def read_features(path: Path, id_field: str | None) -> tuple[np.ndarray, np.ndarray, dict, str]:
    """(ids, WGS84 geometries, attribute columns, source CRS) of a vector file."""
    if not path.is_file():
        raise ImportError_(f"{path}: no such file")
    try:
        meta, fids, wkb, columns = pyogrio.raw.read(path, return_fids=True)
    except Exception as exc:  # pyogrio raises its own DataSourceError and GDAL errors
        raise ImportError_(f"{path}: not a readable vector file ({exc})") from None
    attributes = dict(zip(meta["fields"], columns, strict=True))
    if id_field and id_field not in attributes:
        raise ImportError_(f"{path}: no attribute {id_field!r}; it has {list(attributes)}: "
                           "choose one with --id-field")
    ids = (np.array([str(v) for v in attributes[id_field]], dtype=object) if id_field
           else np.array([str(f) for f in fids], dtype=object))
    geometries = shapely.from_wkb(wkb)
    crs = meta.get("crs") or "EPSG:4326"  # GeoJSON without a crs member is WGS84 by RFC 7946
    source = pyproj.CRS.from_user_input(crs)
    if not source.equals(WGS84, ignore_axis_order=True):
        geometries = reproject(geometries, source, WGS84)
    return ids, geometries, attributes, source.to_string()


def prepare(path: Path, id_field: str | None, polygons_only: bool = True
            ) -> tuple[list[int], np.ndarray, np.ndarray, dict, ImportReport]:
    ids, geometries, attributes, _ = read_features(path, id_field)
    report = ImportReport()
    missing = shapely.is_missing(geometries)
    empty = ~missing & shapely.is_empty(geometries)
    invalid = ~missing & ~empty & ~shapely.is_valid(geometries)
    report.skip("no geometry", list(ids[missing]))
    report.skip("an empty geometry", list(ids[empty]))
    for i in np.flatnonzero(invalid):
        reason = shapely.is_valid_reason(geometries[i])
        report.skip(f"an invalid geometry ({reason.split('[')[0].strip()})", [ids[i]])
    ok = ~(missing | empty | invalid)
    if polygons_only:
        kind = shapely.get_type_id(geometries)
        not_polygon = ok & ~np.isin(kind, (3, 6))  # Polygon, MultiPolygon
        report.skip("a geometry that is not a polygon", list(ids[not_polygon]))
        ok &= ~not_polygon
    _, first = np.unique(ids, return_index=True)
    duplicate = np.ones(len(ids), bool)
    duplicate[first] = False
    report.skip("a duplicate id", list(ids[duplicate & ok]))
    ok &= ~duplicate
    keep = [int(i) for i in np.flatnonzero(ok)]
    return keep, ids, geometries, attributes, report


def _optional(attributes: dict, name: str | None, index: int) -> Any:
    if not name:
        return None
    value = attributes[name][index]
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _is_season_start(text: str | None) -> bool:
    try:
        check_season_start(text)
    except SeasonStartError:
        return False
    return True


def parcel_rows(path: Path, shards: int, id_field: str | None = None,
                label_field: str | None = None, season_start_field: str | None = None
                ) -> tuple[list[dict[str, Any]], ImportReport]:
    keep, ids, geometries, attributes, report = prepare(path, id_field)
    for name in (label_field, season_start_field):
        if name and name not in attributes:
            raise ImportError_(f"{path}: no attribute {name!r}; it has {list(attributes)}")
    starts = {i: _optional(attributes, season_start_field, i) for i in keep}
    bad_starts = [i for i, start in starts.items() if not _is_season_start(start)]
    for i in bad_starts:  # one reason per value, so the report shows what was written
        report.skip(f"a season start {starts[i]!r} in {season_start_field!r} that is not a "
                    "calendar day MM-DD", [ids[i]])
    keep = [i for i in keep if i not in set(bad_starts)]
    shard = shards_of(ids[keep], shards)
    rows = [{"id": ids[i], "shard": int(shard[n]),
             "geometry": json.dumps(shapely.geometry.mapping(geometries[i])),
             "label": _optional(attributes, label_field, i),
             "season_start": check_season_start(starts[i]),
             "source": path.name} for n, i in enumerate(keep)]
    report.imported = len(rows)
    return rows, report


def area_rows(path: Path, id_field: str | None = None, name_field: str | None = None
              ) -> tuple[list[dict[str, Any]], ImportReport]:
    keep, ids, geometries, attributes, report = prepare(path, id_field)
    rows = [{"id": ids[i], "name": _optional(attributes, name_field, i) or ids[i],
             "geometry": json.dumps(shapely.geometry.mapping(geometries[i])),
             "source": path.name} for i in keep]
    report.imported = len(rows)
    return rows, report
