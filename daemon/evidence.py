"""A target's evidence: what its model read and made of each observation, from the
observation log, with what it led to (a parcel's decision, a cell's area's flood alerts).
Served as JSON and PNG by the API and printed by `eowatch explain`."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from eowatch.models import flood
from eowatch.models.artifact import ModelMetadata
from eowatch.models.calibration import calibrate
from eowatch.seasons import season_begin

from .areas import CELL_BANDS, is_geo, is_radar
from .observation_log import LATE
from .store.store import Store


@dataclass(frozen=True)
class Explainer:
    """What a parcel's evidence needs besides the store: the model (its classes, calibration
    and the sha256 its log rows are kept under), the stopping threshold the daemon applies
    and the season start of parcels registered without one."""

    store: Store
    model: ModelMetadata
    model_sha256: str
    threshold: float
    season_start: str

    def parcel(self, parcel_id: str, season: int | None = None) -> dict[str, Any] | None:
        """The evidence of a season (default: the latest logged); None when the parcel is not
        registered. A parcel without a logged season gets empty steps."""
        row = self.store.get_parcel(parcel_id)
        if row is None:
            return None
        if season is None:
            seasons = self.store.log_seasons(self.model_sha256, parcel_id)
            season = seasons[-1] if seasons else None
        series = None
        if season is not None:
            logged = self.store.read_log(self.model_sha256, [parcel_id], season)
            if (parcel_id, season) in logged:
                series = logged[(parcel_id, season)].in_order()
        start = row["season_start"] or self.season_start
        decisions = [d for d in self.store.decisions_for(parcel_id)
                     if d["season"] == season and d["model_version"] == self.model.version]
        evidence: dict[str, Any] = {
            "parcel_id": parcel_id, "season": season, "season_start": start,
            "model_version": self.model.version, "classes": list(self.model.class_names),
            "threshold": self.threshold,
            "decision": decisions[0] if decisions else None,
            "steps": {"dates": [], "days": [], "late": [], "p_stop": [],
                      "probabilities": {c: [] for c in self.model.class_names}},
            "cloudy_dates": []}
        if series is None or season is None:
            return evidence
        begin = season_begin(season, start).timestamp()
        stepped = series.subset(series.stepped)
        probabilities = calibrate(stepped.outputs.astype(np.float32), self.model.temperature)
        evidence["steps"] = {
            "dates": [iso(t) for t in stepped.times.tolist()],
            "days": np.round((stepped.times - begin) / 86400.0, 3).tolist(),
            "late": ((stepped.flags & LATE) > 0).tolist(),
            "p_stop": np.round(stepped.stops.astype(np.float64), 4).tolist(),
            "probabilities": {c: np.round(probabilities[:, k], 4).tolist()
                              for k, c in enumerate(self.model.class_names)}}
        evidence["cloudy_dates"] = [iso(t) for t in series.times[~series.stepped].tolist()]
        return evidence

    def cell(self, cell_id: str, year: int | None = None) -> dict[str, Any] | None:
        """A flood cell's evidence of a calendar year (default: the latest logged): each
        observation's kind and bands, the cell's status and flood probability after it, and
        its area's alerts that year; None when the cell is not registered."""
        row = self.store.get_cell(cell_id)
        if row is None:
            return None
        if year is None:
            years = self.store.log_seasons(flood.VERSION, cell_id)
            year = years[-1] if years else None
        evidence: dict[str, Any] = {
            "cell_id": cell_id, "area_id": row["area_id"], "year": year,
            "model_version": flood.VERSION, "statuses": list(flood.STATUS_NAMES),
            "steps": {"dates": [], "evidence": [], "status": [], "p_flood": [], "bands": {}},
            "cloudy_dates": [], "alerts": []}
        logged = self.store.read_log(flood.VERSION, [cell_id], year) if year is not None \
            else {}
        if year is None or (cell_id, year) not in logged:
            return evidence
        series = logged[(cell_id, year)].in_order()
        stepped = series.subset(series.stepped)
        values = stepped.bands.astype(np.float32)
        radar, geo = is_radar(values), is_geo(values)
        kinds = np.where(radar, flood.RADAR, np.where(geo, flood.GEOSTATIONARY, flood.OPTICAL))
        seen = np.asarray(np.isfinite(values).any(axis=0), bool)
        evidence["steps"] = {
            "dates": [iso(t) for t in stepped.times.tolist()], "evidence": kinds.tolist(),
            "status": [flood.STATUS_NAMES[int(s)] for s in stepped.outputs[:, 0].tolist()],
            "p_flood": np.round(stepped.stops.astype(np.float64), 4).tolist(),
            "bands": {name: [None if not np.isfinite(v) else round(float(v), 3)
                             for v in values[:, k].tolist()]
                      for k, name in enumerate(CELL_BANDS) if seen[k]}}
        evidence["cloudy_dates"] = [iso(t) for t in series.times[~series.stepped].tolist()]
        first = datetime(year, 1, 1, tzinfo=UTC)
        evidence["alerts"] = [
            {k: a.get(k) for k in ("kind", "event_id", "observed_at", "flooded_km2")}
            for a in self.store.list_alerts(area=row["area_id"], since=first, limit=1000).items
            if when(a["observed_at"]).year == year]
        return evidence


