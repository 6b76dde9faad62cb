"""An item in Planetary Computer's ``sentinel-2-l2a`` layout: assets keyed by band (``B04``,
``SCL``), ``proj:epsg`` and ``s2:processing_baseline`` in the properties, no Earth Search
extensions, and COGs as ESA delivers them (raw DNs from baseline 04.00 on). The COGs are the
test kit's, on the local server: Planetary Computer's own live on Azure Blob Storage."""

from __future__ import annotations

import copy
from typing import Any

from .scenes import ASSET_OF


def planetary_item(earth_search_item: dict[str, Any]) -> dict[str, Any]:
    """The same acquisition and rasters, described as Planetary Computer does."""
    item = copy.deepcopy(earth_search_item)
    assets = {band: item["assets"][key] for band, key in ASSET_OF.items()}
    assets["SCL"] = item["assets"]["scl"]
    for asset in assets.values():
        asset.pop("raster:bands", None)
    item["assets"] = assets
    item["properties"] = {k: v for k, v in item["properties"].items()
                          if not k.startswith("earthsearch:")}
    item["stac_extensions"] = [e for e in item.get("stac_extensions", [])
                               if "earthsearch" not in e]
    return item
