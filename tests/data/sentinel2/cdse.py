"""A scene as the Copernicus Data Space serves it: JPEG 2000 per band and resolution in an S3
bucket laid out like ``s3://eodata``, and a STAC item in its v1 layout (the projection only on
the assets as ``proj:code``, ``processing:version``, ``B01_60m`` beside the resampled
``B01_20m``, ``SCL_20m``; no Earth Search extensions)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import rasterio
import shapely
from affine import Affine

from .scenes import BAND_RESOLUTION, Scene


def write_jp2(path: Path, array: Any, transform: Affine, epsg: int) -> None:
    """Lossless JPEG 2000 (as ESA's products are), nodata 0."""
    with rasterio.open(path, "w", driver="JP2OpenJPEG", width=array.shape[1],
                       height=array.shape[0], count=1, dtype=array.dtype, crs=f"EPSG:{epsg}",
                       transform=transform, nodata=0, QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(array, 1)


def product_id(scene: Scene) -> str:
    stamp = f"{scene.when:%Y%m%dT%H%M%S}"
    return (f"S2B_MSIL2A_{stamp}_N{scene.baseline.replace('.', '')}_R094_T{scene.tile.name}_"
            f"{stamp}")


def put_cdse_scene(s3: Any, bucket: str, scene: Scene, upsampled_b01: Any = None
                   ) -> dict[str, Any]:
    """Upload the scene's rasters to ``bucket`` with boto3 client ``s3`` and return its item.
    ``upsampled_b01``: what the resampled ``B01_20m`` holds (a resampling of other data shows
    whether the reader takes it instead of the native ``B01_60m``)."""
    x0, y0, x1, y1 = scene.window
    pid = product_id(scene)
    root = (f"Sentinel-2/MSI/L2A/{scene.when:%Y/%m/%d}/{pid}.SAFE/GRANULE/"
            f"L2A_T{scene.tile.name}/IMG_DATA")
    t = scene.tile.transform
    stamp = f"T{scene.tile.name}_{scene.when:%Y%m%dT%H%M%S}"
    rasters = {f"{band}_{res}m": (scene.dn(band), res) for band, res in BAND_RESOLUTION.items()}
    rasters["SCL_20m"] = (scene.scl(), 20)
    if upsampled_b01 is not None:
        rasters["B01_20m"] = (upsampled_b01, 20)
    assets = {}
    with tempfile.TemporaryDirectory() as tmp:
        for key, (array, res) in rasters.items():
            band = key.split("_")[0]
            name = f"{root}/R{res}m/{stamp}_{band}_{res}m.jp2"
            local = Path(tmp) / f"{key}.jp2"
            write_jp2(local, array, Affine(res, 0, x0, 0, -res, y1), scene.tile.epsg)
            s3.upload_file(str(local), bucket, name)
            native = BAND_RESOLUTION.get(band, 20)
            assets[key] = {
                "href": f"s3://{bucket}/{name}", "type": "image/jp2", "roles": ["data"],
                "gsd": res, "proj:code": f"EPSG:{scene.tile.epsg}",
                "proj:shape": [109_800 // res, 109_800 // res],
                "proj:transform": [res, 0, t.c, 0, -res, t.f],
                "bands": [{"name": band}],
                "sampling:upsampled" if res < native else "sampling:original": True}
    footprint = scene.tile.to_lonlat(shapely.box(*scene.window))
    return {
        "type": "Feature", "stac_version": "1.1.0", "id": pid,
        "collection": "sentinel-2-l2a",
        "geometry": json.loads(shapely.to_geojson(footprint)),
        "bbox": list(shapely.bounds(footprint)),
        "properties": {
            "datetime": scene.when.isoformat().replace("+00:00", "Z"),
            "processing:version": scene.baseline, "product:type": "S2MSI2A",
            "platform": "sentinel-2b", "eo:cloud_cover": 1.0,
            "grid:code": f"MGRS-{scene.tile.name}"},
        "assets": assets, "links": []}
