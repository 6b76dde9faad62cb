"""The Kafka bus (kafka-python with native crc32c): acks=all producer, manual-commit consumer.

Partition = shard mod partitions, so all of a shard's messages stay in order in one partition.
The offsets that count are the ones the consumer stores with its state; on every assignment it
seeks there. Committing to Kafka as well keeps the group's lag visible to standard tools.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, TopicAlreadyExistsError
from kafka.structs import OffsetAndMetadata
from sqlalchemy.engine import Connection

from eowatch.errors import EowatchError

from ..store.store import Store
from .base import Bus, BusConsumer, BusError, OutMessage, PartitionHook, Record
from .base import TopicPartition as TP

log = logging.getLogger(__name__)


class KafkaBus(Bus):
    def __init__(self, bootstrap: str, store: Store, partitions: int,
                 client_id: str = "eowatch") -> None:
        self.bootstrap, self.store, self.partitions = bootstrap, store, partitions
        self.client_id = client_id
        self._producer: KafkaProducer | None = None

    @property
    def producer(self) -> KafkaProducer:
        if self._producer is None:
            try:
                # At least once, in order: a retried batch may land twice, and the consumer
                # skips an observation it has already stepped (same parcel, same time). One
                # request in flight keeps a retry from overtaking the next batch. The broker's
                # own de-duplication (idempotence) is left off: it is not needed, and a broker
                # that keeps its producer sequences apart from its log (Tansu) was seen to
                # acknowledge a retried batch it had lost in a kill -9.
                self._producer = KafkaProducer(
                    bootstrap_servers=self.bootstrap, client_id=self.client_id, acks="all",
                    linger_ms=5, retries=5, enable_idempotence=False,
                    max_in_flight_requests_per_connection=1,
                    max_request_size=16 * 1024 * 1024, request_timeout_ms=15_000,
                    max_block_ms=15_000)
            except KafkaError as exc:
                raise BusError(f"Kafka at {self.bootstrap} unreachable ({exc}); check "
                               "EOWATCH_KAFKA_BOOTSTRAP and the broker") from None
        return self._producer

    def ensure_topics(self, topics: Sequence[str]) -> None:
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id=self.client_id,
                                     request_timeout_ms=15_000)
        except KafkaError as exc:
            raise BusError(f"Kafka at {self.bootstrap} unreachable ({exc})") from None
        try:
            existing = set(admin.list_topics())
            new = [NewTopic(t, num_partitions=self.partitions, replication_factor=1)
                   for t in topics if t not in existing]
            if new:
                try:
                    admin.create_topics(new)
                except TopicAlreadyExistsError:
                    pass  # another member created them first
            counts = {d["name"]: len(d["partitions"]) for d in admin.describe_topics(topics)}
        except KafkaError as exc:
            raise BusError(f"Kafka at {self.bootstrap}: topics not ready ({exc})") from None
        finally:
            admin.close()
        other = {t: n for t, n in counts.items() if n != self.partitions}
        if other:  # a shard's partition is shard mod partitions: it must not change
            raise EowatchError(
                f"topic(s) {', '.join(f'{t} ({n} partitions)' for t, n in other.items())} do "
                f"not have EOWATCH_PARTITIONS={self.partitions} partitions; set "
                "EOWATCH_PARTITIONS to the topics' count, or use new topics "
                "(EOWATCH_TOPIC_PREFIX)")

    def publish(self, topic: str, messages: Sequence[OutMessage],
                then: Callable[[Connection], None] | None = None) -> None:
        try:
            futures = [self.producer.send(topic, key=m.key, value=m.value,
                                          partition=self.partition_of(m.shard))
                       for m in messages]
            self.producer.flush(timeout=30)
            for future in futures:
                future.get(timeout=30)  # raises what the broker answered
        except KafkaError as exc:
            raise BusError(f"Kafka did not acknowledge {len(messages)} message(s) on {topic} "
                           f"({exc.__class__.__name__}: {exc})") from None
        if then is not None:
            with self.store.transaction() as conn:
                then(conn)

    def consumer(self, group: str, topics: Sequence[str], max_poll_records: int,
                 on_assigned: PartitionHook | None = None,
                 on_revoked: PartitionHook | None = None) -> KafkaBusConsumer:
        return KafkaBusConsumer(self, group, list(topics), max_poll_records, on_assigned,
                                on_revoked)

    def ping(self) -> bool:
        """Whether a bootstrap broker accepts connections. The clients' own connection state
        is no answer: it outlives a dead broker until their next request fails."""
        for address in self.bootstrap.split(","):
            host, colon, port = address.strip().rpartition(":")
            if not colon:  # no port given: Kafka's default
                host, port = address.strip(), "9092"
            try:
                socket.create_connection((host.strip("[]"), int(port)), timeout=1).close()
                return True
            except (OSError, ValueError):
                continue
        return False

    def close(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=5)
            except KafkaError as exc:  # a broker that is down keeps what it had not taken
                log.warning("Kafka producer closed with messages not acknowledged (%s); their "
                            "sources are replayed on the next start", exc)


class _SeekToCheckpoint(ConsumerRebalanceListener):
    def __init__(self, owner: KafkaBusConsumer) -> None:
        self.owner = owner

    def on_partitions_revoked(self, revoked):  # type: ignore[no-untyped-def]
        if self.owner.on_revoked:
            self.owner.on_revoked({(tp.topic, tp.partition) for tp in revoked})

    def on_partitions_assigned(self, assigned):  # type: ignore[no-untyped-def]
        stored = self.owner.bus.store.get_offsets(self.owner.group)
        for tp in assigned:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                self.owner.kafka.seek_to_beginning(tp)
            else:
                self.owner.kafka.seek(tp, offset)
        if self.owner.on_assigned:
            self.owner.on_assigned({(tp.topic, tp.partition) for tp in assigned})


class KafkaBusConsumer(BusConsumer):
    def __init__(self, bus: KafkaBus, group: str, topics: list[str], max_poll_records: int,
                 on_assigned: PartitionHook | None = None,
                 on_revoked: PartitionHook | None = None) -> None:
        self.bus, self.group = bus, group
        self.on_assigned, self.on_revoked = on_assigned, on_revoked
        try:
            self.kafka = KafkaConsumer(
                bootstrap_servers=bus.bootstrap, group_id=group, client_id=bus.client_id,
                enable_auto_commit=False, auto_offset_reset="earliest",
                max_poll_records=max_poll_records, session_timeout_ms=10_000,
                heartbeat_interval_ms=3_000, max_partition_fetch_bytes=16 * 1024 * 1024,
                # a broker that answers a fetch only at its deadline (Tansu does) adds up to
                # this much latency to every chunk; Kafka answers as soon as data arrive
                fetch_max_wait_ms=100,
                fetch_max_bytes=64 * 1024 * 1024)
        except KafkaError as exc:
            raise BusError(f"Kafka at {bus.bootstrap} unreachable ({exc})") from None
        self.kafka.subscribe(topics, listener=_SeekToCheckpoint(self))

    def assignment(self) -> set[TP]:
        return {(tp.topic, tp.partition) for tp in self.kafka.assignment()}

    def seek(self, offsets: dict[TP, int]) -> None:
        for (topic, partition), offset in offsets.items():
            self.kafka.seek(TopicPartition(topic, partition), offset)

    def poll(self, max_records: int, timeout_s: float) -> list[Record]:
        try:
            batches = self.kafka.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        except KafkaError as exc:
            raise BusError(f"Kafka poll failed ({exc})") from None
        records = [Record(tp.topic, tp.partition, m.offset, m.key, m.value, m.timestamp / 1000)
                   for tp, messages in batches.items() for m in messages]
        return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))

    def commit(self, offsets: dict[TP, int]) -> None:
        mine = self.assignment()
        try:
            self.kafka.commit({TopicPartition(t, p): OffsetAndMetadata(o, "", -1)
                               for (t, p), o in offsets.items() if (t, p) in mine})
        except KafkaError as exc:  # advisory only: the store holds the real offsets
            log.warning("Kafka offset commit failed (%s); the store's checkpoint stands", exc)

    def lag(self) -> int:
        assigned = list(self.kafka.assignment())
        if not assigned:
            return 0
        try:
            ends = self.kafka.end_offsets(assigned)
        except KafkaError:
            return 0
        return sum(max(0, ends[tp] - self.kafka.position(tp)) for tp in assigned)

    def close(self) -> None:
        self.kafka.close(autocommit=False)
