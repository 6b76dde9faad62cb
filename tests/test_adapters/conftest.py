"""Fixtures of the feed tests: a local STAC API with COGs, and a store for a feed."""

from __future__ import annotations

import pytest

from eowatch.daemon.store.store import Store
from tests.data.sentinel2 import StacServer


@pytest.fixture
def server(tmp_path):
    with StacServer(tmp_path) as srv:
        yield srv


@pytest.fixture
def feed_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'feed.db'}")
    store.migrate()
    yield store
    store.close()
