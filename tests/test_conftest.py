"""The suite's own rule: under CI a missing component fails instead of skipping."""

import pytest

from .conftest import truthy


@pytest.mark.parametrize("value, expected", [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), (" on ", True),
    ("false", False), ("0", False), ("no", False), ("", False), (None, False)])
def test_ci_counts_only_when_true(value, expected):
    assert truthy(value) is expected
