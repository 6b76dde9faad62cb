"""The embedded bus: a durable log in the store's own database, one partition per topic.

Publishing appends the messages and runs the caller's ``then`` (a feed cursor update) in the same
SQL transaction, so a kill -9 can never separate a cursor from what it produced. The consumer's
offsets live in the same database as its state. Nothing to install; one process reads it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..store.store import Store
from ..store.tables import BUS_MESSAGES, CONSUMER_OFFSETS, utcnow
from .base import Bus, BusConsumer, BusError, OutMessage, PartitionHook, Record, TopicPartition

TABLE = BUS_MESSAGES


class EmbeddedBus(Bus):
    partitions = 1

    def __init__(self, store: Store, keep_output_messages: int = 10_000) -> None:
        self.store = store
        self.keep_output_messages = keep_output_messages
        self._lock = threading.Lock()  # one appender at a time keeps offsets dense

    def ensure_topics(self, topics: Sequence[str]) -> None:
        pass  # topics exist as soon as a message names them

    def publish(self, topic: str, messages: Sequence[OutMessage],
                then: Callable[[Connection], None] | None = None) -> None:
        try:
            self._append(topic, messages, then)
        except sa.exc.OperationalError as exc:  # a full disk, a locked or unreachable store
            raise BusError(f"the store did not take {len(messages)} message(s) on {topic} "
                           f"({exc.orig})") from None

    def _append(self, topic: str, messages: Sequence[OutMessage],
                then: Callable[[Connection], None] | None) -> None:
        with self._lock, self.store.transaction() as conn:
            if messages:
                last = conn.execute(sa.select(sa.func.max(TABLE.c.offset)).where(
                    TABLE.c.topic == topic, TABLE.c.partition == 0)).scalar_one()
                start = 0 if last is None else last + 1
                now = utcnow()
                conn.execute(TABLE.insert(), [
                    {"topic": topic, "partition": 0, "offset": start + i, "key": m.key,
                     "value": m.value, "created_at": now} for i, m in enumerate(messages)])
            if then is not None:
                then(conn)

    def consumer(self, group: str, topics: Sequence[str], max_poll_records: int,
                 on_assigned: PartitionHook | None = None,
                 on_revoked: PartitionHook | None = None) -> EmbeddedConsumer:
        return EmbeddedConsumer(self, group, list(topics), on_assigned)

    def ping(self) -> bool:
        return self.store.ping()

    def prune(self, consumed: dict[str, int]) -> int:
        """Drop messages every group has read (``consumed``: topic -> lowest next offset) and
        all but the newest ``keep_output_messages`` of topics no group reads.

        The newest message of a topic always stays: ``publish`` numbers on from it, so offsets
        grow for the life of the store and a consumer positioned past the end reads what comes
        next (an emptied topic would restart at 0, behind every consumer)."""
        removed = 0
        with self.store.transaction() as conn:
            for topic, below in consumed.items():
                removed += conn.execute(TABLE.delete().where(
                    TABLE.c.topic == topic, TABLE.c.offset < below,
                    TABLE.c.offset < sa.select(sa.func.max(TABLE.c.offset)).where(
                        TABLE.c.topic == topic).scalar_subquery())).rowcount
            others = conn.execute(sa.select(TABLE.c.topic, sa.func.max(TABLE.c.offset))
                                  .where(TABLE.c.topic.not_in(list(consumed) or [""]))
                                  .group_by(TABLE.c.topic)).all()
            for topic, last in others:
                removed += conn.execute(TABLE.delete().where(
                    TABLE.c.topic == topic,
                    TABLE.c.offset <= last - self.keep_output_messages)).rowcount
        return removed


class EmbeddedConsumer(BusConsumer):
    def __init__(self, bus: EmbeddedBus, group: str, topics: list[str],
                 on_assigned: PartitionHook | None = None) -> None:
        self.bus, self.group, self.topics = bus, group, topics
        offsets = bus.store.get_offsets(group)
        self.position = {(t, 0): offsets.get((t, 0), 0) for t in topics}
        self._on_assigned = on_assigned  # the only member: every partition, on first poll

    def assignment(self) -> set[TopicPartition]:
        return set(self.position)

    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        self.position.update({tp: o for tp, o in offsets.items() if tp in self.position})

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        if self._on_assigned is not None:  # cleared once it succeeds: a failure is retried
            self._on_assigned(set(self.position))
            self._on_assigned = None
        records: list[Record] = []
        with self.bus.store.engine.connect() as conn:
            for (topic, partition), start in self.position.items():
                rows = conn.execute(sa.select(TABLE.c.offset, TABLE.c.key, TABLE.c.value).where(
                    TABLE.c.topic == topic, TABLE.c.partition == partition,
                    TABLE.c.offset >= start).order_by(TABLE.c.offset)
                    .limit(max_records - len(records))).all()
                records += [Record(topic, partition, r.offset, r.key, r.value) for r in rows]
        for r in records:
            self.position[(r.topic, r.partition)] = r.offset + 1
        if not records and timeout_s > 0:
            threading.Event().wait(min(timeout_s, 0.2))
        return records

    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        pass  # the consumer's store transaction already holds the offsets

    def lag(self) -> int:
        total = 0
        with self.bus.store.engine.connect() as conn:
            for (topic, partition), position in self.position.items():
                last = conn.execute(sa.select(sa.func.max(TABLE.c.offset)).where(
                    TABLE.c.topic == topic, TABLE.c.partition == partition)).scalar_one()
                total += 0 if last is None else max(0, last + 1 - position)
        return total

    def close(self) -> None:
        pass


def committed_offsets(store: Store) -> dict[str, int]:
    """topic -> the lowest next offset any group has committed (what is safe to prune)."""
    table = CONSUMER_OFFSETS
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(table.c.topic, sa.func.min(table.c.next_offset))
                            .group_by(table.c.topic)).all()
    return {topic: int(offset) for topic, offset in rows}
