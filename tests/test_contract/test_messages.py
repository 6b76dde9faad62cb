from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eowatch.contract.messages import (
    Decision,
    MessageError,
    ObservationChunk,
    decision_id,
    shard_of,
)


def chunk(n=5, bands=("B02", "B03", "B04")):
    rng = np.random.default_rng(0)
    return ObservationChunk(
        feed="sentinel2", acquisition_id="S2A_31UDQ_20260412_0_L2A",
        acquired_at=datetime(2026, 4, 12, 10, 56, tzinfo=UTC), band_names=bands, shard=7,
        parcel_ids=np.array([f"p{i}" for i in range(n)], dtype=object),
        values=rng.random((n, len(bands)), dtype=np.float32),
        valid_fraction=rng.random(n, dtype=np.float32))


def test_chunk_round_trip():
    original = chunk()
    decoded = ObservationChunk.decode(original.encode())
    assert decoded.parcel_ids.tolist() == original.parcel_ids.tolist()
    np.testing.assert_array_equal(decoded.values, original.values)
    np.testing.assert_array_equal(decoded.valid_fraction, original.valid_fraction)
    assert (decoded.feed, decoded.acquisition_id, decoded.acquired_at, decoded.band_names,
            decoded.shard, decoded.kind) == (original.feed, original.acquisition_id,
                                             original.acquired_at, original.band_names, 7,
                                             "observations")
    assert decoded.values.dtype == np.float32 and decoded.values.shape == (5, 3)


def test_empty_season_end_chunk_round_trip():
    empty = ObservationChunk(feed="simulated", acquisition_id="END",
                             acquired_at=datetime(2027, 1, 1, tzinfo=UTC), band_names=("B02",),
                             shard=3, parcel_ids=np.array([], dtype=object),
                             values=np.zeros((0, 1), np.float32),
                             valid_fraction=np.zeros(0, np.float32), kind="season_end",
                             season=2026)
    decoded = ObservationChunk.decode(empty.encode())
    assert decoded.kind == "season_end" and decoded.season == 2026 and len(decoded.parcel_ids) == 0


@pytest.mark.parametrize("payload", [b"", b"garbage", b"\xff" * 64])
def test_garbage_is_a_message_error(payload):
    with pytest.raises(MessageError) as info:
        ObservationChunk.decode(payload)
    assert info.value.reason == "undecodable"


def test_truncated_chunk_is_a_message_error():
    with pytest.raises(MessageError):
        ObservationChunk.decode(chunk().encode()[:-40])


def test_naive_time_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        ObservationChunk(feed="f", acquisition_id="a",
                         acquired_at=datetime(2026, 1, 1),  # noqa: DTZ001 (the point)
                         band_names=("B02",), shard=0, parcel_ids=np.array(["p"], dtype=object),
                         values=np.zeros((1, 1), np.float32),
                         valid_fraction=np.ones(1, np.float32))


def test_shard_is_stable_and_in_range():
    # pinned: changing the hash would move every parcel of a running deployment
    assert shard_of("sim-000000", 256) == 97
    assert shard_of("FR-2024-000123", 256) == 140
    shards = [shard_of(f"p{i}", 16) for i in range(2000)]
    assert set(shards) == set(range(16))


def test_decision_ids_are_deterministic_and_json_is_valid():
    assert decision_id("p1", 2026, "m1") == decision_id("p1", 2026, "m1")
    assert decision_id("p1", 2026, "m1") != decision_id("p1", 2027, "m1")
    d = Decision(decision_id("p1", 2026, "m1"), "p1", 2026, "sentinel2", "m1", "maize",
                 {"maize": 0.9, "wheat": 0.1}, 0.7, 180.0,
                 datetime(2026, 6, 30, tzinfo=UTC), "acq", 20, False)
    import json
    body = json.loads(d.encode())
    assert body["class"] == "maize" and body["acquired_at"] == "2026-06-30T00:00:00+00:00"


@settings(max_examples=300, deadline=None, database=None)
@given(st.data())
def test_any_damage_to_a_chunk_decodes_or_raises_a_message_error(data):
    """Truncated or altered bytes never raise anything but MessageError (which the consumer
    dead-letters with its reason)."""
    payload = bytearray(chunk(n=data.draw(st.integers(0, 6))).encode())
    if data.draw(st.booleans()):
        payload = payload[:data.draw(st.integers(0, len(payload)))]
    for _ in range(data.draw(st.integers(0, 6))):
        if payload:
            payload[data.draw(st.integers(0, len(payload) - 1))] ^= data.draw(st.integers(1, 255))
    try:
        decoded = ObservationChunk.decode(bytes(payload))
    except MessageError as exc:
        assert exc.reason in ("undecodable", "schema_version", "malformed", "band_count")
    else:
        assert decoded.values.shape == (len(decoded.parcel_ids), len(decoded.band_names))


def test_observations_name_their_targets():
    assert ObservationChunk.decode(chunk().encode()).targets == "parcels"
    cells = replace(chunk(), targets="cells")
    assert ObservationChunk.decode(cells.encode()).targets == "cells"
