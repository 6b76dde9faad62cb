"""The delivery worker: sends the outbox's due deliveries, retries on the Standard Webhooks
schedule, and disables endpoints that are gone or keep failing.

Deliveries are written by the checkpoint that stores their decision or alert (the outbox), so
none is lost between the event and its sending. The worker claims due deliveries with a lease
(a member that dies mid-send leaves them to be claimed again when the lease runs out): a
delivery is sent at least once, every time with the same ``webhook-id``, so receivers drop
repeats. Clock and resolver are injected: tests play a day-long outage against the real
schedule in seconds.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any

from ..metrics import Metrics
from ..store.store import Store
from .sending import TIMEOUT_S, Outcome, headers, post
from .targets import Resolver, TargetRefused, check, system_resolver

log = logging.getLogger(__name__)
# seconds to wait after each failed attempt before the next (Standard Webhooks' schedule:
# immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h); after the last, failed
SCHEDULE_S = (5, 300, 1800, 7200, 18000, 36000, 50400, 72000, 86400)
JITTER = 0.1                               # ± share of each wait, so retries do not stampede
DISABLE_AFTER = timedelta(days=5)          # an endpoint failing this long is disabled
LEASE_S = 4 * TIMEOUT_S                    # a claimed delivery is this worker's for so long


def next_wait(failures: int, rng: random.Random) -> float | None:
    """Seconds before the next attempt after ``failures`` failed ones; None when given up."""
    if failures > len(SCHEDULE_S):
        return None
    wait = SCHEDULE_S[failures - 1]
    return wait * rng.uniform(1 - JITTER, 1 + JITTER)


@dataclass(frozen=True)
class Due:
    """A claimed delivery with what sending it needs."""

    delivery_id: str
    subscription_id: str
    url: str
    secrets: list[str]
    body: str
    attempts: int
    failing_since: datetime | None


class DeliveryWorker:
    def __init__(self, store: Store, metrics: Metrics,
                 allowed: Sequence[IPv4Network | IPv6Network] = (),
                 clock: Callable[[], float] = time.time, resolve: Resolver = system_resolver,
                 send: Callable[..., Outcome] = post, batch: int = 64, threads: int = 8,
                 owner: str = "worker", rng: random.Random | None = None) -> None:
        self.store, self.metrics, self.allowed = store, metrics, list(allowed)
        self.clock, self.resolve, self.send = clock, resolve, send
        self.batch, self.owner = batch, owner
        self.rng = rng or random.Random()
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="webhook")

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def run_once(self) -> int:
        """Send every delivery due now (in parallel); returns how many were attempted."""
        now = self.now()
        due = [Due(**row) for row in self.store.claim_deliveries(
            now, self.batch, self.owner, now + timedelta(seconds=LEASE_S))]
        if due:
            self.store.record_attempts(list(self.pool.map(self.attempt, due)))
        self.report(now)
        return len(due)

    def run(self, stop: threading.Event, idle_s: float = 1.0) -> None:
        while not stop.is_set():
            try:
                if not self.run_once():
                    stop.wait(idle_s)
            except Exception:  # the store briefly away, say: the worker must live on
                log.exception("webhook delivery round failed; retrying")
                stop.wait(5.0)

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    def attempt(self, due: Due) -> dict[str, Any]:
        sent_at = datetime.now(UTC)   # the signature's time is the real one, for the receiver
        try:
            target = check(due.url, self.allowed, self.resolve)
        except TargetRefused as exc:  # DNS may have changed since the subscription was made
            outcome = Outcome(None, f"refused: {exc}")
        else:
            outcome = self.send(target, headers(due.secrets, due.delivery_id, due.body, sent_at),
                                due.body)
        self.metrics.webhook_attempts.labels(outcome.label).inc()
        return self.verdict(due, outcome)

    def verdict(self, due: Due, outcome: Outcome) -> dict[str, Any]:
        """What the attempt makes of the delivery and its subscription (store fields)."""
        now = self.now()
        failures = due.attempts + 1
        disable = None
        if outcome.ok:
            status, next_at = "delivered", None
            self.metrics.webhook_deliveries.labels("delivered").inc()
        else:
            wait = next_wait(failures, self.rng)
            if outcome.retry_after_s is not None and wait is not None:
                wait = max(wait, outcome.retry_after_s)   # 429 and 503 say when to come back
            status = "pending" if wait is not None else "failed"
            next_at = now + timedelta(seconds=wait) if wait is not None else None
            if wait is None:
                self.metrics.webhook_deliveries.labels("failed").inc()
            failing_since = due.failing_since or now
            if outcome.status == 410:
                disable = "the receiver answered 410 Gone"
            elif now - failing_since >= DISABLE_AFTER:
                disable = f"failing since {failing_since.isoformat(timespec='seconds')}"
            if disable:
                self.metrics.webhook_disabled.inc()
                log.warning("webhooks: subscription %s disabled: %s", due.subscription_id,
                            disable)
        return {"delivery_id": due.delivery_id, "subscription_id": due.subscription_id,
                "at": now, "status_code": outcome.status, "error": outcome.error,
                "seconds": outcome.seconds, "status": status, "next_at": next_at,
                "succeeded": outcome.ok, "disable": disable}

    def report(self, now: datetime) -> None:
        pending, oldest = self.store.delivery_backlog()
        self.metrics.webhook_queue.set(pending)
        self.metrics.webhook_oldest.set((now - oldest).total_seconds() if oldest else 0.0)


def webhook_payload(kind: str, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The body Standard Webhooks recommends: type, timestamp, data."""
    return {"type": kind, "timestamp": at.astimezone(UTC).isoformat(), "data": data}
