"""The Sentinel-1 test kit: GRD products built on the real SAFE annotation of the shared
fixture, with generated DN, served by the Sentinel-2 kit's local STAC server."""

from .grd import SAFE, GrdScene, truncate, write_grd
from .rtc import write_rtc

__all__ = ["SAFE", "GrdScene", "truncate", "write_grd", "write_rtc"]
