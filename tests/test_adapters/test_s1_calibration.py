"""Sentinel-1 GRD calibration from the real product's annotation (../shared/fixtures)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pytest

from eowatch.adapters.s1_calibration import Calibration, CalibrationError
from tests.conftest import unavailable
from tests.data.sentinel1 import SAFE


@pytest.fixture(scope="module")
def vv() -> Calibration:
    if not SAFE.is_dir():
        unavailable("the shared Sentinel-1 fixture", f"{SAFE} not found")
    return Calibration.from_safe(SAFE, "vv")


def vector(kind: str, index: int, value_tag: str) -> tuple[int, np.ndarray, np.ndarray]:
    """(line, pixels, values) of one vector of the real annotation, read independently."""
    name = "calibration" if kind == "calibration" else "noise"
    path = next((SAFE / "annotation" / "calibration").glob(f"{name}-*.xml"))
    list_tag = "calibrationVectorList" if kind == "calibration" else "noiseRangeVectorList"
    v = ET.parse(path).getroot().find(list_tag)[index]
    return (int(v.findtext("line")), np.array(v.findtext("pixel").split(), float),
            np.array(v.findtext(value_tag).split(), float))


def test_sigma0_at_a_lut_grid_point_is_the_hand_computation(vv):
    line, pixels, sigma = vector("calibration", 0, "sigmaNought")
    _, noise_pixels, noise = vector("noise", 0, "noiseRangeLut")
    assert (line, pixels[1], noise_pixels[1]) == (0, 40, 40)
    azimuth = 1.091791  # IW1's first noiseAzimuthLut value, at line 0
    dn = np.full((1, 1), 250, np.uint16)
    expected = (250.0 ** 2 - noise[1] * azimuth) / sigma[1] ** 2
    assert vv.sigma0(dn, 0, 40)[0, 0] == pytest.approx(expected, rel=1e-9)


def test_between_grid_points_the_luts_are_bilinear(vv):
    line0, pixels, sigma0_row = vector("calibration", 0, "sigmaNought")
    line1, _, sigma1_row = vector("calibration", 1, "sigmaNought")
    row, col = (line0 + line1) // 2, 60  # half-way between pixels 40 and 80
    t = (row - line0) / (line1 - line0)
    a0, a1 = np.interp(col, pixels, sigma0_row), np.interp(col, pixels, sigma1_row)
    expected_a = a0 + t * (a1 - a0)
    got = vv.sigma.window(np.array([row], float), np.array([col], float))[0, 0]
    assert got == pytest.approx(expected_a, rel=1e-12)
    assert sigma0_row[1] != sigma0_row[2]  # a real slope, not a flat LUT


def test_noise_is_removed_before_calibration_and_never_goes_negative(vv):
    dn = np.array([[0, 10, 50, 400]], np.uint16)
    sigma0 = vv.sigma0(dn, 1000, 5000)
    assert sigma0[0, 0] == 0 and sigma0[0, 1] == 0   # noise above the signal: clipped
    assert 0 < sigma0[0, 2] < sigma0[0, 3]
    db = 10 * np.log10(sigma0[0, 3])
    assert -25 < db < 5   # a DN of 400 is a plausible land backscatter


def test_the_azimuth_noise_of_each_swath_block_applies_to_its_samples(vv):
    assert [b.first_sample for b in vv.noise_azimuth] == [0, 8890, 17701]
    rows, cols = np.array([0.0]), np.array([8889.0, 8890.0])
    range_only = vv.noise_range.window(rows, cols)[0]
    both = vv.noise(rows, cols)[0]
    ratios = both / range_only
    assert ratios[0] == pytest.approx(vv.noise_azimuth[0].values[0])
    assert ratios[1] == pytest.approx(vv.noise_azimuth[1].values[0])


def test_missing_or_broken_annotation_is_a_clear_error(vv):
    with pytest.raises(CalibrationError, match="no calibration annotation for VH"):
        Calibration.from_safe(SAFE, "vh")  # the fixture carries VV only
    with pytest.raises(CalibrationError, match="calibration: not XML"):
        Calibration.from_xml(b"<calibration>", b"<noise/>")
    with pytest.raises(CalibrationError, match="no calibrationVectorList"):
        Calibration.from_xml(b"<calibration/>", b"<noise/>")
