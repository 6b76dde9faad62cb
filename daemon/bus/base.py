"""The bus interface: what the adapters publish to and the consumer reads from."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.engine import Connection

from eowatch.errors import EowatchError

TopicPartition = tuple[str, int]
PartitionHook = Callable[[set[TopicPartition]], None]


class BusError(EowatchError, RuntimeError):
    """The bus did not take or give messages; the operation can be retried."""


@dataclass(frozen=True)
class OutMessage:
    key: bytes
    value: bytes
    shard: int = 0


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: float | None = None  # unix seconds the producer stamped, when the bus keeps it


class BusConsumer(ABC):
    """One member of a consumer group. The store, not the bus, holds the offsets that count."""

    @abstractmethod
    def assignment(self) -> set[TopicPartition]: ...

    @abstractmethod
    def seek(self, offsets: dict[TopicPartition, int]) -> None:
        """Continue each partition at the given offset (the checkpoint's next offset)."""

    @abstractmethod
    def poll(self, max_records: int, timeout_s: float) -> list[Record]: ...

    @abstractmethod
    def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Tell the bus how far the group got (for lag tools); the store commit came first."""

    @abstractmethod
    def lag(self) -> int:
        """Messages behind the end of the assigned partitions."""

    @abstractmethod
    def close(self) -> None: ...


class Bus(ABC):
    partitions: int

    def partition_of(self, shard: int) -> int:
        return shard % self.partitions

    @abstractmethod
    def ensure_topics(self, topics: Sequence[str]) -> None: ...

    @abstractmethod
    def publish(self, topic: str, messages: Sequence[OutMessage],
                then: Callable[[Connection], None] | None = None) -> None:
        """Append durably (acknowledged by the bus), then run ``then`` in a store transaction.

        A failure raises BusError before ``then`` runs: a feed cursor committed in ``then``
        therefore never moves past what the bus did not take.
        """

    @abstractmethod
    def consumer(self, group: str, topics: Sequence[str], max_poll_records: int,
                 on_assigned: PartitionHook | None = None,
                 on_revoked: PartitionHook | None = None) -> BusConsumer:
        """A group member. ``on_assigned`` runs when partitions arrive (after the consumer has
        sought to their stored offsets); ``on_revoked`` before they leave."""

    @abstractmethod
    def ping(self) -> bool: ...

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass
