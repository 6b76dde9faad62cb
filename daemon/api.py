"""HTTP API (FastAPI; OpenAPI at /openapi.json): health, readiness, metrics, parcels,
decisions, areas and their flood alerts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from ipaddress import IPv4Network, IPv6Network
from typing import Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from eowatch import __version__
from eowatch.models import flood
from eowatch.models.artifact import ModelMetadata

from .area_view import AreaCells
from .bus.base import Bus
from .evidence import Explainer, cell_evidence_png, evidence_png
from .metrics import Metrics
from .state import checkpointed_parcel
from .store.store import Page, Store
from .webhooks.api import create_router, scope_checker
from .webhooks.targets import Resolver, system_resolver


def create_app(store: Store, bus: Bus, metrics: Metrics, model: ModelMetadata,
               model_sha256: str, read_open: bool = True,
               webhook_allowed: Sequence[IPv4Network | IPv6Network] = (),
               resolve: Resolver = system_resolver, explainer: Explainer | None = None
               ) -> FastAPI:
    """``read_open``: reading needs no token; ``webhook_allowed``: internal networks webhook
    targets may be in; ``explainer``: parcels' evidence (default: the model's own threshold
    and season start)."""
    explainer = explainer or Explainer(store, model, model_sha256, model.stop_threshold,
                                       model.season_start or "01-01")
    app = FastAPI(title="eowatch", version=__version__,
                  description="Early crop-type decisions and flood alerts from satellite "
                              "feeds, and webhook subscriptions to them.")
    reader = [Depends(scope_checker(store, read_open)("read"))]
    app.include_router(create_router(store, webhook_allowed, resolve))

    @app.get("/healthz", summary="The process is alive")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="Bus and store are reachable")
    def readyz(response: Response) -> dict[str, Any]:
        checks = {"store": store.ping(), "bus": bus.ping()}
        if not all(checks.values()):
            response.status_code = 503
        return {"ready": all(checks.values()), **checks}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/parcels/{parcel_id}", dependencies=reader,
             summary="A parcel's observations, outputs and decisions")
    def parcel(parcel_id: str) -> dict[str, Any]:
        row = store.get_parcel(parcel_id)
        if row is None:
            raise HTTPException(404, f"parcel {parcel_id!r} is not registered")
        state = checkpointed_parcel(store, parcel_id, model.architecture, model_sha256)
        current = None
        if state is not None and state["season"] >= 0:
            probabilities = np.exp(np.asarray(state["log_probs"], np.float32))
            seen = state["observations"] > 0
            current = {"season": state["season"], "observations": state["observations"],
                       "last_acquired_at": datetime.fromtimestamp(state["last_time"], UTC)
                       if seen else None,
                       "last_acquisition_id": state["acquisition"],
                       "day_of_season": state["day"],
                       "class_probabilities": dict(zip(model.class_names,
                                                       map(float, probabilities), strict=True))
                       if seen else {},
                       "p_stop": state["p_stop"], "decided": state["decided"]}
        return {"id": parcel_id, "shard": row["shard"], "label": row["label"],
                "season_start": row["season_start"], "source": row["source"],
                "state": current, "decisions": store.decisions_for(parcel_id)}

    def evidence_of(parcel_id: str, season: int | None) -> dict[str, Any]:
        evidence = explainer.parcel(parcel_id, season)
        if evidence is None:
            raise HTTPException(404, f"parcel {parcel_id!r} is not registered")
        return evidence

    @app.get("/parcels/{parcel_id}/evidence", dependencies=reader,
             summary="What the model read of a parcel's season and made of each observation")
    def parcel_evidence(parcel_id: str, season: int | None = None) -> dict[str, Any]:
        return evidence_of(parcel_id, season)

    @app.get("/parcels/{parcel_id}/evidence.png", dependencies=reader,
             summary="A parcel's evidence as a plot", response_class=Response)
    def parcel_evidence_png(parcel_id: str, season: int | None = None) -> Response:
        return Response(evidence_png(evidence_of(parcel_id, season)), media_type="image/png")

    def cell_evidence_of(cell_id: str, year: int | None) -> dict[str, Any]:
        evidence = explainer.cell(cell_id, year)
        if evidence is None:
            raise HTTPException(404, f"cell {cell_id!r} is not registered")
        return evidence

    @app.get("/cells/{cell_id:path}/evidence", dependencies=reader,
             summary="A flood cell's observations of a year and its status after each")
    def cell_evidence(cell_id: str, year: int | None = None) -> dict[str, Any]:
        return cell_evidence_of(cell_id, year)

    @app.get("/cells/{cell_id:path}/evidence.png", dependencies=reader,
             summary="A flood cell's evidence as a plot", response_class=Response)
    def cell_evidence_png_view(cell_id: str, year: int | None = None) -> Response:
        return Response(cell_evidence_png(cell_evidence_of(cell_id, year)),
                        media_type="image/png")

    @app.get("/decisions", dependencies=reader,
             summary="Decisions, oldest acquisition first, paged")
    def decisions(crop: str | None = Query(None, alias="class"), feed: str | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  limit: int = Query(100, ge=1, le=1000), offset: int = Query(0, ge=0)
                  ) -> dict[str, Any]:
        aware("since", since)
        aware("until", until)
        page = store.list_decisions(crop=crop, feed=feed, since=since, until=until,
                                    limit=limit, offset=offset)
        return paged(page, limit, offset)

    @app.get("/alerts", dependencies=reader,
             summary="Flood alerts, oldest observation first, paged")
    def alerts(area: str | None = None,
               kind: Literal["flood.opened", "flood.updated", "flood.confirmed",
                             "flood.withdrawn", "flood.closed"] | None = None,
               since: datetime | None = None, limit: int = Query(100, ge=1, le=1000),
               offset: int = Query(0, ge=0)) -> dict[str, Any]:
        aware("since", since)
        page = store.list_alerts(area=area, kind=kind, since=since, limit=limit, offset=offset)
        return paged(page, limit, offset)

    def area_cells(area_id: str) -> tuple[dict[str, Any], AreaCells]:
        area = store.get_area(area_id)
        if area is None:
            raise HTTPException(404, f"area {area_id!r} is not registered")
        if area["grid"] is None:
            raise HTTPException(409, f"area {area_id!r} has no cells: import it again "
                                "(`eowatch areas import`)")
        return area, AreaCells.of(store, area_id, area["grid"])

    @app.get("/areas/{area_id}", dependencies=reader,
             summary="An area's cells by flood status and its open event")
    def area(area_id: str) -> dict[str, Any]:
        row, cells = area_cells(area_id)
        latest = store.list_alerts(area=area_id, limit=1, newest_first=True).items
        event = latest[0] if latest and latest[0]["kind"] not in flood.ENDED else None
        grid = row["grid"]
        coarse = (AreaCells.of(store, area_id, grid["coarse"], coarse=True)
                  .coarse_summary(grid["size"]) if "coarse" in grid else None)
        return {"id": area_id, "name": row["name"], "source": row["source"],
                "geometry": json.loads(row["geometry"]), **cells.summary(),
                "weather_satellites": coarse,
                "open_event": None if event is None else {
                    "event_id": event["event_id"], "last_alert": event}}

    @app.get("/areas/{area_id}/flood.geojson", dependencies=reader,
             summary="The area's flooded cells, dissolved, as of the last checkpoint")
    def flood_geojson(area_id: str) -> Response:
        _, cells = area_cells(area_id)
        feature = {"type": "Feature", "geometry": cells.flooded_extent(),
                   "properties": {"area_id": area_id, **cells.summary()}}
        return Response(json.dumps(feature), media_type="application/geo+json")

    @app.get("/areas/{area_id}/flood.png", dependencies=reader,
             summary="A quick-look of the area's cells by status",
             response_class=Response)
    def flood_png(area_id: str) -> Response:
        _, cells = area_cells(area_id)
        return Response(cells.quicklook(), media_type="image/png")

    return app


def aware(name: str, value: datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise HTTPException(422, f"{name}={value.isoformat()} has no time zone; give one, e.g. "
                            "2026-04-01T00:00:00Z")


def paged(page: Page, limit: int, offset: int) -> dict[str, Any]:
    following = offset + limit if offset + limit < page.total else None
    return {"items": page.items, "total": page.total, "limit": limit, "offset": offset,
            "next_offset": following}
