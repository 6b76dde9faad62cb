"""Build the daemon's pipeline in-process for tests, on either bus, and drive it by hand."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from eowatch.daemon.service import Daemon
from eowatch.models.datasets.base import SeriesSet
from eowatch.settings import load_settings


def make_daemon(tmp_path: Path, bus: str, prefix: str, kafka_bootstrap: str | None = None,
                store_url: str | None = None, feed_settings: dict[str, dict] | None = None,
                **overrides: object) -> Daemon:
    """``feed_settings``: settings of each feed (the simulated one: 150 parcels, one season,
    at once)."""
    settings = load_settings(**{
        "data_dir": tmp_path, "bus": bus, "topic_prefix": prefix,
        "consumer_group": f"{prefix}-group", "kafka_bootstrap": kafka_bootstrap or "127.0.0.1:9",
        "store_url": store_url, "partitions": 4, "shards": 8, "api_port": 0,
        "feeds": ("simulated",), **overrides})
    simulated = {"parcels": 150, "seasons": 1, "days_per_second": 1e6}
    feed_settings = feed_settings or {}
    return Daemon(settings, feed_settings={
        **feed_settings, "simulated": {**simulated, **feed_settings.get("simulated", {})}})


def drain(daemon: Daemon, timeout_s: float = 120.0) -> None:
    """Poll the feeds until they are finished and consume until nothing is left."""
    deadline = time.monotonic() + timeout_s
    idle = 0
    while time.monotonic() < deadline:
        for adapter in daemon.adapters:
            adapter.poll()
        handled = daemon.consumer.run_once(timeout_s=0.5)
        finished = all(getattr(a, "finished", True) for a in daemon.adapters)
        idle = idle + 1 if not handled and finished else 0
        consumer = daemon.consumer.consumer
        if idle >= 3 and consumer.assignment() and consumer.lag() == 0:
            daemon.consumer.checkpoint()  # what a running daemon does within a second
            return
    raise TimeoutError("pipeline did not drain")


def parcel_states(daemon: Daemon, n_parcels: int = 150) -> dict[str, np.ndarray]:
    """The state rows of the simulated parcels in the daemon's memory: recurrent state,
    stopping score, observations stepped and last acquisition time."""
    t = daemon.processor.table
    rows = t.lookup(np.array([f"sim-{i:06d}" for i in range(n_parcels)], dtype=object))
    return {"state": t.state[rows].numpy(), "p_stop": t.p_stop[rows],
            "observations": t.observations[rows], "last_time": t.last_time[rows]}


def simulated_season(n_parcels: int, seed: int = 0) -> SeriesSet:
    """The series the simulated feed plays in its first season (its simulator seed is
    seed * 1000 + season), less the observations the daemon skips as cloudy (the default
    EOWATCH_MIN_VALID_FRACTION, 0.5), with values rounded to float16 as the daemon steps them
    when it keeps its observation log (the default)."""
    from dataclasses import replace

    import numpy as np

    from eowatch.daemon.observation_log import LOG_BANDS
    from eowatch.models.datasets.simulator import ParcelSimulator

    series = ParcelSimulator(n_parcels, seed=seed * 1000).series(min_valid_fraction=0.5)
    return replace(series, values=series.values.astype(LOG_BANDS).astype(np.float32))


def offline_decisions(n_parcels: int, seed: int = 0) -> dict[str, tuple[str, float]]:
    """What the bundled model decides for each simulated parcel when it reads the whole season
    at once (training-time forward pass + the deterministic stopping rule): parcel -> (class,
    day of season). The simulated feed stamps acquisitions at 10:30 UTC, so days shift by that."""
    from dataclasses import replace

    import numpy as np

    from eowatch.models.artifact import load_artifact
    from eowatch.models.metrics import predict
    from eowatch.settings import DEFAULT_MODEL

    loaded = load_artifact(DEFAULT_MODEL)
    series = simulated_season(n_parcels, seed).select_bands(loaded.metadata.band_names)
    series = replace(series, days=series.days + np.float32(10.5 / 24))
    p = predict(loaded.model, series, loaded.metadata.stop_threshold)
    return {f"sim-{i:06d}": (loaded.metadata.class_names[p.predicted[i]],
                             round(float(p.stop_day[i]), 3)) for i in range(n_parcels)}


def offline_observation_count(n_parcels: int, seed: int = 0) -> int:
    """How many observations of the simulated parcels the model steps in one season (the
    cloud-free ones): what the consumer counts when nothing is lost or stepped twice."""
    return int(simulated_season(n_parcels, seed).lengths.sum())
