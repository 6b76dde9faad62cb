"""`eowatch backfill`: a daemon started mid-season after a backfill reaches the states and
decisions of one that ran from the season's start; running it again, or while the daemon is
live, duplicates nothing."""

from __future__ import annotations

import numpy as np
import pytest

from eowatch.cli import main
from eowatch.daemon.service import Daemon
from eowatch.daemon.store.tables import DeadLetter

from .pipeline import drain, make_daemon, parcel_states


def outcome(daemon: Daemon) -> tuple[dict, dict[str, np.ndarray]]:
    decisions = {d["parcel_id"]: (d["class"], d["day_of_season"], d["forced"],
                                  d["acquisition_id"], d["observations"])
                 for d in daemon.store.list_decisions(limit=1000).items}
    return decisions, parcel_states(daemon)


def backfill(capsys, *period: str) -> str:
    capsys.readouterr()
    assert main(["backfill", "--feed", "simulated", "--since", period[0], "--until",
                 period[1]]) == 0
    return capsys.readouterr().out


def duplicates(daemon: Daemon) -> float:
    return daemon.metrics.registry.get_sample_value(
        "eowatch_observations_skipped_total", {"reason": "duplicate"}) or 0.0


@pytest.mark.parametrize("bus", ["embedded", "kafka"])
def test_backfill_then_live_equals_a_whole_live_season(bus, tmp_path, unique, request,
                                                       monkeypatch, capsys):
    bootstrap = request.getfixturevalue("kafka_bootstrap") if bus == "kafka" else None
    whole = make_daemon(tmp_path / "whole", bus, f"{unique}-a", bootstrap)
    try:
        drain(whole)
        expected_decisions, expected_states = outcome(whole)
    finally:
        whole.shutdown()

    # the second deployment, set up as make_daemon sets it, through the environment
    for name, value in {"DATA_DIR": str(tmp_path / "mid"), "BUS": bus, "SHARDS": "8",
                        "PARTITIONS": "4", "TOPIC_PREFIX": f"{unique}-b",
                        "KAFKA_BOOTSTRAP": bootstrap or "127.0.0.1:9", "SIM_PARCELS": "150",
                        "SIM_SEASONS": "1"}.items():
        monkeypatch.setenv(f"EOWATCH_{name}", value)
    first = backfill(capsys, "2026-01-01", "2026-06-01")
    assert "the live feed continues from here" in first and " 0 published by an" in first
    again = backfill(capsys, "2026-01-01", "2026-06-01")
    assert again.split(": ")[1].startswith("0 acquisition(s) published")

    daemon = make_daemon(tmp_path / "mid", bus, f"{unique}-b", bootstrap)
    try:
        drain(daemon)
        decisions, states = outcome(daemon)
        assert decisions == expected_decisions and len(decisions) == 150
        for name in expected_states:
            np.testing.assert_allclose(states[name], expected_states[name], atol=1e-5)
        assert duplicates(daemon) == 0

        # a backfill of a period the live daemon already has: every observation a duplicate
        overlap = backfill(capsys, "2026-03-01", "2026-09-01")
        assert "live feed continues" not in overlap
        drain(daemon)
        assert duplicates(daemon) > 0
        decisions, states = outcome(daemon)
        assert decisions == expected_decisions
        np.testing.assert_allclose(states["state"], expected_states["state"], atol=1e-5)
        assert daemon.store.count(DeadLetter) == 0
    finally:
        daemon.shutdown()


def test_backfill_refuses_a_feed_that_cannot_replay_and_a_reversed_period(tmp_path, monkeypatch,
                                                                            capsys):
    monkeypatch.setenv("EOWATCH_DATA_DIR", str(tmp_path))
    assert main(["backfill", "--feed", "simulated", "--since", "2026-05-01", "--until",
                 "2026-04-01"]) == 2
    assert "is after" in capsys.readouterr().out
    assert main(["backfill", "--feed", "simulated-sentinel1", "--since", "2026-01-01"]) != 0
    assert "cannot replay a past period" in capsys.readouterr().err


def test_a_daemon_live_since_june_backfilled_afterwards_reaches_the_whole_seasons_states(
        tmp_path, unique, monkeypatch, capsys):
    whole = make_daemon(tmp_path / "whole", "embedded", f"{unique}-a")
    try:
        drain(whole)
        _, expected = outcome(whole)
    finally:
        whole.shutdown()

    # the live feed starts on June 1st: its cursor is placed there, nothing before published
    from datetime import UTC, datetime

    june = datetime(2026, 6, 1, tzinfo=UTC)
    daemon = make_daemon(tmp_path / "june", "embedded", f"{unique}-b")
    try:
        feed = daemon.adapters[0]
        first = next(k for k, (day, _) in enumerate(feed._events(0))
                     if feed.acquired_at(0, day) > june)
        with daemon.store.transaction() as conn:
            daemon.store.set_cursor(conn, "simulated", {"season": 0, "event": first})
        feed.cursor = {"season": 0, "event": first}
        feed.sim_day = float(feed._events(0)[first][0])
        drain(daemon)
        assert outcome(daemon)[1]["observations"].sum() < expected["observations"].sum()

        for name, value in {"DATA_DIR": str(tmp_path / "june"), "SHARDS": "8",
                            "PARTITIONS": "4", "TOPIC_PREFIX": f"{unique}-b",
                            "SIM_PARCELS": "150", "SIM_SEASONS": "1"}.items():
            monkeypatch.setenv(f"EOWATCH_{name}", value)
        backfill(capsys, "2026-01-01", "2026-06-01")
        drain(daemon)
        _, states = outcome(daemon)
        np.testing.assert_array_equal(states["observations"], expected["observations"])
        np.testing.assert_allclose(states["state"], expected["state"], atol=1e-4)
        applied = daemon.metrics.registry.get_sample_value(
            "eowatch_late_observations_applied_total", {"feed": "simulated"})
        assert applied and applied > 0
    finally:
        daemon.shutdown()