def iso(unix_seconds: float) -> str:
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat().replace("+00:00", "Z")


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def decided_at(evidence: dict[str, Any]) -> datetime | None:
    decision = evidence["decision"]
    return None if decision is None else decision["acquired_at"]


def png_of(fig: Any) -> bytes:
    """A time-series figure as PNG bytes (closed after)."""
    from eowatch.models.plots import plt

    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buffer.getvalue()


def evidence_png(evidence: dict[str, Any]) -> bytes:
    """Class probabilities over the season, the stopping probability against the threshold,
    a tick per observation (grey: cloudy, skipped; orange: arrived late) and the decision."""
    from eowatch.models.plots import plt

    steps = evidence["steps"]
    dates = [when(d) for d in steps["dates"]]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                      height_ratios=(3, 2))
    for name, values in steps["probabilities"].items():
        top.plot(dates, values, marker="o", markersize=3, label=name)
    top.set_ylim(0, 1.02)
    top.set_ylabel("class probability")
    top.legend(fontsize=8, ncol=3, loc="upper left")
    bottom.plot(dates, steps["p_stop"], marker="o", markersize=3, color="black",
                label="stopping probability")
    bottom.axhline(evidence["threshold"], color="red", linestyle="--", linewidth=1,
                   label=f"threshold {evidence['threshold']:g}")
    bottom.set_ylim(0, 1.02)
    bottom.set_ylabel("stopping probability")
    for ax in (top, bottom):
        for date, late in zip(dates, steps["late"], strict=True):
            ax.axvline(date, color="tab:orange" if late else "0.85", linewidth=0.8, zorder=0)
        for cloudy in evidence["cloudy_dates"]:
            ax.axvline(when(cloudy), color="0.6", linestyle=":", linewidth=0.8, zorder=0)
    decision = evidence["decision"]
    title = f"parcel {evidence['parcel_id']}, season {evidence['season']}"
    if decision is not None:
        for ax in (top, bottom):
            ax.axvline(decision["acquired_at"], color="black", linewidth=1.5)
        how = "forced at season end" if decision["forced"] else "decided"
        title += (f": {how} {decision['class']} "
                  f"({decision['probabilities'][decision['class']]:.2f}) on "
                  f"{decision['acquired_at']:%Y-%m-%d}, day {decision['day_of_season']:.0f}")
    top.set_title(title, fontsize=10)
    bottom.legend(fontsize=8, loc="upper left")
    return png_of(fig)


def cell_evidence_png(evidence: dict[str, Any]) -> bytes:
    """The flood probability after each observation (by kind of evidence), the radar
    backscatter, cloudy dates and the area's alerts."""
    from eowatch.models.plots import plt

    steps = evidence["steps"]
    dates = np.array([when(d) for d in steps["dates"]], dtype=object)
    kinds = np.array(steps["evidence"], dtype=object)
    p_flood = np.array(steps["p_flood"], dtype=np.float64)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                      height_ratios=(3, 2))
    for kind, marker in ((flood.RADAR, "o"), (flood.OPTICAL, "s"), (flood.GEOSTATIONARY, ".")):
        mine = kinds == kind
        if mine.any():
            top.plot(dates[mine], p_flood[mine], marker, markersize=4, label=kind)
    flooded = np.array([s == "flooded" for s in steps["status"]], bool)
    if flooded.any():
        top.plot(dates[flooded], p_flood[flooded], "x", color="tab:red", label="flooded")
    top.axhline(0.5, color="0.5", linestyle="--", linewidth=1)
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("flood probability")
    top.legend(fontsize=8, loc="upper left")
    for band in ("VV", "VH"):
        series = np.array([np.nan if v is None else v
                           for v in steps["bands"].get(band, [None] * len(dates))], np.float64)
        if np.isfinite(series).any():
            bottom.plot(dates[np.isfinite(series)], series[np.isfinite(series)], "o-",
                        markersize=3, label=f"{band} (dB)")
    bottom.set_ylabel("backscatter (dB)")
    bottom.legend(fontsize=8, loc="lower left")
    for ax in (top, bottom):
        for cloudy in evidence["cloudy_dates"]:
            ax.axvline(when(cloudy), color="0.6", linestyle=":", linewidth=0.8, zorder=0)
        for alert in evidence["alerts"]:
            ax.axvline(when(alert["observed_at"]), color="tab:red", linewidth=0.8, alpha=0.5)
    top.set_title(f"cell {evidence['cell_id']}, {evidence['year']}: "
                  f"{len(evidence['alerts'])} alert(s) of its area", fontsize=10)
    return png_of(fig)


