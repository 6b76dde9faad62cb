"""What a batch of records yields (decisions, dead letters), and how a record that cannot be
used becomes a dead letter."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from eowatch.contract.messages import Decision, MessageError, ObservationChunk

from .bus.base import Record

log = logging.getLogger(__name__)


@dataclass
class BatchOutput:
    decisions: list[Decision] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # flood.* messages


def summary(exc: BaseException) -> str:
    """An exception in one line, for dead letters and logs."""
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return f"{exc.__class__.__name__}: {text}" if text else exc.__class__.__name__


def decode(records: list[Record], out: BatchOutput) -> list[tuple[Record, ObservationChunk]]:
    """The records as chunks; those that do not decode are dead-lettered with the reason."""
    items = []
    for record in records:
        try:
            items.append((record, ObservationChunk.decode(record.value)))
        except MessageError as exc:
            dead_letter(out, record, exc.reason, str(exc))
        except Exception as exc:  # a decoder bug must not stop the partition either
            dead_letter(out, record, "processing_error", f"decode: {summary(exc)}")
    return items


def dead_letter(out: BatchOutput, record: Record, reason: str, detail: str,
                with_payload: bool = True) -> None:
    out.dead_letters.append({"topic": record.topic, "partition": record.partition,
                             "offset": record.offset, "reason": reason, "detail": detail,
                             "payload": record.value if with_payload else None})
    log.warning("dead letter %s@%s:%s reason=%s: %s", record.topic, record.partition,
                record.offset, reason, detail)
