"""Tables of the store (SQLModel). Changes need an Alembic migration (daemon/store/migrations)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.TypeDecorator):
    """Timezone-aware UTC datetimes on every backend (SQLite stores them naive)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC) if dialect.name != "sqlite" else \
            value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):  # type: ignore[no-untyped-def]
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(nullable: bool = False, index: bool = False) -> sa.Column:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


class Parcel(SQLModel, table=True):
    __tablename__ = "parcels"
    id: str = Field(primary_key=True)
    shard: int = Field(index=True)
    geometry: str | None = Field(default=None, sa_column=sa.Column(sa.Text))  # GeoJSON, WGS84
    label: str | None = None
    season_start: str | None = None  # MM-DD; None: the model's
    source: str = ""
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class Area(SQLModel, table=True):
    __tablename__ = "areas"
    id: str = Field(primary_key=True)
    name: str = ""
    geometry: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # GeoJSON, WGS84
    source: str = ""
    # its cell grid (eowatch.cells.CellGrid.definition) as JSON; None: imported before cells
    grid: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # its cells are measured in Sentinel-2 too (second evidence for the flood model)
    optical: bool = Field(default=False, sa_column=sa.Column(sa.Boolean, nullable=False,
                                                             server_default=sa.false()))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class Cell(SQLModel, table=True):
    """A square cell of an area: the target of per-area models (eowatch.cells)."""

    __tablename__ = "cells"
    id: str = Field(primary_key=True)   # <area id>/<row>-<col>
    area_id: str = Field(index=True)
    shard: int = Field(index=True)
    row: int
    col: int


class FeedCursor(SQLModel, table=True):
    __tablename__ = "feed_cursors"
    feed: str = Field(primary_key=True)
    cursor: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class TargetState(SQLModel, table=True):
    """A target's checkpointed state under one model (the sha256 of its artifact): recurrent
    state, outputs and bookkeeping packed in one fixed-size record (layout in
    daemon/state.py), so a checkpoint costs one row per changed target and no per-field work.
    Another model never resumes this state; switching back to this one does."""

    __tablename__ = "target_state"
    __table_args__ = (sa.Index("ix_target_state_model_shard", "model", "shard"),)
    model: str = Field(primary_key=True)
    target_id: str = Field(primary_key=True)
    shard: int
    data: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    acquisition_id: str | None = None


def _blob() -> sa.Column:
    return sa.Column(sa.LargeBinary, nullable=False)


class ObservationLogRow(SQLModel, table=True):
    """A target's observations of one season under one model, with the model's outputs after
    each: one blob per column, appended to by each checkpoint (layout in
    daemon/observation_log.py). The key serves a target's evidence; ``updated_at`` the
    pruning of old seasons."""

    __tablename__ = "observation_log"
    __table_args__ = (sa.Index("ix_observation_log_updated_at", "updated_at"),)
    model: str = Field(primary_key=True)
    target_id: str = Field(primary_key=True)
    season: int = Field(primary_key=True)
    times: bytes = Field(sa_column=_blob())
    bands: bytes = Field(sa_column=_blob())
    outputs: bytes = Field(sa_column=_blob())
    stops: bytes = Field(sa_column=_blob())
    flags: bytes = Field(sa_column=_blob())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class Deployment(SQLModel, table=True):
    """Settings fixed for the life of a store (shards, partitions): checked at every start."""

    __tablename__ = "deployment"
    key: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class ShardOwner(SQLModel, table=True):
    """Who owns a shard in a consumer group, and since which claim (epoch). A checkpoint commits
    only while its writer's epochs are current, so a member paused past its session cannot
    overwrite the checkpoint of the member that took its shards over."""

    __tablename__ = "shard_owners"
    group_id: str = Field(primary_key=True)
    shard: int = Field(primary_key=True)
    epoch: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    owner: str
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class DecisionRow(SQLModel, table=True):
    __tablename__ = "decisions"
    decision_id: str = Field(primary_key=True)
    parcel_id: str = Field(index=True)
    season: int
    feed: str = Field(index=True)
    model_version: str
    crop: str = Field(index=True)
    probabilities: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON
    p_stop: float
    day_of_season: float
    acquired_at: datetime = Field(sa_column=_time(index=True))
    acquisition_id: str
    observations: int
    forced: bool
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class AlertRow(SQLModel, table=True):
    """A flood alert (flood.opened, flood.updated, flood.closed): the message as JSON, with
    the columns the API filters on. The id is deterministic: a replay stores it once."""

    __tablename__ = "alerts"
    alert_id: str = Field(primary_key=True)
    area_id: str = Field(index=True)
    kind: str
    event_id: str | None = Field(default=None, index=True)
    observed_at: datetime | None = Field(default=None, sa_column=_time(index=True,
                                                                       nullable=True))
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))  # JSON
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class ApiToken(SQLModel, table=True):
    """A bearer token of the API: its SHA-256 (the token itself is shown once), scope, state."""

    __tablename__ = "api_tokens"
    id: str = Field(primary_key=True)
    name: str = ""
    scope: str                      # read, write or admin
    token_hash: str = Field(sa_column=sa.Column(sa.String, nullable=False, unique=True))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())
    revoked_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))


