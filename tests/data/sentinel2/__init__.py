"""The Sentinel-2 feed's test kit: scenes in Earth Search's formats and a STAC/COG server."""

from .scenes import (
    BAND_RESOLUTION,
    CROP,
    SOIL,
    T30UWU,
    T30UXU,
    Scene,
    Tile,
    aligned_window,
    fixture_item,
    write_cog,
    write_scene,
)
from .server import StacServer

__all__ = ["BAND_RESOLUTION", "CROP", "SOIL", "T30UWU", "T30UXU", "Scene", "StacServer", "Tile",
           "aligned_window", "fixture_item", "write_cog", "write_scene"]