def cell_evidence_text(evidence: dict[str, Any]) -> str:
    steps = evidence["steps"]
    lines = [f"cell {evidence['cell_id']} (area {evidence['area_id']})  year {evidence['year']}"
             f"  model {evidence['model_version']}"]
    if not steps["dates"] and not evidence["cloudy_dates"]:
        lines.append("no logged observations (none yet, or pruned by EOWATCH_LOG_RETENTION_DAYS)")
        return "\n".join(lines)
    bands = [b for b in ("VV", "VH", "MNDWI", "water_index") if b in steps["bands"]]
    lines.append(f"{'date':<17} {'evidence':<13} " + " ".join(f"{b:>11}" for b in bands)
                 + f"  {'status':<15} {'p_flood':>7}")
    alerts = {a["observed_at"][:16]: a["kind"] for a in evidence["alerts"]}
    rows = [(d, i) for i, d in enumerate(steps["dates"])] + \
        [(d, -1) for d in evidence["cloudy_dates"]]
    for date, i in sorted(rows):
        stamp = date[:16].replace("T", " ")
        if i < 0:
            lines.append(f"{stamp:<17} cloudy: skipped")
            continue
        measured = " ".join("{:>11}".format("" if steps["bands"][b][i] is None
                                            else f"{steps['bands'][b][i]:.2f}") for b in bands)
        alert = alerts.get(date[:16], "")
        lines.append(f"{stamp:<17} {steps['evidence'][i]:<13} {measured}  "
                     f"{steps['status'][i]:<15} {steps['p_flood'][i]:>7.3f}  {alert}")
    return "\n".join(lines)


def evidence_text(evidence: dict[str, Any]) -> str:
    """The evidence as a terminal table: one line per observation."""
    steps, classes = evidence["steps"], evidence["classes"]
    lines = [f"parcel {evidence['parcel_id']}  season {evidence['season']} (starts "
             f"{evidence['season_start']})  model {evidence['model_version']}  stopping "
             f"threshold {evidence['threshold']:g}"]
    if not steps["dates"] and not evidence["cloudy_dates"]:
        lines.append("no logged observations (none yet, or pruned by EOWATCH_LOG_RETENTION_DAYS)")
        return "\n".join(lines)
    short = [c[:10] for c in classes]
    lines.append(f"{'date':<11} {'day':>6}  " + " ".join(f"{c:>10}" for c in short)
                 + f"  {'p_stop':>6}")
    rows = [(d, "step", i) for i, d in enumerate(steps["dates"])] + \
        [(d, "cloudy", -1) for d in evidence["cloudy_dates"]]
    decided = decided_at(evidence)
    for date, kind, i in sorted(rows):
        if kind == "cloudy":
            lines.append(f"{date[:10]:<11} {'':>6}  cloudy: skipped")
            continue
        probabilities = [steps["probabilities"][c][i] for c in classes]
        marks = []
        if steps["late"][i]:
            marks.append("late")
        if steps["p_stop"][i] >= evidence["threshold"]:
            marks.append("stop")
        if decided is not None and when(date) == decided:
            marks.append("<- decision")
        lines.append(f"{date[:10]:<11} {steps['days'][i]:>6.1f}  "
                     + " ".join(f"{p:>10.3f}" for p in probabilities)
                     + f"  {steps['p_stop'][i]:>6.3f}  " + " ".join(marks))
    decision = evidence["decision"]
    if decision is None:
        lines.append("no decision yet")
    else:
        lines.append(f"decision: {decision['class']} "
                     f"(p={decision['probabilities'][decision['class']]:.3f}) on "
                     f"{decision['acquired_at']:%Y-%m-%d}, day {decision['day_of_season']:.1f}, "
                     f"after {decision['observations']} observations"
                     + (", forced at season end" if decision["forced"] else ""))
    return "\n".join(lines)
