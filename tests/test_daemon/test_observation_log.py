"""The observation log: what it keeps, how compact, and late observations re-stepped from it so
the state equals an in-order stream's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.base import Record
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.observation_log import CLOUDY, LATE, PendingLog, Series
from eowatch.daemon.outcomes import BatchOutput, decode
from eowatch.daemon.processing import Processor
from eowatch.daemon.registry import parcel_registry
from eowatch.daemon.state_model import CropModel
from eowatch.daemon.store.store import Store
from eowatch.models.artifact import load_artifact
from eowatch.settings import DEFAULT_MODEL

PARCELS = [f"p{i}" for i in range(40)]
START = datetime(2026, 1, 1, 10, 30, tzinfo=UTC)
DATES = [START + timedelta(days=5 * k) for k in range(14)]


@pytest.fixture
def store(store_url) -> Store:
    store = Store(store_url)
    store.migrate()
    store.upsert_parcels([{"id": p, "shard": i % 2} for i, p in enumerate(PARCELS)])
    yield store
    store.close()


def processor_on(store: Store, log: bool = True) -> Processor:
    return Processor(CropModel(load_artifact(DEFAULT_MODEL)), parcel_registry(store), Metrics(),
                     0.5, "01-01", read_log=store.read_log if log else None)


def acquisition(processor: Processor, when: datetime, clouds: tuple[str, ...] = ()
                ) -> list[ObservationChunk]:
    """Every parcel's observation on one date (a chunk per shard); values vary by parcel and
    date so each step moves the state."""
    bands = processor.model.band_names
    rng = np.random.default_rng(int(when.timestamp()))
    chunks = []
    for shard in (0, 1):
        ids = np.array(PARCELS[shard::2], dtype=object)
        values = rng.uniform(0.02, 0.5, (len(ids), len(bands))).astype(np.float32)
        valid = np.array([0.1 if p in clouds else 1.0 for p in ids], np.float32)
        chunks.append(ObservationChunk(
            feed="test", acquisition_id=f"S2_{when:%Y%m%d}", acquired_at=when, band_names=bands,
            shard=shard, parcel_ids=ids, values=values, valid_fraction=valid))
    return chunks


def run(processor: Processor, chunks: list[ObservationChunk]) -> BatchOutput:
    out = BatchOutput()
    records = [Record("obs", 0, i, b"", c.encode()) for i, c in enumerate(chunks)]
    processor.process(decode(records, out), out)
    return out


def checkpoint(store: Store, processor: Processor) -> None:
    assert processor.log is not None
    with store.transaction() as conn:
        store.write_log(conn, processor.model.key, processor.log.take())


def state_of(processor: Processor) -> dict[str, np.ndarray]:
    t = processor.table
    rows = t.lookup(np.array(PARCELS, dtype=object))
    return {"state": t.state[rows].numpy(), "outputs": t.outputs[rows], "p_stop": t.p_stop[rows],
            "observations": t.observations[rows], "last_time": t.last_time[rows]}


def counter(processor: Processor, name: str, labels: dict[str, str]) -> float:
    return processor.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_parcels_season_is_logged_with_its_cloudy_dates_in_under_64_bytes_each(store):
    processor = processor_on(store)
    for k, when in enumerate(DATES[:6]):
        run(processor, acquisition(processor, when, clouds=("p0",) if k == 2 else ()))
        if k % 2:
            checkpoint(store, processor)  # appended by several checkpoints
    checkpoint(store, processor)
    series = store.read_log(processor.model.key, ["p0"])[("p0", 2026)]
    assert series.times.tolist() == [d.timestamp() for d in DATES[:6]]
    assert series.flags.tolist() == [0, 0, CLOUDY, 0, 0, 0]
    assert np.isnan(series.stops[2]) and not np.isnan(series.stops[[0, 1, 3, 4, 5]]).any()
    # the outputs after the last step are the state's, to float16
    row = processor.table.lookup(np.array(["p0"], dtype=object))[0]
    np.testing.assert_allclose(series.outputs[-1], processor.table.outputs[row], rtol=2e-3)
    per_observation = series.nbytes / len(series)
    assert per_observation == 8 + 2 * 12 + 2 * 6 + 2 + 1 < 64


@pytest.mark.parametrize("held_back", [2, 5])
def test_a_late_observation_is_inserted_at_its_date_and_the_state_equals_in_order(
        store, held_back):
    in_order = processor_on(store)  # never checkpointed: its log stays in memory
    for when in DATES:
        run(in_order, acquisition(in_order, when))

    late = processor_on(store)
    for k, when in enumerate(DATES):
        if k != held_back:
            run(late, acquisition(late, when))
        if k % 3 == 0:
            checkpoint(store, late)  # part of the series is in the store, part pending
    out = run(late, acquisition(late, DATES[held_back]))  # published days late
    expected, got = state_of(in_order), state_of(late)
    for name in expected:
        np.testing.assert_allclose(got[name], expected[name], atol=1e-5, err_msg=name)
    assert counter(late, "eowatch_late_observations_applied_total", {"feed": "test"}) == 40
    assert counter(late, "eowatch_observations_skipped_total", {"reason": "late"}) == 0
    assert all(not d.forced for d in out.decisions)

    checkpoint(store, late)
    series = store.read_log(late.model.key, ["p3"])[("p3", 2026)]
    assert series.times.tolist() == [d.timestamp() for d in DATES]  # in order, each once
    assert series.flags.tolist() == [LATE if k == held_back else 0 for k in range(len(DATES))]
    row = late.table.lookup(np.array(["p3"], dtype=object))[0]
    np.testing.assert_allclose(series.stops[-1], late.table.p_stop[row], atol=1e-3)

    # the same late acquisition once more (a backfill, a producer's retry): a duplicate
    run(late, acquisition(late, DATES[held_back]))
    assert counter(late, "eowatch_observations_skipped_total", {"reason": "duplicate"}) == 40
    assert state_of(late)["observations"].tolist() == [len(DATES)] * 40


def test_a_decision_made_before_a_late_observation_stands(store):
    processor = processor_on(store)
    processor.model.threshold = 0.0  # every parcel decides at its first step
    first = run(processor, acquisition(processor, DATES[1]))
    assert len(first.decisions) == 40
    again = run(processor, acquisition(processor, DATES[0]))
    assert again.decisions == []  # decisions are events: the first one stands
    rows = processor.table.lookup(np.array(PARCELS, dtype=object))
    assert processor.table.decided[rows].all()
    assert counter(processor, "eowatch_late_observations_applied_total", {"feed": "test"}) == 40
    assert state_of(processor)["observations"].tolist() == [2] * 40


def test_without_a_complete_log_a_late_observation_is_skipped(store):
    processor = processor_on(store)
    for when in DATES[2:5]:
        run(processor, acquisition(processor, when))
    checkpoint(store, processor)
    store.prune_log(datetime.now(UTC) + timedelta(seconds=1))  # the retention ran out
    before = state_of(processor)
    run(processor, acquisition(processor, DATES[0]))
    assert counter(processor, "eowatch_observations_skipped_total", {"reason": "late"}) == 40
    np.testing.assert_array_equal(state_of(processor)["state"], before["state"])


def test_a_failed_checkpoint_puts_its_log_back_before_what_came_since():
    log = PendingLog()
    empty = np.zeros((1, 2))
    log.add(np.array(["a"], dtype=object), [2026], [1.0], empty, empty, [0.1], 0)
    taken = log.take()
    log.add(np.array(["a"], dtype=object), [2026], [2.0], empty, empty, [0.2], 0)
    log.put_back(taken)
    series = log.series_of(["a"])[("a", 2026)]
    assert series.times.tolist() == [1.0, 2.0]
    log.drop(["a"])
    assert log.series_of(["a"]) == {}


def test_series_round_trip_through_bytes():
    series = Series(np.array([1.5, 3.0]), np.ones((2, 3), np.float16),
                    np.zeros((2, 2), np.float16), np.array([0.1, np.nan], np.float16),
                    np.array([0, CLOUDY], np.uint8))
    decoded = Series.decode(*series.encode().values())
    for name in ("times", "bands", "outputs", "flags"):
        np.testing.assert_array_equal(getattr(decoded, name), getattr(series, name))