class SubscriptionRow(SQLModel, table=True):
    """A webhook subscription: where, which events, its signing secrets and its health."""

    __tablename__ = "subscriptions"
    id: str = Field(primary_key=True)
    url: str
    kinds: str = Field(sa_column=sa.Column(sa.Text, nullable=False))       # JSON list
    areas: str | None = Field(default=None, sa_column=sa.Column(sa.Text))  # JSON list
    polygon: str | None = Field(default=None, sa_column=sa.Column(sa.Text))  # GeoJSON
    classes: str | None = Field(default=None, sa_column=sa.Column(sa.Text))  # JSON list
    min_probability: float | None = None
    feeds: str | None = Field(default=None, sa_column=sa.Column(sa.Text))  # JSON list
    description: str = ""
    # JSON [{"secret": "whsec_…", "until": ISO time or null}]: the signing secrets (a rotated
    # one signs beside the new one until its time); the sender needs them, so they are kept
    secrets: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())
    disabled_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    disabled_reason: str | None = None
    failing_since: datetime | None = Field(default=None, sa_column=_time(nullable=True))


class DeliveryRow(SQLModel, table=True):
    """One event for one subscription (the outbox): written with the event, sent by the
    delivery worker. The id is the ``webhook-id`` every attempt carries."""

    __tablename__ = "deliveries"
    __table_args__ = (sa.Index("ix_deliveries_due", "status", "next_attempt_at"),
                      sa.Index("ix_deliveries_subscription", "subscription_id", "created_at"))
    id: str = Field(primary_key=True)
    subscription_id: str
    kind: str
    event_id: str
    payload: str = Field(sa_column=sa.Column(sa.Text, nullable=False))   # the body, JSON
    status: str                     # pending, delivered or failed (the schedule ran out)
    attempts: int = 0
    next_attempt_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    lease_owner: str | None = None
    lease_until: datetime | None = Field(default=None, sa_column=_time(nullable=True))
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())
    delivered_at: datetime | None = Field(default=None, sa_column=_time(nullable=True))


class DeliveryAttempt(SQLModel, table=True):
    __tablename__ = "delivery_attempts"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(index=True)
    at: datetime = Field(sa_column=_time())
    status_code: int | None = None
    error: str | None = None
    seconds: float = 0.0


class ConsumerOffset(SQLModel, table=True):
    """Next offset to read per (group, topic, partition): the checkpoint's source position."""

    __tablename__ = "consumer_offsets"
    group_id: str = Field(primary_key=True)
    topic: str = Field(primary_key=True)
    partition: int = Field(primary_key=True)
    next_offset: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    updated_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class DeadLetter(SQLModel, table=True):
    __tablename__ = "dead_letters"
    __table_args__ = (sa.UniqueConstraint("topic", "partition", "offset", "reason"),)
    id: int | None = Field(default=None, primary_key=True)
    topic: str
    partition: int
    offset: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    reason: str = Field(index=True)
    detail: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())


class BusMessage(SQLModel, table=True):
    """The embedded bus: a durable, partitioned log in the store."""

    __tablename__ = "bus_messages"
    topic: str = Field(primary_key=True)
    partition: int = Field(primary_key=True)
    offset: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    key: bytes | None = Field(default=None, sa_column=sa.Column(sa.LargeBinary))
    value: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    created_at: datetime = Field(default_factory=utcnow, sa_column=_time())


def table_of(model: type[SQLModel]) -> sa.Table:
    """The Core table of a SQLModel class (what bulk statements are built on)."""
    return model.__table__  # type: ignore[attr-defined]


PARCELS, AREAS, FEED_CURSORS = table_of(Parcel), table_of(Area), table_of(FeedCursor)
CELLS = table_of(Cell)
TARGET_STATE, DECISIONS, ALERTS = table_of(TargetState), table_of(DecisionRow), table_of(AlertRow)
DEPLOYMENT, SHARD_OWNERS = table_of(Deployment), table_of(ShardOwner)
CONSUMER_OFFSETS, DEAD_LETTERS = table_of(ConsumerOffset), table_of(DeadLetter)
BUS_MESSAGES = table_of(BusMessage)
OBSERVATION_LOG = table_of(ObservationLogRow)
API_TOKENS, SUBSCRIPTIONS = table_of(ApiToken), table_of(SubscriptionRow)
DELIVERIES, DELIVERY_ATTEMPTS = table_of(DeliveryRow), table_of(DeliveryAttempt)
