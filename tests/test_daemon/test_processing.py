"""The processing stage on its own: seasons, late and repeated observations, faults."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest

from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.base import Record
from eowatch.daemon.metrics import Metrics
from eowatch.daemon.outcomes import BatchOutput, decode
from eowatch.daemon.processing import Processor
from eowatch.daemon.registry import parcel_registry
from eowatch.daemon.state_model import CropModel
from eowatch.daemon.store.store import Store
from eowatch.models.artifact import load_artifact
from eowatch.settings import DEFAULT_MODEL


@pytest.fixture
def processor(tmp_path) -> Processor:
    store = Store(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    # legacy rows (imported before season starts were checked) can still be in a store
    store.upsert_parcels([{"id": "a", "shard": 0}, {"id": "b", "shard": 0},
                          {"id": "c", "shard": 1}, {"id": "bad-start", "shard": 1,
                                                    "season_start": "13-01"}])
    return Processor(CropModel(load_artifact(DEFAULT_MODEL)), parcel_registry(store), Metrics(),
                     0.5, "01-01")


def chunk(processor: Processor, ids: list[str], when: datetime, shard: int = 0,
          value: float = 0.2) -> ObservationChunk:
    bands = processor.model.band_names
    return ObservationChunk(
        feed="test", acquisition_id=f"T{when:%Y%m%d}", acquired_at=when, band_names=bands,
        shard=shard, parcel_ids=np.array(ids, dtype=object),
        values=np.full((len(ids), len(bands)), value, np.float32),
        valid_fraction=np.ones(len(ids), np.float32))


def run(processor: Processor, *chunks: ObservationChunk) -> BatchOutput:
    out = BatchOutput()
    records = [Record("obs", 0, i, str(c.shard).encode(), c.encode())
               for i, c in enumerate(chunks)]
    processor.process(decode(records, out), out)
    return out


def observations(processor: Processor, parcel: str) -> int:
    table = processor.table
    return int(table.observations[table.lookup(np.array([parcel], dtype=object))[0]])


def skipped(processor: Processor, reason: str) -> float:
    return processor.metrics.registry.get_sample_value(
        "eowatch_observations_skipped_total", {"reason": reason}) or 0.0


def test_a_new_season_closes_stepped_parcels_beside_never_stepped_ones(processor):
    run(processor, chunk(processor, ["a"], datetime(2025, 6, 1, tzinfo=UTC)))
    # "b" has a row (its shard is loaded) but no season yet; "a" is undecided in 2025
    out = run(processor, chunk(processor, ["a", "b"], datetime(2026, 2, 1, tzinfo=UTC)))
    assert [(d.parcel_id, d.season, d.forced) for d in out.decisions] == [("a", 2025, True)]
    assert observations(processor, "a") == observations(processor, "b") == 1


def test_an_older_acquisition_is_late_and_the_same_one_again_a_duplicate(processor):
    run(processor, chunk(processor, ["a"], datetime(2026, 3, 10, tzinfo=UTC)))
    run(processor, chunk(processor, ["a"], datetime(2026, 3, 5, tzinfo=UTC)))  # published late
    assert skipped(processor, "late") == 1 and skipped(processor, "duplicate") == 0
    run(processor, chunk(processor, ["a"], datetime(2026, 3, 10, tzinfo=UTC)))  # a retry
    assert skipped(processor, "late") == 1 and skipped(processor, "duplicate") == 1
    assert observations(processor, "a") == 1


def test_a_chunk_whose_processing_raises_is_dead_lettered_and_its_wave_goes_on(processor):
    when = datetime(2026, 3, 1, tzinfo=UTC)
    out = run(processor, chunk(processor, ["a", "b"], when),
              chunk(processor, ["bad-start", "c"], when, shard=1))
    assert [(d["offset"], d["reason"]) for d in out.dead_letters] == [(1, "processing_error")]
    assert "month 13" in out.dead_letters[0]["detail"]
    assert observations(processor, "a") == observations(processor, "b") == 1


def test_a_failing_model_step_dead_letters_its_chunk_and_steps_nothing_twice(processor,
                                                                           monkeypatch):
    real = processor.model.step

    def step(state, values, days):  # a fault that only one chunk's values trigger
        if bool((values == 0.7).any()):
            raise RuntimeError("injected fault")
        return real(state, values, days)

    monkeypatch.setattr(processor.model, "step", step)
    when = datetime(2026, 3, 1, tzinfo=UTC)
    processor.step_batch = 1  # the good parcel is stepped before the bad one raises
    out = run(processor, chunk(processor, ["a", "b"], when),
              chunk(processor, ["c"], when, shard=1, value=0.7))
    assert [(d["offset"], d["reason"]) for d in out.dead_letters] == [(1, "processing_error")]
    assert "RuntimeError: injected fault" in out.dead_letters[0]["detail"]
    assert observations(processor, "a") == observations(processor, "b") == 1
    assert observations(processor, "c") == 0


def test_chunks_that_cannot_be_right_are_dead_lettered_whole_or_by_row(processor):
    when = datetime(2026, 3, 1, tzinfo=UTC)
    repeated = chunk(processor, ["a", "b", "a"], when)
    ancient = chunk(processor, ["a"], datetime(1971, 3, 1, tzinfo=UTC))
    fractions = replace(chunk(processor, ["a", "b"], when),
                        valid_fraction=np.array([1.5, np.nan], np.float32))
    out = run(processor, repeated, ancient, fractions)
    assert [(d["offset"], d["reason"]) for d in out.dead_letters] == [
        (0, "duplicate_ids"), (1, "time_out_of_range"), (2, "bad_valid_fraction")]
    assert "2 valid fractions outside 0-1" in out.dead_letters[2]["detail"]
    assert observations(processor, "a") == observations(processor, "b") == 0


def test_targets_unknown_to_an_empty_registry_are_unknown_not_an_error(tmp_path):
    """A daemon whose registry holds no target yet (areas imported after it started) names
    the ids it does not know, as it does with a registry that holds others."""
    store = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    store.migrate()
    empty = Processor(CropModel(load_artifact(DEFAULT_MODEL)), parcel_registry(store),
                      Metrics(), 0.5, "01-01")
    out = run(empty, chunk(empty, ["nobody"], datetime(2026, 3, 1, tzinfo=UTC)))
    assert [d["reason"] for d in out.dead_letters] == ["unknown_parcel"]
