"""The whole pipeline, simulated feed -> bus -> consumer -> decisions, on both bus backends."""

from dataclasses import replace
from datetime import UTC, datetime

import numpy as np
import pytest
import torch

from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.bus.base import OutMessage
from eowatch.daemon.state import checkpointed_parcel
from eowatch.daemon.store.tables import DeadLetter, DecisionRow
from eowatch.models.calibration import calibrate
from eowatch.models.metrics import predict
from eowatch.settings import DEFAULT_MODEL

from .pipeline import drain, make_daemon, simulated_season

BUSES = ["embedded", "kafka"]


@pytest.fixture(params=BUSES)
def daemon(request, tmp_path, unique):
    bootstrap = request.getfixturevalue("kafka_bootstrap") if request.param == "kafka" else None
    d = make_daemon(tmp_path, request.param, unique, bootstrap)
    yield d
    d.shutdown()


def test_decisions_equal_the_offline_model(daemon):
    drain(daemon)
    assert_decisions_equal_the_offline_model(daemon)


def assert_decisions_equal_the_offline_model(daemon):
    decisions = {d["parcel_id"]: d for d in daemon.store.list_decisions(limit=1000).items}
    assert len(decisions) == 150  # one per parcel and season: stop rule or season end
    assert {d["feed"] for d in decisions.values()} == {"simulated"}
    assert daemon.store.count(DeadLetter) == 0

    # the same season read whole by the training-time forward pass and the same stopping rule
    series = simulated_season(150).select_bands(daemon.model.metadata.band_names)
    # the feed stamps acquisitions at the 10:30 UTC overpass: the same day input, to the minute
    series = replace(series, days=series.days + np.float32(10.5 / 24))
    offline = predict(daemon.model.model, series, daemon.model.metadata.stop_threshold)
    names = daemon.model.metadata.class_names
    for i in range(150):
        d = decisions[f"sim-{i:06d}"]
        assert d["class"] == names[offline.predicted[i]]
        assert d["day_of_season"] == pytest.approx(offline.stop_day[i], abs=1e-3)
        assert d["forced"] == (offline.stop_step[i] == series.lengths[i] - 1
                               and offline.p_stop[i, offline.stop_step[i]] < 0.5)
        probs = calibrate(offline.log_probs[i, offline.stop_step[i]],
                          daemon.model.metadata.temperature)
        assert max(abs(d["probabilities"][n] - p) for n, p in zip(names, probs, strict=True)) < 1e-4
    metrics = daemon.metrics.registry
    assert metrics.get_sample_value("eowatch_observations_consumed_total",
                                    {"feed": "simulated"}) == series.lengths.sum()
    assert sum(metrics.get_sample_value("eowatch_decisions_total",
                                        {"feed": "simulated", "crop": c, "forced": f}) or 0
               for c in names for f in ("true", "false")) == 150


def test_a_model_with_shapelets_decides_as_it_does_offline(tmp_path, unique):
    """The shapelet front end's state (running maxima and the last inputs) is stepped,
    checkpointed and read back by the daemon as the LSTM's is."""
    from eowatch.cli import main
    from eowatch.models.artifact import load_artifact

    model = tmp_path / "shapelets.pt"
    assert main(["train", "simulated:200:4", "--out", str(model), "--epochs", "2",
                 "--warmup", "0", "--hidden", "16", "--shapelets", "4", "--no-progress",
                 "--feed", "sentinel2", "--season-start", "01-01", "--allow-weak",
                 "--bands", ",".join(load_artifact(DEFAULT_MODEL).metadata.band_names)]) == 0
    d = make_daemon(tmp_path, "embedded", unique, model_path=model)
    try:
        assert len(d.model.model.state_shape) == 1 and d.model.model.arch.shapelet_sizes
        drain(d)
        assert_decisions_equal_the_offline_model(d)
        state = checkpointed_parcel(d.store, "sim-000001", d.model.metadata.architecture,
                                    d.model.sha256)
        assert state is not None and state["observations"] > 1
    finally:
        d.shutdown()


def test_replaying_the_stream_changes_nothing(daemon):
    drain(daemon)
    before = daemon.store.list_decisions(limit=1000).items
    # rewind the consumer to the start: every chunk is a duplicate or a closed season now
    daemon.consumer.consumer.seek({tp: 0 for tp in daemon.consumer.consumer.assignment()})
    drain(daemon)
    assert daemon.store.list_decisions(limit=1000).items == before
    assert daemon.store.count(DecisionRow) == 150


