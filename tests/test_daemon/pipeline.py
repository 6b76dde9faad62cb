"""Build the daemon's pipeline in-process for tests, on either bus, and drive it by hand."""

from __future__ import annotations

import time
from pathlib import Path

from eowatch.daemon.service import Daemon
from eowatch.settings import load_settings


def make_daemon(tmp_path: Path, bus: str, prefix: str, kafka_bootstrap: str | None = None,
                store_url: str | None = None, **overrides: object) -> Daemon:
    settings = load_settings(**{
        "data_dir": tmp_path, "bus": bus, "topic_prefix": prefix,
        "consumer_group": f"{prefix}-group", "kafka_bootstrap": kafka_bootstrap or "127.0.0.1:9",
        "store_url": store_url, "partitions": 4, "shards": 8, "sim_parcels": 150,
        "sim_seasons": 1, "sim_days_per_second": 1e6, "api_port": 0, **overrides})
    return Daemon(settings)


def drain(daemon: Daemon, timeout_s: float = 120.0) -> None:
    """Poll the feeds until they are finished and consume until nothing is left."""
    deadline = time.monotonic() + timeout_s
    idle = 0
    while time.monotonic() < deadline:
        for adapter in daemon.adapters:
            adapter.poll()
        handled = daemon.consumer.run_once(timeout_s=0.5)
        finished = all(getattr(a, "finished", True) for a in daemon.adapters)
        idle = idle + 1 if handled == 0 and finished else 0
        consumer = daemon.consumer.consumer
        if idle >= 3 and consumer.assignment() and consumer.lag() == 0:
            return
    raise TimeoutError("pipeline did not drain")
