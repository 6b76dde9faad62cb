"""The output stage: publishes decisions and dead letters on its own thread, behind a bounded
queue, so the model steps the next micro-batch while the bus takes the last one's outputs.

A full queue blocks the step (backpressure); a checkpoint first waits until every queued output
is on the bus, so the store never records a decision the bus has not been given.
"""

from __future__ import annotations

import json
import logging
import queue
import threading

from .bus.base import Bus, BusError, OutMessage
from .messages import Decision
from .metrics import Metrics

log = logging.getLogger(__name__)


def decision_messages(decisions: list[Decision]) -> list[OutMessage]:
    return [OutMessage(d.parcel_id.encode(), d.encode(), d.shard) for d in decisions]


def dead_letter_messages(dead_letters: list[dict]) -> list[OutMessage]:
    return [OutMessage(f"{d['topic']}:{d['partition']}:{d['offset']}".encode(),
                       json.dumps({k: v for k, v in d.items() if k != "payload"}).encode(),
                       d["partition"]) for d in dead_letters]


class OutputStage:
    def __init__(self, bus: Bus, topics: dict[str, str], metrics: Metrics,
                 max_batches: int = 8, retry_seconds: float = 1.0) -> None:
        self.bus, self.topics, self.metrics = bus, topics, metrics
        self.retry_seconds = retry_seconds
        self.queue: queue.Queue[tuple[str, list[OutMessage]] | None] = queue.Queue(max_batches)
        self.thread = threading.Thread(target=self._run, name="output", daemon=True)
        self.thread.start()

    def put(self, decisions: list[Decision], dead_letters: list[dict]) -> None:
        """Queue one micro-batch's outputs; blocks while the queue is full (backpressure)."""
        for topic, messages in (("decisions", decision_messages(decisions)),
                                ("deadletter", dead_letter_messages(dead_letters))):
            if messages:
                self.queue.put((self.topics[topic], messages))
        self.metrics.queue_depth.labels("output").set(self.queue.qsize())

    def drain(self) -> None:
        """Wait until everything queued so far is acknowledged by the bus."""
        self.queue.join()
        self.metrics.queue_depth.labels("output").set(0)

    def close(self) -> None:
        self.drain()
        self.queue.put(None)
        self.thread.join(timeout=10)

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
                except BusError as exc:
                    self.metrics.output_errors.inc()
                    log.error("output: %s; retrying in %.0f s", exc, self.retry_seconds)
                    threading.Event().wait(self.retry_seconds)
            self.queue.task_done()
