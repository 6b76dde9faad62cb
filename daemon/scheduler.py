"""Runs each enabled feed adapter at its interval (APScheduler 3): never two runs of one
adapter at once, with jitter; a failing poll is counted and retried at the next interval."""

from __future__ import annotations

import logging
import time

from apscheduler.schedulers.background import BackgroundScheduler

from eowatch.contract.feeds import Feed

from .metrics import Metrics

log = logging.getLogger(__name__)


def poll_job(adapter: Feed, metrics: Metrics) -> None:
    """One poll of one feed; errors never escape into the scheduler."""
    metrics.feed_polls.labels(adapter.name).inc()
    try:
        chunks = adapter.poll()
    except Exception as exc:  # a feed fault must not stop the daemon: count, log, retry later
        metrics.feed_errors.labels(adapter.name, getattr(exc, "stage", "poll")).inc()
        log.error("feed %s: poll failed (%s: %s); retrying at the next interval",
                  adapter.name, exc.__class__.__name__, exc)
        return
    metrics.feed_chunks.labels(adapter.name).inc(chunks)
    metrics.feed_last_success.labels(adapter.name).set(time.time())


def build_scheduler(adapters: list[Feed], metrics: Metrics,
                    jitter_s: float) -> BackgroundScheduler:
    scheduler = BackgroundScheduler(timezone="UTC")
    for adapter in adapters:
        metrics.feed_interval.labels(adapter.name).set(adapter.interval_seconds)
        scheduler.add_job(poll_job, "interval", args=(adapter, metrics), id=adapter.name,
                          name=f"poll {adapter.name}", seconds=adapter.interval_seconds,
                          jitter=jitter_s or None, max_instances=1, coalesce=True,
                          next_run_time=None)
    return scheduler


def start(scheduler: BackgroundScheduler) -> None:
    """Start and run every job once right away (the interval trigger waits a whole period)."""
    from datetime import UTC, datetime

    scheduler.start()
    for job in scheduler.get_jobs():
        job.modify(next_run_time=datetime.now(UTC))
