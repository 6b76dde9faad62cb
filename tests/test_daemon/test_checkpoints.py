"""Checkpoints against a store that really fails mid-write."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from eowatch.daemon.checkpoints import CheckpointError

from .pipeline import make_daemon


def consume(daemon, days: float) -> None:
    """Publish ``days`` more of the simulated season and apply all of it."""
    feed = daemon.adapters[0]
    feed.sim_day += days
    feed.poll()
    while daemon.consumer.run_once(timeout_s=0.2):
        pass


def terminate_blocked_writer(admin: sa.Connection, timeout_s: float = 30) -> None:
    """Kill the backend that waits on the test's lock: the connection dies mid-transaction."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = admin.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()")).scalars().all()
        if pids:
            admin.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pids[0]})
            return
        time.sleep(0.05)
    raise TimeoutError("the checkpoint writer never waited on the lock")


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_failed_background_write_loses_nothing_of_the_next_checkpoint(tmp_path, unique,
                                                                         store_url):
    d = make_daemon(tmp_path, "embedded", unique, store_url=store_url, checkpoint_seconds=3600)
    engine = sa.create_engine(store_url, isolation_level="AUTOCOMMIT")
    locking = sa.create_engine(store_url)
    try:
        d.adapters[0].days_per_second = 0.0  # the test moves the season by hand
        consume(d, 40)
        with engine.connect() as admin, locking.connect() as locker:
            with locker.begin():  # the writer blocks on the state table...
                locker.execute(sa.text("LOCK TABLE target_state IN ACCESS EXCLUSIVE MODE"))
                d.consumer.checkpoint(durable=False)
                terminate_blocked_writer(admin)  # ...and its connection is terminated
        consume(d, 60)  # what the next snapshot holds
        assert d.processor.table.dirty
        with pytest.raises(CheckpointError, match="terminat"):
            d.consumer.checkpoint(durable=False)
        assert d.metrics.registry.get_sample_value("eowatch_checkpoint_errors_total") == 1
        d.consumer.checkpoint()
        table = d.processor.table
        in_memory = sorted(table.checkpoint_rows(table.live))
        assert sorted(d.store.load_states(d.model.sha256, range(d.settings.shards))) == in_memory
        assert d.store.get_offsets(d.consumer.group) == dict(d.consumer.consumer.position)
    finally:
        engine.dispose()
        locking.dispose()
        d.shutdown()
