"""Which subscriptions an event goes to: the outbox rows of a checkpoint.

Each active subscription is compiled once (and again when subscriptions, parcels or areas
change): its kinds, the parcels and areas its place selects (area ids, or a GeoJSON polygon:
the parcels whose centroid lies inside it and the areas it touches), its crop classes, minimum
probability and feeds. Matching a checkpoint's decisions and alerts is then set lookups; the
delivery id (``webhook-id``) is derived from the subscription and the event, so a replay of the
same event writes the same row, once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import shapely
import sqlalchemy as sa

from eowatch.models import flood

from ..store.store import Store
from ..store.tables import utcnow
from .delivery import webhook_payload

log = logging.getLogger(__name__)
KINDS = ("crop.decision", *flood.ALERT_KINDS, "webhook.test")


def delivery_id(subscription_id: str, event_id: str) -> str:
    return "msg_" + hashlib.sha256(f"{subscription_id}|{event_id}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Compiled:
    id: str
    kinds: frozenset[str]
    parcels: frozenset[str] | None   # None: every parcel
    areas: frozenset[str] | None     # None: every area
    classes: frozenset[str] | None
    min_probability: float | None
    feeds: frozenset[str] | None

    def wants_decision(self, row: dict[str, Any], probabilities: dict[str, float]) -> bool:
        return ("crop.decision" in self.kinds
                and (self.parcels is None or row["parcel_id"] in self.parcels)
                and (self.classes is None or row["crop"] in self.classes)
                and (self.feeds is None or row["feed"] in self.feeds)
                and (self.min_probability is None
                     or probabilities.get(row["crop"], 0.0) >= self.min_probability))

    def wants_alert(self, alert: dict[str, Any]) -> bool:
        return (alert["kind"] in self.kinds
                and (self.areas is None or alert["area_id"] in self.areas)
                and (self.feeds is None or bool(self.feeds & set(alert.get("sources", [])))))


class SubscriptionIndex:
    """The active subscriptions, compiled; ``deliveries`` matches a checkpoint's events."""

    def __init__(self, store: Store, refresh_seconds: float = 2.0) -> None:
        self.store, self.refresh_seconds = store, refresh_seconds
        self.compiled: list[Compiled] = []
        self._version: Any = None
        self._checked = -float("inf")

    def refresh(self) -> None:
        """Compile the subscriptions again when they, the parcels or the areas changed. A store
        that does not answer keeps the last compilation (the checkpoint will fail anyway)."""
        if time.monotonic() - self._checked < self.refresh_seconds:
            return
        self._checked = time.monotonic()
        try:
            version = (self.store.subscriptions_version(), self.store.parcels_version(),
                       self.store.areas_version())
            if version == self._version:
                return
            places = Places(self.store)
            compiled = [compile_subscription(places, s)
                        for s in self.store.list_subscriptions(active_only=True)]
        except sa.exc.SQLAlchemyError as exc:
            log.warning("subscriptions not refreshed (%s); matching with the last ones", exc)
            return
        self._version, self.compiled = version, compiled

    def deliveries(self, decisions: list[dict[str, Any]], alerts: list[dict[str, Any]]
                   ) -> list[dict[str, Any]]:
        """Outbox rows for these decision rows and alert rows (as the store keeps them)."""
        self.refresh()
        if not self.compiled:
            return []
        now, rows = utcnow(), []
        for decision in decisions:
            probabilities = json.loads(decision["probabilities"])
            wanting = [c for c in self.compiled if c.wants_decision(decision, probabilities)]
            if wanting:
                body = json.dumps(webhook_payload("crop.decision", now,
                                                  decision_message(decision, probabilities)))
                rows += [outbox_row(c.id, "crop.decision", decision["decision_id"], body, now)
                         for c in wanting]
        for alert in alerts:
            message = json.loads(alert["payload"])
            wanting = [c for c in self.compiled if c.wants_alert(message)]
            if wanting:
                body = json.dumps(webhook_payload(message["kind"], now, message))
                rows += [outbox_row(c.id, message["kind"], message["alert_id"], body, now)
                         for c in wanting]
        return rows


def decision_message(row: dict[str, Any], probabilities: dict[str, float]) -> dict[str, Any]:
    """A decision row as the decisions topic carries it (docs/messages.md)."""
    message = {k: v for k, v in row.items() if k not in ("crop", "created_at", "probabilities")}
    message["class"] = row["crop"]
    message["probabilities"] = probabilities
    message["acquired_at"] = row["acquired_at"].isoformat()
    return {"schema_version": 1, **message}


def outbox_row(subscription_id: str, kind: str, event_id: str, body: str, now: datetime
               ) -> dict[str, Any]:
    return {"id": delivery_id(subscription_id, event_id), "subscription_id": subscription_id,
            "kind": kind, "event_id": event_id, "payload": body, "status": "pending",
            "attempts": 0, "next_attempt_at": now, "created_at": now, "updated_at": now}


class Places:
    """The parcels' centroids and the areas' shapes, read from the store once per compilation
    (and only when a subscription has a polygon)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @functools.cached_property
    def parcels(self) -> tuple[list[str], np.ndarray]:
        ids, _, geometries = self.store.parcel_geometries()
        centroids = shapely.centroid(shapely.from_geojson(geometries)) if ids else \
            np.array([], dtype=object)
        return ids, centroids

    @functools.cached_property
    def areas(self) -> tuple[list[str], np.ndarray]:
        rows = self.store.list_areas()
        return [a["id"] for a in rows], shapely.from_geojson([a["geometry"] for a in rows])


def compile_subscription(places: Places, row: dict[str, Any]) -> Compiled:
    place_areas = set(row["areas"] or [])
    parcels: set[str] | None = None
    areas: set[str] | None = place_areas or None
    if row["polygon"]:
        polygon = shapely.from_geojson(row["polygon"])
        shapely.prepare(polygon)
        ids, centroids = places.parcels
        parcels = {i for i, yes in zip(ids, shapely.contains(polygon, centroids).tolist(),
                                       strict=True) if yes}
        area_ids, shapes = places.areas
        touched = {i for i, yes in zip(area_ids, shapely.intersects(polygon, shapes).tolist(),
                                       strict=True) if yes}
        areas = place_areas | touched
    elif place_areas:
        parcels = set()   # a place of areas only: no parcel is in it
    return Compiled(row["id"], frozenset(row["kinds"]),
                    None if parcels is None else frozenset(parcels),
                    None if areas is None else frozenset(areas),
                    frozenset(row["classes"]) if row["classes"] else None,
                    row["min_probability"], frozenset(row["feeds"]) if row["feeds"] else None)