def good_chunk(daemon, parcel_ids, values=None, bands=None):
    registry = daemon.store.parcel_registry()
    shard = registry[parcel_ids[-1]][0]
    bands = bands or daemon.model.metadata.band_names
    n = len(parcel_ids)
    return ObservationChunk(
        feed="simulated", acquisition_id="TEST", acquired_at=datetime(2026, 3, 1, tzinfo=UTC),
        band_names=tuple(bands), shard=shard, parcel_ids=np.array(parcel_ids, dtype=object),
        values=np.full((n, len(bands)), 0.2, np.float32) if values is None else values,
        valid_fraction=np.ones(n, np.float32))


def test_bad_input_goes_to_dead_letters_and_the_daemon_moves_on(daemon):
    registry = daemon.store.parcel_registry()
    shard = registry["sim-000000"][0]
    same_shard = [p for p, (s, _) in registry.items() if s == shard][:3]
    nan_values = np.full((len(same_shard), len(daemon.model.metadata.band_names)), 0.2,
                         np.float32)
    nan_values[1, 4] = np.nan
    bad = [
        OutMessage(b"1", b"not arrow at all", shard),
        OutMessage(b"1", good_chunk(daemon, ["no-such-parcel"] + same_shard[:1]).encode(), shard),
        OutMessage(b"1", good_chunk(daemon, same_shard, nan_values).encode(), shard),
        OutMessage(b"1", good_chunk(daemon, same_shard, np.zeros((3, 4), np.float32),
                                    bands=("B02", "B03", "B04", "B08")).encode(), shard),
        # targets no state model of this daemon reads (it runs parcels and cells)
        OutMessage(b"1", replace(good_chunk(daemon, same_shard), targets="stations").encode(),
                   shard),
    ]
    daemon.bus.publish(daemon.topics["observations"], bad)
    drain(daemon)
    counts = daemon.store.dead_letter_counts()
    assert counts == {"undecodable": 1, "unknown_parcel": 1, "nan_values": 1,
                      "band_mismatch": 1, "unknown_targets": 1}
    for reason in counts:
        assert daemon.metrics.registry.get_sample_value(
            "eowatch_dead_letters_total", {"reason": reason}) == 1
    # the good rows of the partly bad chunks were used, and the feed's season went through
    state = checkpointed_parcel(daemon.store, same_shard[0], daemon.model.metadata.architecture,
                               daemon.model.sha256)
    assert state is not None and state["observations"] > 1
    assert daemon.store.count(DecisionRow) == 150


def test_state_survives_a_restart(tmp_path, unique):
    first = make_daemon(tmp_path, "embedded", unique)
    first.adapters[0].days_per_second = 0.0  # publish nothing beyond the first poll's events
    for _ in range(3):
        first.adapters[0].sim_day += 30
        first.adapters[0].poll()
        first.consumer.run_once()
    first.consumer.checkpoint()
    before = checkpointed_parcel(first.store, "sim-000001", first.model.metadata.architecture,
                               first.model.sha256)
    row_before = first.processor.table.lookup(np.array(["sim-000001"], dtype=object))[0]
    tensor_before = first.processor.table.state[row_before]
    first.shutdown()
    second = make_daemon(tmp_path, "embedded", unique)
    second.consumer.run_once()  # the first poll assigns the partition and loads its shards
    table = second.processor.table
    row = table.lookup(np.array(["sim-000001"], dtype=object))[0]
    assert torch.equal(table.state[row], tensor_before)
    assert checkpointed_parcel(second.store, "sim-000001",
                               second.model.metadata.architecture,
                               second.model.sha256) == before
    assert second.adapters[0].cursor == first.adapters[0].cursor
    second.shutdown()


def test_a_failed_checkpoint_write_is_retried_whole(tmp_path, unique, monkeypatch):
    from eowatch.daemon.checkpoints import CheckpointError

    d = make_daemon(tmp_path, "embedded", unique, checkpoint_seconds=3600)
    try:
        d.adapters[0].days_per_second = 0.0
        d.adapters[0].sim_day += 40
        d.adapters[0].poll()
        while d.consumer.run_once(timeout_s=0.2):
            pass
        dirty = set(d.processor.table.dirty)
        assert dirty and d.consumer.offsets
        real = d.store.save_states
        monkeypatch.setattr(d.store, "save_states",
                            lambda conn, model, rows: (_ for _ in ()).throw(OSError("disk full")))
        with pytest.raises(CheckpointError, match="disk full"):
            d.consumer.checkpoint()
        assert d.processor.table.dirty == dirty and d.consumer.offsets   # handed back
        assert checkpointed_parcel(d.store, "sim-000001", d.model.metadata.architecture,
                               d.model.sha256) is None
        monkeypatch.setattr(d.store, "save_states", real)
        d.consumer.checkpoint()
        assert not d.processor.table.dirty
        assert checkpointed_parcel(d.store, "sim-000001",
                                   d.model.metadata.architecture,
                                   d.model.sha256)["observations"] > 0
        assert d.store.get_offsets(d.consumer.group)
    finally:
        d.shutdown()
