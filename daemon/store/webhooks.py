"""The store's side of webhooks: API tokens, subscriptions, and the outbox of deliveries
(claimed with a lease by the delivery worker, their attempts kept for the API)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .tables import API_TOKENS, DELIVERIES, DELIVERY_ATTEMPTS, SUBSCRIPTIONS, utcnow

JSON_COLUMNS = ("kinds", "areas", "classes", "feeds", "secrets")


def _subscription(row: Any) -> dict[str, Any]:
    found = dict(row)
    for column in JSON_COLUMNS:
        found[column] = json.loads(found[column]) if found[column] is not None else None
    return found


def _stored(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: json.dumps(v) if k in JSON_COLUMNS and v is not None else v
            for k, v in fields.items()}


class WebhookStore:
    """Mixed into Store, which gives it its engine and transactions."""

    engine: Engine
    transaction: Callable[[], AbstractContextManager[Connection]]

    # tokens
    def create_token(self, name: str, scope: str, token_hash: str) -> str:
        token_id = uuid.uuid4().hex[:12]
        with self.transaction() as conn:
            conn.execute(API_TOKENS.insert(), [{"id": token_id, "name": name, "scope": scope,
                                                "token_hash": token_hash,
                                                "created_at": utcnow()}])
        return token_id

    def token_by_hash(self, token_hash: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(API_TOKENS).where(
                API_TOKENS.c.token_hash == token_hash)).mappings().first()
        return dict(row) if row else None

    def list_tokens(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(API_TOKENS.c.id, API_TOKENS.c.name,
                                          API_TOKENS.c.scope, API_TOKENS.c.created_at,
                                          API_TOKENS.c.revoked_at)
                                .order_by(API_TOKENS.c.created_at)).mappings().all()
        return [dict(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self.transaction() as conn:
            done = conn.execute(API_TOKENS.update().where(API_TOKENS.c.id == token_id,
                                                          API_TOKENS.c.revoked_at.is_(None))
                                .values(revoked_at=utcnow()))
        return bool(done.rowcount)

    # subscriptions
    def create_subscription(self, row: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute(SUBSCRIPTIONS.insert(), [_stored(row)])

    def get_subscription(self, subscription_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(SUBSCRIPTIONS).where(
                SUBSCRIPTIONS.c.id == subscription_id)).mappings().first()
        return _subscription(row) if row else None

    def list_subscriptions(self, active_only: bool = False) -> list[dict[str, Any]]:
        statement = sa.select(SUBSCRIPTIONS).order_by(SUBSCRIPTIONS.c.created_at)
        if active_only:
            statement = statement.where(SUBSCRIPTIONS.c.disabled_at.is_(None))
        with self.engine.connect() as conn:
            return [_subscription(r) for r in conn.execute(statement).mappings()]

    def update_subscription(self, subscription_id: str, fields: dict[str, Any]) -> None:
        with self.transaction() as conn:
            conn.execute(SUBSCRIPTIONS.update().where(SUBSCRIPTIONS.c.id == subscription_id)
                         .values(**_stored(fields)))

    def delete_subscription(self, subscription_id: str) -> None:
        """The subscription, its deliveries and their attempts."""
        with self.transaction() as conn:
            ids = sa.select(DELIVERIES.c.id).where(
                DELIVERIES.c.subscription_id == subscription_id).scalar_subquery()
            conn.execute(DELIVERY_ATTEMPTS.delete().where(
                DELIVERY_ATTEMPTS.c.delivery_id.in_(ids)))
            conn.execute(DELIVERIES.delete().where(
                DELIVERIES.c.subscription_id == subscription_id))
            conn.execute(SUBSCRIPTIONS.delete().where(SUBSCRIPTIONS.c.id == subscription_id))

    def subscriptions_version(self) -> tuple[int, datetime | None]:
        with self.engine.connect() as conn:
            count, newest = conn.execute(sa.select(
                sa.func.count(), sa.func.max(SUBSCRIPTIONS.c.updated_at))).one()
        return int(count), newest

    # the outbox
    @staticmethod
    def insert_deliveries(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Deliveries written with their events; a replayed event's are already there."""
        from .store import _upsert

        _upsert(conn, DELIVERIES, rows, ["id"], update=False)

    def enqueue_delivery(self, row: dict[str, Any]) -> None:
        with self.transaction() as conn:
            self.insert_deliveries(conn, [row])

    def claim_deliveries(self, now: datetime, limit: int, owner: str, lease_until: datetime
                         ) -> list[dict[str, Any]]:
        """Due deliveries of enabled subscriptions, leased to ``owner`` until ``lease_until``
        (so that two workers do not send the same one at once)."""
        d, s = DELIVERIES, SUBSCRIPTIONS
        due = sa.and_(d.c.status == "pending", d.c.next_attempt_at <= now,
                      sa.or_(d.c.lease_until.is_(None), d.c.lease_until < now),
                      s.c.disabled_at.is_(None))
        with self.transaction() as conn:
            query = (sa.select(d.c.id).select_from(d.join(s, s.c.id == d.c.subscription_id))
                     .where(due).order_by(d.c.next_attempt_at).limit(limit))
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(of=d, skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if not ids:
                return []
            conn.execute(d.update().where(d.c.id.in_(ids))
                         .values(lease_owner=owner, lease_until=lease_until))
            rows = conn.execute(
                sa.select(d.c.id, d.c.subscription_id, s.c.url, s.c.secrets, d.c.payload,
                          d.c.attempts, s.c.failing_since)
                .select_from(d.join(s, s.c.id == d.c.subscription_id))
                .where(d.c.id.in_(ids))).all()
        return [{"delivery_id": r.id, "subscription_id": r.subscription_id, "url": r.url,
                 "secrets": live_secrets(json.loads(r.secrets), now), "body": r.payload,
                 "attempts": r.attempts, "failing_since": r.failing_since} for r in rows]

    def record_attempts(self, attempts: Sequence[dict[str, Any]]) -> None:
        """Attempts (delivery_id, subscription_id, at, status_code, error, seconds, status,
        next_at, succeeded, disable), each with its delivery's new state and its
        subscription's health, in one transaction."""
        d, s = DELIVERIES, SUBSCRIPTIONS
        with self.transaction() as conn:
            conn.execute(DELIVERY_ATTEMPTS.insert(), [
                {k: a[k] for k in ("delivery_id", "at", "status_code", "error", "seconds")}
                for a in attempts])
            for a in attempts:
                at = a["at"]
                conn.execute(d.update().where(d.c.id == a["delivery_id"]).values(
                    status=a["status"], attempts=d.c.attempts + (0 if a["succeeded"] else 1),
                    next_attempt_at=a["next_at"], lease_owner=None, lease_until=None,
                    last_status=a["status_code"], last_error=a["error"], updated_at=at,
                    delivered_at=at if a["succeeded"] else None))
                mine = s.c.id == a["subscription_id"]
                if a["succeeded"]:
                    conn.execute(s.update().where(mine, s.c.failing_since.is_not(None))
                                 .values(failing_since=None))
                else:
                    conn.execute(s.update().where(mine, s.c.failing_since.is_(None))
                                 .values(failing_since=at))
                if a["disable"]:
                    conn.execute(s.update().where(mine).values(
                        disabled_at=at, disabled_reason=a["disable"], updated_at=at))

    def delivery_backlog(self) -> tuple[int, datetime | None]:
        """Pending deliveries and the oldest one's creation time."""
        d = DELIVERIES
        with self.engine.connect() as conn:
            count, oldest = conn.execute(sa.select(sa.func.count(), sa.func.min(d.c.created_at))
                                         .where(d.c.status == "pending")).one()
        return int(count), oldest

    def replay_deliveries(self, subscription_id: str, since: datetime, now: datetime) -> int:
        """Send again (same ids) the subscription's deliveries made at or after ``since``."""
        d = DELIVERIES
        with self.transaction() as conn:
            done = conn.execute(d.update().where(d.c.subscription_id == subscription_id,
                                                 d.c.created_at >= since)
                                .values(status="pending", next_attempt_at=now, attempts=0,
                                        lease_owner=None, lease_until=None, updated_at=now))
        return int(done.rowcount)

    def list_deliveries(self, subscription_id: str, limit: int, offset: int) -> Any:
        """A page of deliveries, newest first, each with its attempts."""
        from .store import Page

        d, a = DELIVERIES, DELIVERY_ATTEMPTS
        where = d.c.subscription_id == subscription_id
        with self.engine.connect() as conn:
            total = conn.execute(sa.select(sa.func.count()).select_from(d).where(where)
                                 ).scalar_one()
            rows = conn.execute(sa.select(d.c.id, d.c.kind, d.c.event_id, d.c.status,
                                          d.c.attempts, d.c.next_attempt_at, d.c.last_status,
                                          d.c.last_error, d.c.created_at, d.c.delivered_at)
                                .where(where).order_by(d.c.created_at.desc(), d.c.id)
                                .limit(limit).offset(offset)).mappings().all()
            attempts: dict[str, list[dict[str, Any]]] = {}
            for r in conn.execute(sa.select(a).where(a.c.delivery_id.in_([r["id"] for r in rows]))
                                  .order_by(a.c.at, a.c.id)).mappings():
                attempts.setdefault(r["delivery_id"], []).append(
                    {"at": r["at"], "status_code": r["status_code"], "error": r["error"],
                     "seconds": round(r["seconds"], 3)})
        return Page([{**dict(r), "attempt_log": attempts.get(r["id"], [])} for r in rows],
                    int(total))


def live_secrets(secrets: list[dict[str, Any]], now: datetime) -> list[str]:
    """The secrets that still sign: the current one and those within their overlap."""
    return [s["secret"] for s in secrets
            if s["until"] is None or datetime.fromisoformat(s["until"]) > now]

