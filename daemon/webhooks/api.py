"""The subscriptions API: tokens on every write, webhook targets checked before they are kept.

``POST /subscriptions`` answers the signing secret once; ``POST /subscriptions/{id}/secret``
rotates it, the previous one signing beside it for an overlap period.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Literal

import shapely
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response
from pydantic import BaseModel, Field

from ..store.store import Store
from ..store.tables import utcnow
from .delivery import webhook_payload
from .matching import KINDS, outbox_row
from .targets import Resolver, TargetRefused, check, system_resolver
from .tokens import allows, new_secret, token_hash

Kind = Literal["crop.decision", "flood.opened", "flood.updated", "flood.confirmed",
               "flood.withdrawn", "flood.closed", "webhook.test"]


class SubscriptionIn(BaseModel):
    url: str = Field(description="where deliveries are POSTed (http or https, public address)")
    kinds: list[Kind] = Field(min_length=1, description="event kinds to deliver")
    areas: list[str] | None = Field(None, description="area ids: their flood events")
    polygon: dict[str, Any] | None = Field(
        None, description="GeoJSON Polygon or MultiPolygon (WGS84): the parcels whose centroid "
        "lies inside, and the areas it touches")
    classes: list[str] | None = Field(None, description="crop classes of the decisions")
    min_probability: float | None = Field(None, ge=0, le=1,
                                          description="of the decided class")
    feeds: list[str] | None = Field(None, description="feeds the events come from")
    description: str = ""


class SubscriptionPatch(BaseModel):
    url: str | None = None
    kinds: list[Kind] | None = Field(None, min_length=1)
    areas: list[str] | None = None
    polygon: dict[str, Any] | None = None
    classes: list[str] | None = None
    min_probability: float | None = Field(None, ge=0, le=1)
    feeds: list[str] | None = None
    description: str | None = None
    enabled: bool | None = Field(None, description="true re-enables a disabled subscription")


def scope_checker(store: Store, read_open: bool) -> Callable[[str], Callable[..., None]]:
    """A FastAPI dependency per scope: a bearer token of at least that scope (401 without a
    valid one, 403 with a weaker one). With ``read_open``, reading needs no token."""

    def needs(scope: str) -> Callable[..., None]:
        def dependency(authorization: str | None = Header(None)) -> None:
            if scope == "read" and read_open:
                return
            if not authorization or not authorization.lower().startswith("bearer "):
                raise HTTPException(401, "a bearer token is needed (eowatch tokens create)",
                                    headers={"WWW-Authenticate": "Bearer"})
            token = store.token_by_hash(token_hash(authorization[7:].strip()))
            if token is None or token["revoked_at"] is not None:
                raise HTTPException(401, "the token is unknown or revoked",
                                    headers={"WWW-Authenticate": "Bearer"})
            if not allows(token["scope"], scope):
                raise HTTPException(403, f"a {token['scope']} token cannot do this: it needs "
                                    f"{scope}")
        return dependency

    return needs


def create_router(store: Store, allowed: Sequence[IPv4Network | IPv6Network],
                  resolve: Resolver = system_resolver) -> APIRouter:
    router = APIRouter(tags=["subscriptions"])
    # subscriptions name their receivers: reading them always takes a token
    needs = scope_checker(store, read_open=False)

    def checked_url(url: str) -> str:
        try:
            check(url, allowed, resolve)
        except TargetRefused as exc:
            raise HTTPException(422, f"target refused: {exc}") from None
        return url

    def found(subscription_id: str) -> dict[str, Any]:
        row = store.get_subscription(subscription_id)
        if row is None:
            raise HTTPException(404, f"no subscription {subscription_id!r}")
        return row

    @router.post("/subscriptions", status_code=201, dependencies=[Depends(needs("write"))],
                 summary="Subscribe a URL to events; the answer holds the secret, once")
    def create(body: SubscriptionIn) -> dict[str, Any]:
        now, secret, subscription_id = utcnow(), new_secret(), uuid.uuid4().hex
        row = {"id": subscription_id, "url": checked_url(body.url), "kinds": body.kinds,
               "areas": body.areas, "polygon": place(body.polygon), "classes": body.classes,
               "min_probability": body.min_probability, "feeds": body.feeds,
               "description": body.description, "secrets": [{"secret": secret, "until": None}],
               "created_at": now, "updated_at": now}
        store.create_subscription(row)
        return {**view(found(subscription_id)), "secret": secret}

    @router.get("/subscriptions", dependencies=[Depends(needs("read"))])
    def listing() -> dict[str, Any]:
        return {"items": [view(s) for s in store.list_subscriptions()]}

    @router.get("/subscriptions/{subscription_id}", dependencies=[Depends(needs("read"))])
    def one(subscription_id: str) -> dict[str, Any]:
        return view(found(subscription_id))

    @router.patch("/subscriptions/{subscription_id}", dependencies=[Depends(needs("write"))])
    def update(subscription_id: str, body: SubscriptionPatch) -> dict[str, Any]:
        found(subscription_id)
        changes = body.model_dump(exclude_unset=True)
        if "url" in changes:
            changes["url"] = checked_url(changes["url"])
        if "polygon" in changes:
            changes["polygon"] = place(changes["polygon"])
        enabled = changes.pop("enabled", None)
        if enabled is True:
            changes.update(disabled_at=None, disabled_reason=None, failing_since=None)
        elif enabled is False:
            changes.update(disabled_at=utcnow(), disabled_reason="disabled through the API")
        store.update_subscription(subscription_id, {**changes, "updated_at": utcnow()})
        return view(found(subscription_id))

    @router.delete("/subscriptions/{subscription_id}", status_code=204,
                   dependencies=[Depends(needs("write"))])
    def delete(subscription_id: str) -> Response:
        found(subscription_id)
        store.delete_subscription(subscription_id)
        return Response(status_code=204)

    @router.post("/subscriptions/{subscription_id}/secret",
                 dependencies=[Depends(needs("write"))],
                 summary="A new signing secret; the previous ones sign beside it a while")
    def rotate(subscription_id: str, overlap_hours: float = Query(24.0, ge=0, le=24 * 30)
               ) -> dict[str, Any]:
        row = found(subscription_id)
        now = utcnow()
        until = (now + timedelta(hours=overlap_hours)).isoformat()
        kept = [{**s, "until": s["until"] or until} for s in row["secrets"]
                if not expired(s, now)]
        secret = new_secret()
        store.update_subscription(subscription_id, {
            "secrets": [{"secret": secret, "until": None}, *kept] if overlap_hours else
            [{"secret": secret, "until": None}], "updated_at": now})
        return {"secret": secret, "previous_valid_until": until if overlap_hours else None}

    @router.post("/subscriptions/{subscription_id}/test", status_code=202,
                 dependencies=[Depends(needs("write"))], summary="Send a test event")
    def ping(subscription_id: str) -> dict[str, str]:
        found(subscription_id)
        now = utcnow()
        body = json.dumps(webhook_payload("webhook.test", now,
                                          {"subscription_id": subscription_id}))
        row = outbox_row(subscription_id, "webhook.test", f"test-{uuid.uuid4().hex}", body, now)
        store.enqueue_delivery(row)
        return {"delivery_id": row["id"]}

    @router.post("/subscriptions/{subscription_id}/replay",
                 dependencies=[Depends(needs("write"))],
                 summary="Send again the deliveries made since a time (same webhook-id)")
    def replay(subscription_id: str, since: datetime) -> dict[str, int]:
        found(subscription_id)
        if since.tzinfo is None:
            raise HTTPException(422, "since has no time zone; give one, e.g. "
                                "2026-04-01T00:00:00Z")
        return {"replayed": store.replay_deliveries(subscription_id, since, utcnow())}

    @router.get("/subscriptions/{subscription_id}/deliveries",
                dependencies=[Depends(needs("read"))],
                summary="Deliveries, newest first, with their attempts")
    def deliveries(subscription_id: str, limit: int = Query(50, ge=1, le=500),
                   offset: int = Query(0, ge=0)) -> dict[str, Any]:
        found(subscription_id)
        page = store.list_deliveries(subscription_id, limit, offset)
        return {"items": page.items, "total": page.total, "limit": limit, "offset": offset}

    return router


def expired(secret: dict[str, Any], now: datetime) -> bool:
    return secret["until"] is not None and datetime.fromisoformat(secret["until"]) <= now


def place(polygon: dict[str, Any] | None) -> str | None:
    """A subscription's polygon as stored (GeoJSON text), checked."""
    if polygon is None:
        return None
    try:
        shape = shapely.geometry.shape(polygon)
    except (AttributeError, KeyError, TypeError, ValueError, shapely.errors.GEOSException):
        raise HTTPException(422, "polygon is not GeoJSON") from None
    if shape.geom_type not in ("Polygon", "MultiPolygon") or not shape.is_valid:
        raise HTTPException(422, f"polygon must be a valid Polygon or MultiPolygon, not a "
                            f"{'invalid ' if not shape.is_valid else ''}{shape.geom_type}")
    return shapely.to_geojson(shape)


def view(row: dict[str, Any]) -> dict[str, Any]:
    """A subscription as the API shows it: never its secrets."""
    shown = {k: v for k, v in row.items() if k != "secrets"}
    shown["polygon"] = json.loads(row["polygon"]) if row.get("polygon") else None
    shown["enabled"] = row.get("disabled_at") is None
    now = datetime.now(UTC)
    shown["secrets_live"] = sum(not expired(s, now) for s in row["secrets"])
    return shown


__all__ = ["KINDS", "create_router"]
