"""What a feed is, what it may ask of the daemon, how it counts its work and is configured.

A feed module defines a ``FEED_SPEC = FeedSpec(...)`` (name, settings model, factory); the
registry (``eowatch.contract.registry``) finds it, so the daemon needs no line per feed.
"""

from __future__ import annotations

import tomllib
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from eowatch.errors import EowatchError

from .messages import ObservationChunk


class FeedHost(Protocol):
    """What the daemon offers a feed: publishing with its cursor, and the targets to observe."""

    def publish(self, feed: str, chunks: Sequence[ObservationChunk],
                cursor: dict[str, Any]) -> None:
        """Publish ``chunks`` durably, then store ``cursor``: the cursor never moves past what
        the bus did not take (raises the bus's error before it moves)."""

    def cursor(self, feed: str) -> dict[str, Any] | None:
        """The cursor the feed last published with (None before its first publication)."""

    def parcels_version(self) -> tuple[int, datetime | None]:
        """Changes whenever parcels are imported: reload the geometries when it does."""

    def parcel_geometries(self, exclude_source: str | None = None
                          ) -> tuple[list[str], list[int], list[str]]:
        """Registered parcels: ids, shards and WGS84 GeoJSON geometries."""

    def upsert_parcels(self, rows: Sequence[dict[str, Any]]) -> None:
        """Register parcels a feed brings with it (id, shard, geometry, label, season start,
        source)."""

    def areas(self) -> list[dict[str, Any]]:
        """Registered areas: id, name, WGS84 GeoJSON geometry and cell grid definition."""

    def upsert_area(self, row: dict[str, Any], grid: dict[str, Any],
                    cells: Sequence[dict[str, Any]]) -> None:
        """Register an area a feed brings with it (id, name, geometry, source) with its grid
        and cells (eowatch.cells.cell_rows)."""


class Progress(Protocol):
    """A progress bar (tqdm's interface): how many acquisitions there are, and each done."""

    def reset(self, total: float | None = None) -> None: ...

    def update(self, n: float | None = 1) -> bool | None: ...


@dataclass
class Backfilled:
    """What a backfill did."""

    published: int = 0   # acquisitions published now
    chunks: int = 0
    earlier: int = 0     # acquisitions an earlier run of the same period published
    skipped: list[str] = field(default_factory=list)  # "<acquisition>: <reason>"
    handed_over: bool = False  # the live feed (without a cursor yet) continues from its end


def backfill_key(feed: str, since: datetime, until: datetime) -> str:
    """The cursor of a backfill of one period (a second run of it resumes from there)."""
    def text(when: datetime) -> str:
        return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{feed}:backfill:{text(since)}/{text(until)}"


class Feed(ABC):
    """A feed: ``poll`` publishes what is new since the cursor and returns the chunk count."""

    name: str
    interval_seconds: float
    band_names: tuple[str, ...]
    targets: str = "parcels"  # what it observes: parcels (the crop model), cells (floods)

    @abstractmethod
    def poll(self) -> int: ...

    def stop(self) -> None:
        """Ask a poll in flight to end after the acquisition it is publishing, so that a
        shutdown waits for one acquisition, not for a whole backlog."""
        return  # feeds whose polls are short have nothing to do

    def backfill(self, since: datetime, until: datetime, progress: Progress | None = None
                 ) -> Backfilled:
        """Publish the acquisitions of [since, until] in acquisition order, through the same
        code and bus as polls, with a cursor of the period's own (``backfill_key``): the live
        cursor stays where it is, and a second run of the period publishes nothing again.
        When the live feed has no cursor yet, it continues from the period's end."""
        raise EowatchError(f"feed {self.name!r} cannot replay a past period")


