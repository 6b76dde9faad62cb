from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from eowatch.contract.messages import Decision, decision_id
from eowatch.daemon.consuming import decision_row
from eowatch.daemon.store.store import Store
from eowatch.daemon.store.tables import DecisionRow, Parcel


def decision(parcel: str, crop: str, day: int) -> Decision:
    return Decision(decision_id(parcel, 2026, "m1"), parcel, 2026, "simulated", "m1", crop,
                    {crop: 0.8}, 0.6, float(day), datetime(2026, 1, 1, tzinfo=UTC)
                    + timedelta(days=day), f"acq{day}", 10, False)


def test_migrations_are_idempotent_and_keep_data(store_url):
    store = Store(store_url)
    store.migrate()
    store.upsert_parcels([{"id": "p1", "shard": 3, "label": "maize"}])
    store.migrate()  # an upgrade to the same head is a no-op, never a rebuild
    assert store.count(Parcel) == 1
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0007"


def test_parcels_cursors_offsets(store_url):
    store = Store(store_url)
    store.migrate()
    store.upsert_parcels([{"id": "p1", "shard": 3, "season_start": "09-01"},
                          {"id": "p2", "shard": 4}])
    store.upsert_parcels([{"id": "p2", "shard": 4, "label": "wheat"}])
    assert store.parcel_registry() == {"p1": (3, "09-01"), "p2": (4, None)}
    assert store.get_parcel("p2")["label"] == "wheat"
    assert store.get_cursor("sentinel2") is None
    with store.transaction() as conn:
        store.set_cursor(conn, "sentinel2", {"datetime": "2026-04-12T10:56:00Z", "item": "x"})
        store.save_offsets(conn, "g", {("obs", 0): 10, ("obs", 1): 2**40})
    assert store.get_cursor("sentinel2")["item"] == "x"
    assert store.get_offsets("g") == {("obs", 0): 10, ("obs", 1): 2**40}


def test_a_failed_transaction_leaves_nothing(store_url):
    store = Store(store_url)
    store.migrate()
    try:
        with store.transaction() as conn:
            store.set_cursor(conn, "f", {"n": 1})
            raise RuntimeError("crash between writes")
    except RuntimeError:
        pass
    assert store.get_cursor("f") is None


def test_decisions_upsert_once_and_page(store_url):
    store = Store(store_url)
    store.migrate()
    rows = [decision_row(decision(f"p{i}", "maize" if i % 2 else "wheat", i)) for i in range(7)]
    for _ in range(2):  # a replay inserts nothing new
        with store.transaction() as conn:
            store.insert_decisions(conn, rows)
    assert store.count(DecisionRow) == 7
    page = store.list_decisions(crop="maize", limit=2, offset=1)
    assert page.total == 3 and [d["parcel_id"] for d in page.items] == ["p3", "p5"]
    assert page.items[0]["acquired_at"].tzinfo is not None
    since = datetime(2026, 1, 5, tzinfo=UTC)
    assert store.list_decisions(since=since).total == 3
    assert store.decisions_for("p2")[0]["probabilities"] == {"wheat": 0.8}


def test_state_rows_round_trip(store_url):
    store = Store(store_url)
    store.migrate()
    with store.transaction() as conn:
        store.save_states(conn, "m1", [("p1", 1, b"\x01" * 16, "acq-1"),
                                       ("p2", 2, b"\x02" * 16, None)])
        store.save_states(conn, "m1", [("p1", 1, b"\x03" * 16, "acq-2")])
        store.save_states(conn, "m2", [("p1", 1, b"\x04" * 16, "acq-3")])  # another model's
    assert store.load_states("m1", [1]) == [("p1", 1, b"\x03" * 16, "acq-2")]
    assert store.load_states("m2", [1]) == [("p1", 1, b"\x04" * 16, "acq-3")]
    assert store.get_state("m1", "p2") == (b"\x02" * 16, None)
    assert store.load_states("m1", [7]) == [] and store.get_state("m1", "p9") is None
    assert store.get_state("m2", "p2") is None


def test_unreachable_store_names_the_setting(tmp_path):
    import pytest

    from eowatch.daemon.store.store import StoreError
    store = Store("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="EOWATCH_STORE_URL"):
        store.migrate()
