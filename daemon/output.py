"""The output stage: publishes decisions, alerts and dead letters on its own thread, behind a
bounded queue, so the model steps the next micro-batch while the bus takes the last one's outputs.

A full queue blocks the step (backpressure); a checkpoint first waits until every queued output
is on the bus, so the store never records a decision the bus has not been given.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time

from eowatch.contract.messages import Decision

from .bus.base import Bus, BusError, OutMessage
from .metrics import Metrics

log = logging.getLogger(__name__)


def decision_messages(decisions: list[Decision]) -> list[OutMessage]:
    return [OutMessage(d.parcel_id.encode(), d.encode(), d.shard) for d in decisions]


def dead_letter_messages(dead_letters: list[dict]) -> list[OutMessage]:
    return [OutMessage(f"{d['topic']}:{d['partition']}:{d['offset']}".encode(),
                       json.dumps({k: v for k, v in d.items() if k != "payload"}).encode(),
                       d["partition"]) for d in dead_letters]


def alert_messages(alerts: list[dict]) -> list[OutMessage]:
    return [OutMessage(a["area_id"].encode(), json.dumps(a).encode(), a["shard"])
            for a in alerts]


class OutputStage:
    def __init__(self, bus: Bus, topics: dict[str, str], metrics: Metrics,
                 max_batches: int = 8, retry_seconds: float = 1.0,
                 stop: threading.Event | None = None) -> None:
        self.bus, self.topics, self.metrics = bus, topics, metrics
        self.retry_seconds = retry_seconds
        self.stop = stop or threading.Event()  # set: waiting for the bus gives up
        self.queue: queue.Queue[tuple[str, list[OutMessage]] | None] = queue.Queue(max_batches)
        self.thread = threading.Thread(target=self._run, name="output", daemon=True)
        self.thread.start()

    def put(self, decisions: list[Decision], dead_letters: list[dict],
            alerts: list[dict] | None = None) -> None:
        """Queue one micro-batch's outputs; blocks while the queue is full (backpressure)."""
        for topic, messages in (("decisions", decision_messages(decisions)),
                                ("alerts", alert_messages(alerts or [])),
                                ("deadletter", dead_letter_messages(dead_letters))):
            if messages:
                self._put((self.topics[topic], messages))
        self.metrics.queue_depth.labels("output").set(self.queue.qsize())

    def _put(self, item: tuple[str, list[OutMessage]]) -> None:
        while True:
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                if self.stop.is_set():
                    raise BusError("stopping while the bus takes no outputs") from None

    def drain(self, timeout_s: float | None = None) -> bool:
        """Wait until everything queued so far is acknowledged by the bus; False when it is not
        after ``timeout_s`` or, without one, once a stop is requested (a bus or disk that stays
        down must not keep a shutdown waiting)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self.queue.all_tasks_done:
            while self.queue.unfinished_tasks:
                left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
                if left <= 0 or (deadline is None and self.stop.is_set()):
                    return False
                self.queue.all_tasks_done.wait(left)
        self.metrics.queue_depth.labels("output").set(0)
        return True

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop the thread; what the bus has not taken by then is left (a checkpoint never
        recorded it, so the next start publishes it again)."""
        self.drain(timeout_s)
        self.stop.set()
        try:
            self.queue.put_nowait(None)
        except queue.Full:
            pass
        self.thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                self.queue.task_done()
                return
            topic, messages = item
            while True:  # never drop an output: retry until the bus takes it
                try:
                    self.bus.publish(topic, messages)
                    break
                except Exception as exc:  # BusError, or anything else: the thread must live
                    self.metrics.output_errors.inc()
                    log.error("output: %s; retrying in %.0f s", exc, self.retry_seconds)
                    if self.stop.wait(self.retry_seconds):
                        return  # shutting down: the next start publishes it again
            self.queue.task_done()