def chunks_by_shard(feed: str, acquisition_id: str, acquired_at: datetime,
                    band_names: Sequence[str], parcel_ids: np.ndarray, shards: np.ndarray,
                    values: np.ndarray, valid_fraction: np.ndarray,
                    targets: str = "parcels") -> list[ObservationChunk]:
    """Split one acquisition's per-target rows into one chunk per shard (no per-target loop).

    Within a chunk targets are in id order, the order in which the consumer lays out a shard's
    state rows: a chunk that holds the whole shard then maps to one block of rows."""
    by_id = np.argsort(parcel_ids, kind="stable")
    order = by_id[np.argsort(shards[by_id], kind="stable")]
    shard_values, starts = np.unique(shards[order], return_index=True)
    bounds = list(starts[1:]) + [len(order)]
    return [ObservationChunk(feed=feed, acquisition_id=acquisition_id, acquired_at=acquired_at,
                             band_names=tuple(band_names), shard=int(shard),
                             parcel_ids=parcel_ids[order[a:b]], values=values[order[a:b]],
                             valid_fraction=valid_fraction[order[a:b]], targets=targets)
            for shard, a, b in zip(shard_values, starts, bounds, strict=True)]


class FeedMetrics:
    """The metrics every feed shares (label ``feed``); the daemon's Metrics extends these."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.feed_polls = Counter("eowatch_feed_polls_total", "Feed polls", ["feed"], registry=r)
        self.feed_errors = Counter("eowatch_feed_errors_total", "Feed polls that failed",
                                   ["feed", "stage"], registry=r)
        self.feed_interval = Gauge("eowatch_feed_interval_seconds",
                                   "Interval between a feed's polls", ["feed"], registry=r)
        self.feed_last_success = Gauge("eowatch_feed_last_success_timestamp_seconds",
                                       "Unix time of the feed's last successful poll", ["feed"],
                                       registry=r)
        self.feed_chunks = Counter("eowatch_feed_chunks_published_total",
                                   "Chunks a feed published", ["feed"], registry=r)
        self.feed_items = Counter("eowatch_feed_items_total",
                                  "Feed items (scenes) by outcome: published, no_parcels, failed "
                                  "(retried at the next poll), skipped (after too many failures)",
                                  ["feed", "outcome"], registry=r)
        self.feed_parcels = Counter("eowatch_feed_parcel_observations_total",
                                    "Parcels measured by a feed: observed, or no_valid_pixels",
                                    ["feed", "outcome"], registry=r)
        self.feed_item_seconds = Histogram(
            "eowatch_feed_item_seconds", "Time to read one item and publish it", ["feed"],
            registry=r, buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
        self.offset_contradictions = Counter(
            "eowatch_reflectance_offset_contradictions_total",
            "Items whose data contradict their metadata about the reflectance offset",
            ["feed"], registry=r)


class FeedSettings(BaseSettings):
    """Base of a feed's settings. A subclass sets ``env_prefix`` (``EOWATCH_S2_``); the same
    names, lower case and without ``eowatch_``, are read from the TOML settings file
    (``s2_stac_url = ...``). Precedence: arguments > environment > TOML file > defaults.
    Loaded by ``registry.load_feed_settings``."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid")
    config_file: ClassVar[Path | None] = None  # set while loading: the TOML file to read

    @classmethod
    def toml_prefix(cls) -> str:
        prefix = str(cls.model_config.get("env_prefix", "")).lower()
        return prefix.removeprefix("eowatch_")

    @classmethod
    def settings_customise_sources(
        cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource, dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _TomlKeys(settings_cls)


class _TomlKeys(PydanticBaseSettingsSource):
    """A feed's keys of the TOML settings file (``s2_stac_url``), without their prefix."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ does the work

    def __call__(self) -> dict[str, Any]:
        cls: Any = self.settings_cls
        if cls.config_file is None:
            return {}
        prefix = cls.toml_prefix()
        return {key.removeprefix(prefix): value for key, value in read_toml(cls.config_file).items()
                if key.startswith(prefix)}


def read_toml(path: Path) -> dict[str, Any]:
    with open(path, "rb") as file:
        return tomllib.load(file)


@dataclass(frozen=True)
class FeedContext:
    """What the daemon hands a feed's factory."""

    host: FeedHost
    band_names: tuple[str, ...]  # the model's, in its order: publish these
    shards: int                  # N_SHARDS of the deployment
    metrics: FeedMetrics


@dataclass(frozen=True)
class FeedSpec:
    """A feed as the registry knows it."""

    name: str
    settings: type[FeedSettings]
    factory: Callable[[Any, FeedContext], Feed]  # (its settings, context) -> the feed
    summary: str
