import json

import numpy as np
import pyogrio
import pytest
import shapely

from eowatch.cli import main
from eowatch.daemon.store.store import Store
from eowatch.parcels import ImportError_, parcel_rows


def write_layer(path, driver, crs="EPSG:2154"):
    """Parcels in Lambert-93 around Rennes: two good, one self-intersecting, one empty."""
    x, y = 351_000.0, 6_789_000.0
    square = shapely.Polygon([(x, y), (x + 100, y), (x + 100, y + 80), (x, y + 80)])
    bowtie = shapely.Polygon([(x, y), (x + 100, y + 80), (x + 100, y), (x, y + 80)])
    geometries = np.array([square, shapely.affinity.translate(square, 300), bowtie,
                           shapely.Polygon()], dtype=object)
    pyogrio.raw.write(path, geometry=shapely.to_wkb(geometries), field_data=[
        np.array(["FR-1", "FR-2", "FR-3", "FR-4"], dtype=object),
        np.array(["maize", "wheat", "maize", "wheat"], dtype=object)],
        fields=["parcel_id", "crop"], geometry_type="Polygon", crs=crs, driver=driver)
    return path


@pytest.mark.parametrize("suffix,driver", [(".geojson", "GeoJSON"), (".gpkg", "GPKG"),
                                           (".shp", "ESRI Shapefile")])
def test_import_any_format_and_crs_reports_bad_geometries(tmp_path, suffix, driver):
    path = write_layer(tmp_path / f"parcels{suffix}", driver)
    rows, report = parcel_rows(path, 256, id_field="parcel_id", label_field="crop")
    assert [r["id"] for r in rows] == ["FR-1", "FR-2"]
    # Shapefiles store an empty polygon as a null shape
    assert report.skipped.get("an empty geometry", report.skipped.get("no geometry")) == ["FR-4"]
    assert [k for k in report.skipped if k.startswith("an invalid geometry")]
    ring = json.loads(rows[0]["geometry"])["coordinates"][0]
    lon, lat = ring[0]
    assert -1.80 < lon < -1.60 and 48.0 < lat < 48.2  # Lambert-93 -> WGS84 near Rennes
    assert rows[0]["label"] == "maize" and 0 <= rows[0]["shard"] < 256


def test_cli_import_stores_parcels(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EOWATCH_DATA_DIR", str(tmp_path / "var"))
    path = write_layer(tmp_path / "p.gpkg", "GPKG")
    assert main(["parcels", "import", str(path), "--id-field", "parcel_id",
                 "--label-field", "crop"]) == 0
    out = capsys.readouterr().out
    assert "imported 2" in out and "FR-4" in out and "FR-3" in out
    store = Store(f"sqlite:///{tmp_path / 'var' / 'eowatch.db'}")
    assert set(store.parcel_registry()) == {"FR-1", "FR-2"}
    assert main(["areas", "import", str(path), "--id-field", "parcel_id"]) == 0


def test_unknown_field_and_missing_file(tmp_path):
    path = write_layer(tmp_path / "p.geojson", "GeoJSON")
    with pytest.raises(ImportError_, match="--id-field"):
        parcel_rows(path, 16, id_field="nope")
    with pytest.raises(ImportError_, match="no such file"):
        parcel_rows(tmp_path / "absent.gpkg", 16)


def test_import_refuses_season_starts_that_are_no_calendar_day(tmp_path):
    x, y = 351_000.0, 6_789_000.0
    squares = [shapely.box(x + 300 * i, y, x + 300 * i + 100, y + 80) for i in range(5)]
    path = tmp_path / "parcels.gpkg"
    pyogrio.raw.write(path, geometry=shapely.to_wkb(np.array(squares, dtype=object)),
                      field_data=[np.array([f"FR-{i}" for i in range(5)], dtype=object),
                                  np.array(["09-01", "13-01", "2024-03-01", "02-29", None],
                                           dtype=object)],
                      fields=["parcel_id", "start"], geometry_type="Polygon", crs="EPSG:2154",
                      driver="GPKG")
    rows, report = parcel_rows(path, 16, id_field="parcel_id", season_start_field="start")
    assert [(r["id"], r["season_start"]) for r in rows] == [
        ("FR-0", "09-01"), ("FR-3", "02-29"), ("FR-4", None)]
    assert report.skipped == {
        "a season start '13-01' in 'start' that is not a calendar day MM-DD": ["FR-1"],
        "a season start '2024-03-01' in 'start' that is not a calendar day MM-DD": ["FR-2"]}
