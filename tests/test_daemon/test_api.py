from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from eowatch.contract.messages import Decision, decision_id
from eowatch.daemon.api import create_app
from eowatch.daemon.bus.embedded import EmbeddedBus
from eowatch.daemon.consuming import decision_row
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.store.store import Store
from eowatch.models.artifact import ModelMetadata


def make_client(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'api.db'}")
    store.migrate()
    store.upsert_parcels([{"id": f"p{i}", "shard": i % 4, "label": "maize"} for i in range(5)])
    rows = [decision_row(Decision(decision_id(f"p{i}", 2026, "m"), f"p{i}", 2026, "simulated",
                                  "m", "maize" if i % 2 else "wheat", {"maize": 0.7, "wheat": 0.3},
                                  0.6, 100.0 + i, datetime(2026, 4, 10, tzinfo=UTC)
                                  + timedelta(days=i), "a", 12, False)) for i in range(5)]
    with store.transaction() as conn:
        store.insert_decisions(conn, rows)
    meta = ModelMetadata(version="m", feed="simulated", band_names=("B02",),
                         class_names=("maize", "wheat"), band_mean=(0.0,), band_std=(1.0,),
                         architecture={}, alpha=0.8, epsilon=10)
    metrics = Metrics()
    metrics.dead_letters.labels("undecodable").inc()
    return TestClient(create_app(store, EmbeddedBus(store), metrics, meta, "sha"))


def test_health_readiness_metrics_openapi(tmp_path):
    client = make_client(tmp_path)
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"ready": True, "store": True, "bus": True}
    text = client.get("/metrics").text
    assert 'eowatch_dead_letters_total{reason="undecodable"} 1.0' in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/healthz", "/readyz", "/metrics", "/parcels/{parcel_id}", "/decisions"} <= set(paths)


def test_decisions_are_paged_and_filtered(tmp_path):
    client = make_client(tmp_path)
    page = client.get("/decisions", params={"limit": 2}).json()
    assert page["total"] == 5 and len(page["items"]) == 2 and page["next_offset"] == 2
    assert [d["parcel_id"] for d in page["items"]] == ["p0", "p1"]
    maize = client.get("/decisions", params={"class": "maize"}).json()
    assert {d["parcel_id"] for d in maize["items"]} == {"p1", "p3"}
    late = client.get("/decisions", params={"since": "2026-04-13T00:00:00Z"}).json()
    assert {d["parcel_id"] for d in late["items"]} == {"p3", "p4"}
    assert client.get("/decisions", params={"feed": "sentinel2"}).json()["total"] == 0
    assert client.get("/decisions", params={"limit": 0}).status_code == 422


def test_parcel_view(tmp_path):
    client = make_client(tmp_path)
    body = client.get("/parcels/p1").json()
    assert body["label"] == "maize" and body["state"] is None
    assert body["decisions"][0]["class"] == "maize"
    assert client.get("/parcels/nope").status_code == 404


def test_times_without_a_zone_are_refused_with_422(tmp_path):
    client = make_client(tmp_path)
    for query in ("since=2026-04-01T00:00:00", "until=2026-04-01"):
        response = client.get(f"/decisions?{query}")
        assert response.status_code == 422 and "time zone" in response.json()["detail"]
    assert client.get("/decisions?since=2026-04-12T00:00:00Z").json()["total"] == 3
