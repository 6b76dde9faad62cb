"""Feeds register themselves: a new module with a FEED_SPEC is listed, configured and run."""

from __future__ import annotations

import textwrap

import pytest

import eowatch.adapters
from eowatch.cli import main
from eowatch.contract.feeds import FeedSettings
from eowatch.contract.registry import (
    FeedError,
    check_config_keys,
    feed_spec,
    feed_specs,
    load_feed_settings,
)
from eowatch.daemon.store.tables import DecisionRow
from tests.test_daemon.pipeline import drain, make_daemon

# A whole feed, as a newcomer writes it: its module, its settings, nothing anywhere else.
# It observes 40 parcels of its own every ``every_days`` days of one season, all alike.
EXAMPLE = '''
from datetime import UTC, datetime, timedelta

import numpy as np
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from eowatch.contract.feeds import Feed, FeedSettings, FeedSpec, chunks_by_shard
from eowatch.contract.messages import ObservationChunk, shards_of


class ExampleSettings(FeedSettings):
    model_config = SettingsConfigDict(env_prefix="EOWATCH_EXAMPLE_", frozen=True,
                                      extra="forbid")
    parcels: int = Field(40, ge=1, description="parcels observed")
    every_days: int = Field(10, ge=1, description="days between acquisitions")


class ExampleFeed(Feed):
    name = "example"
    interval_seconds = 1.0

    def __init__(self, settings, context):
        self.host, self.band_names = context.host, context.band_names
        self.ids = np.array([f"ex-{i:03d}" for i in range(settings.parcels)], dtype=object)
        self.shards = shards_of(self.ids, context.shards)
        self.every = settings.every_days
        self.host.upsert_parcels([{"id": p, "shard": int(s), "season_start": "01-01",
                                   "source": self.name} for p, s in zip(self.ids, self.shards)])

    @property
    def finished(self):
        return (self.host.cursor(self.name) or {}).get("day", 0) > 360

    def poll(self):
        day = (self.host.cursor(self.name) or {}).get("day", 0)
        when = datetime(2026, 1, 1, 11, tzinfo=UTC) + timedelta(days=day)
        if day > 360:
            return 0
        if day == 360:
            chunks = [ObservationChunk(self.name, "EX_END", when, self.band_names, int(s),
                                       np.array([], dtype=object),
                                       np.zeros((0, len(self.band_names)), np.float32),
                                       np.zeros(0, np.float32), kind="season_end", season=2026)
                      for s in np.unique(self.shards)]
        else:
            values = np.full((len(self.ids), len(self.band_names)), 0.05 + day / 3600,
                             np.float32)
            chunks = chunks_by_shard(self.name, f"EX_{day}", when, self.band_names, self.ids,
                                     self.shards, values, np.ones(len(self.ids), np.float32))
        self.host.publish(self.name, chunks, {"day": day + (1 if day == 360 else self.every)})
        return len(chunks)


FEED_SPEC = FeedSpec("example", ExampleSettings, ExampleFeed, "an example: constant parcels")
'''


@pytest.fixture
def example_feed(tmp_path):
    """The example feed as one more module of the adapters package (a directory of its path)."""
    (tmp_path / "example_feed.py").write_text(textwrap.dedent(EXAMPLE))
    eowatch.adapters.__path__.append(str(tmp_path))
    feed_specs.cache_clear()
    yield
    eowatch.adapters.__path__.remove(str(tmp_path))
    feed_specs.cache_clear()


def test_a_new_feed_module_is_listed_with_its_settings(example_feed, capsys, monkeypatch):
    monkeypatch.setenv("EOWATCH_EXAMPLE_EVERY_DAYS", "5")
    assert main(["feeds"]) == 0
    listed = capsys.readouterr().out
    assert "example (disabled): an example: constant parcels" in listed
    assert "EOWATCH_EXAMPLE_EVERY_DAYS" in listed and " = 5 " in listed
    assert "simulated (enabled)" in listed and "EOWATCH_S2_STAC_URL" in listed


def test_a_new_feed_module_runs(example_feed, tmp_path, unique):
    daemon = make_daemon(tmp_path, "embedded", unique, feeds=("example",),
                         feed_settings={"example": {"every_days": 20}})
    try:
        assert [a.name for a in daemon.adapters] == ["example"]
        drain(daemon)
        chunks = daemon.metrics.registry.get_sample_value(
            "eowatch_chunks_consumed_total", {"feed": "example"})
        assert chunks == 18 * len(set(daemon.adapters[0].shards))  # days 0, 20, ... 340
        assert daemon.store.count(DecisionRow) == 40  # every parcel, by the season's end at last
    finally:
        daemon.shutdown()


def test_feed_settings_come_from_the_environment_then_the_file(tmp_path, monkeypatch):
    config = tmp_path / "eowatch.toml"
    config.write_text('s2_collection = "sentinel-2-l1c"\ns2_page_size = 7\nshards = 64\n')
    monkeypatch.setenv("EOWATCH_S2_PAGE_SIZE", "9")
    values = load_feed_settings(feed_spec("sentinel2"), config)
    assert (values.collection, values.page_size) == ("sentinel-2-l1c", 9)  # type: ignore
    check_config_keys(config, {"shards"})


def test_unknown_feeds_and_settings_are_refused(tmp_path, monkeypatch):
    with pytest.raises(FeedError, match="unknown feed 'sentinel3'.*sentinel2, simulated"):
        feed_spec("sentinel3")
    config = tmp_path / "eowatch.toml"
    config.write_text("s2_colection = 'typo'\nshrads = 3\n")
    with pytest.raises(FeedError, match="unknown setting.*shrads"):
        check_config_keys(config, {"shards"})
    with pytest.raises(FeedError, match="EOWATCH_S2_COLECTION: Extra inputs"):
        load_feed_settings(feed_spec("sentinel2"), config)
    monkeypatch.setenv("EOWATCH_SIM_PARCELS", "0")
    with pytest.raises(FeedError, match="EOWATCH_SIM_PARCELS: Input should be greater"):
        load_feed_settings(feed_spec("simulated"), None)


def test_every_feed_has_its_own_settings_model():
    specs = feed_specs()
    assert {"simulated", "sentinel2"} <= set(specs)
    prefixes = [s.settings.model_config["env_prefix"] for s in specs.values()]
    assert len(set(prefixes)) == len(prefixes)
    assert all(issubclass(s.settings, FeedSettings) for s in specs.values())
