"""What a start refuses, and what a change of model does to state."""

from __future__ import annotations

import socket
from dataclasses import replace

import numpy as np
import pytest

from eowatch.errors import EowatchError
from eowatch.models.artifact import load_artifact, save_artifact
from eowatch.settings import DEFAULT_MODEL

from .pipeline import make_daemon


def test_a_changed_shard_count_is_refused(tmp_path, unique):
    make_daemon(tmp_path, "embedded", unique, feeds=()).shutdown()
    with pytest.raises(EowatchError, match="shards is 16 but this store was set up with 8"):
        make_daemon(tmp_path, "embedded", unique, feeds=(), shards=16)
    make_daemon(tmp_path, "embedded", unique, feeds=()).shutdown()  # the same is fine


@pytest.mark.parametrize("device", ["gpu", "tpu", "cuda:7", "cpu:x"])
def test_an_unknown_device_is_refused(tmp_path, unique, device):
    with pytest.raises(EowatchError, match="EOWATCH_DEVICE"):
        make_daemon(tmp_path, "embedded", unique, feeds=(), device=device)


def test_a_taken_api_port_fails_the_start(tmp_path, unique):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(EowatchError, match="EOWATCH_API_PORT"):
            make_daemon(tmp_path, "embedded", unique, feeds=(),
                        api_port=taken.getsockname()[1])


def test_topics_with_another_partition_count_are_refused(tmp_path, unique, kafka_bootstrap):
    make_daemon(tmp_path / "a", "kafka", unique, kafka_bootstrap, feeds=()).shutdown()
    with pytest.raises(EowatchError, match="EOWATCH_PARTITIONS=8"):  # a fresh store, old topics
        make_daemon(tmp_path / "b", "kafka", unique, kafka_bootstrap, feeds=(), partitions=8)


def test_another_model_never_resumes_this_models_state(tmp_path, unique):
    """A model change mid-season starts the new model from empty state; the old model's state
    stays in the store, and switching back resumes it."""
    loaded = load_artifact(DEFAULT_MODEL)
    retrained = save_artifact(tmp_path / "retrained.pt", loaded.model,
                              replace(loaded.metadata, version="retrained"))
    first = make_daemon(tmp_path, "embedded", unique)
    first.adapters[0].days_per_second = 0.0
    first.adapters[0].sim_day += 60
    first.adapters[0].poll()
    while first.consumer.run_once(timeout_s=0.2):
        pass
    first.consumer.checkpoint()
    ids = np.array([f"sim-{i:06d}" for i in range(150)], dtype=object)

    def observed(daemon):
        daemon.consumer.run_once(timeout_s=0.2)  # assignment loads the shards
        table = daemon.processor.table
        return table.observations[table.lookup(ids)].copy()

    before = first.processor.table.observations[first.processor.table.lookup(ids)].copy()
    assert before.sum() > 0
    first.shutdown()
    second = make_daemon(tmp_path, "embedded", unique, model_path=retrained)
    assert second.model.sha256 != first.model.sha256
    assert observed(second).sum() == 0  # not the other model's state, though the same shape
    second.shutdown()
    third = make_daemon(tmp_path, "embedded", unique)
    assert (observed(third) == before).all()
    third.shutdown()


def test_a_feeds_only_member_publishes_and_joins_no_consumer_group(tmp_path, unique):
    """EOWATCH_CONSUME=false (the compose file's and the cluster's feeds member)."""
    daemon = make_daemon(tmp_path, "embedded", unique, consume=False)
    try:
        assert daemon.consumer is None
        assert daemon.adapters[0].poll() > 0
        reader = daemon.bus.consumer("reader", [daemon.topics["observations"]], 100)
        assert reader.poll(100, 1.0)
        reader.close()
    finally:
        daemon.shutdown()
