"""The message contract on the bus (docs/messages.md), version 1.

Observations travel as Arrow IPC streams, one record batch per message: one acquisition × one
shard of parcels, columnar. The message's key is the shard id. Decisions and alerts are JSON
with deterministic ids. Encoding and decoding never loop over parcels in Python.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from eowatch.errors import EowatchError

SCHEMA_VERSION = 1
Kind = Literal["observations", "season_end"]


class MessageError(EowatchError, ValueError):
    """A message that does not decode; it goes to the dead-letter topic with this reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def shard_of(parcel_id: str, shards: int) -> int:
    """Stable shard of a parcel: crc32 of its id (UTF-8) mod N_SHARDS, the same everywhere."""
    return zlib.crc32(parcel_id.encode()) % shards


def shards_of(parcel_ids: Iterable[str], shards: int) -> np.ndarray:
    return np.fromiter((shard_of(p, shards) for p in parcel_ids), dtype=np.int64)


@dataclass(frozen=True)
class ObservationChunk:
    """One acquisition × one shard of parcels.

    parcel_ids: [n] str; values: [n, bands] float32 (reflectance 0-1 for optical feeds);
    valid_fraction: [n] float32 share of the parcel's pixels that were usable (0-1).
    A ``season_end`` chunk has no rows: it tells the consumer that ``season`` is over for every
    parcel of the shard, so undecided parcels get their decision at their last step.
    ``targets`` names what the ids are (``parcels``): the consumer hands the chunk to the state
    model of that kind. (The Arrow column keeps its name ``parcel_id`` for every kind.)
    """

    feed: str
    acquisition_id: str
    acquired_at: datetime
    band_names: tuple[str, ...]
    shard: int
    parcel_ids: np.ndarray
    values: np.ndarray
    valid_fraction: np.ndarray
    kind: Kind = "observations"
    season: int | None = None
    targets: str = "parcels"

    def __post_init__(self) -> None:
        if self.acquired_at.tzinfo is None:
            raise ValueError("acquired_at must be timezone-aware (UTC)")

    @property
    def key(self) -> bytes:
        return str(self.shard).encode()

    def encode(self) -> bytes:
        n, bands = len(self.parcel_ids), len(self.band_names)
        values = np.ascontiguousarray(self.values, dtype=np.float32).reshape(n * bands)
        batch = pa.record_batch(
            [pa.array(self.parcel_ids, type=pa.string()),
             pa.FixedSizeListArray.from_arrays(pa.array(values), bands),
             pa.array(np.asarray(self.valid_fraction, dtype=np.float32))],
            schema=pa.schema(
                [("parcel_id", pa.string()), ("values", pa.list_(pa.float32(), bands)),
                 ("valid_fraction", pa.float32())],
                metadata={"eowatch": json.dumps({
                    "schema_version": SCHEMA_VERSION, "kind": self.kind, "feed": self.feed,
                    "acquisition_id": self.acquisition_id,
                    "acquired_at": self.acquired_at.astimezone(UTC).isoformat(),
                    "band_names": list(self.band_names), "shard": self.shard,
                    "season": self.season, "targets": self.targets})}))
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, batch.schema) as writer:
            writer.write_batch(batch)
        return sink.getvalue().to_pybytes()

    @classmethod
    def decode(cls, payload: bytes) -> ObservationChunk:
        """Bytes -> chunk; raises MessageError(reason, detail) on anything malformed."""
        try:
            reader = pa.ipc.open_stream(payload)
            batch = reader.read_next_batch()
            meta = json.loads(reader.schema.metadata[b"eowatch"])
        except (pa.ArrowInvalid, OSError, KeyError, StopIteration, TypeError,
                ValueError) as exc:  # ValueError: the metadata's JSON or its UTF-8
            raise MessageError("undecodable", f"not an eowatch Arrow chunk ({exc})") from None
        if not isinstance(meta, dict):
            raise MessageError("undecodable", "the eowatch schema metadata is not an object")
        if meta.get("schema_version") != SCHEMA_VERSION:
            raise MessageError("schema_version", f"chunk schema version "
                               f"{meta.get('schema_version')}, this daemon reads {SCHEMA_VERSION}")
        try:
            bands = tuple(meta["band_names"])
            values_column = batch.column("values")
            width = values_column.type.list_size
            values = values_column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
            chunk = cls(
                feed=meta["feed"], acquisition_id=meta["acquisition_id"],
                acquired_at=datetime.fromisoformat(meta["acquired_at"]), band_names=bands,
                shard=int(meta["shard"]),
                parcel_ids=batch.column("parcel_id").to_numpy(zero_copy_only=False),
                values=values, valid_fraction=batch.column("valid_fraction").to_numpy(),
                kind=meta.get("kind", "observations"), season=meta.get("season"),
                targets=str(meta.get("targets", "parcels")))
        except (KeyError, ValueError, TypeError, AttributeError, pa.ArrowException) as exc:
            raise MessageError("malformed", f"chunk fields missing or invalid ({exc})") from None
        if width != len(bands):
            raise MessageError("band_count", f"{width} values per parcel but {len(bands)} band "
                               "names")
        return chunk


def decision_id(parcel_id: str, season: int, model_version: str) -> str:
    """Deterministic: a replay produces the same id, so sinks upsert it once."""
    return hashlib.sha256(f"{parcel_id}|{season}|{model_version}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Decision:
    """An early crop-type decision for one parcel and season (JSON on the decisions topic)."""

    decision_id: str
    parcel_id: str
    season: int
    feed: str
    model_version: str
    crop: str
    probabilities: dict[str, float]
    p_stop: float
    day_of_season: float
    acquired_at: datetime
    acquisition_id: str
    observations: int
    forced: bool  # True when the season ended before the stopping rule fired
    shard: int = 0  # routing only (the message key is the parcel id); not in the JSON

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, "decision_id": self.decision_id,
                "parcel_id": self.parcel_id, "season": self.season, "feed": self.feed,
                "model_version": self.model_version, "class": self.crop,
                "probabilities": self.probabilities, "p_stop": self.p_stop,
                "day_of_season": self.day_of_season,
                "acquired_at": self.acquired_at.astimezone(UTC).isoformat(),
                "acquisition_id": self.acquisition_id, "observations": self.observations,
                "forced": self.forced}

    def encode(self) -> bytes:
        return json.dumps(self.to_json(), sort_keys=True).encode()

