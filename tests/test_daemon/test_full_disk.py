"""Embedded mode on a real, small filesystem that fills up."""

from __future__ import annotations

import errno
import subprocess
from pathlib import Path

import pytest

from ..conftest import unavailable
from .pipeline import drain, make_daemon


@pytest.fixture
def small_disk(tmp_path) -> Path:
    """A 16 MiB tmpfs (needs root, as in CI), unmounted after the test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        unavailable("a size-limited tmpfs (mount)", done.stderr.strip())
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    """Write zeros until the filesystem refuses more."""
    filler = disk / "filler"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_stalls_outputs_without_losing_them(small_disk, unique):
    d = make_daemon(small_disk, "embedded", unique)
    try:
        assert d.consumer.run_once(timeout_s=0.2) == []  # running (shards claimed), nothing read
        feed = d.adapters[0]
        feed.days_per_second = 0.0
        feed.sim_day += 150  # most of the season: most parcels decide
        feed.poll()
        with d.store.engine.connect() as conn:  # no write-ahead log left to reuse: every
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")  # write needs new space
        filler = fill(small_disk)
        while d.consumer.run_once(timeout_s=0.2):  # decisions are made, the bus refuses them
            pass
        assert d.consumer.output.drain(timeout_s=2) is False  # waits, does not hang
        assert d.metrics.registry.get_sample_value("eowatch_output_errors_total") > 0
        assert d.consumer.output.thread.is_alive()
        filler.unlink()  # space again: the held outputs go out, then the rest of the season
        feed.days_per_second = 1e6
        drain(d)
        decisions = d.store.list_decisions(limit=1000).items
        assert len(decisions) == len({x["parcel_id"] for x in decisions}) == 150
    finally:
        d.shutdown()
