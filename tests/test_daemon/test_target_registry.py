"""Targets registered a moment before their first observations are found at once; ids that
are truly unknown do not reload the registry on every chunk."""

from __future__ import annotations

import numpy as np

from eowatch.daemon.registry import TargetRegistry


def test_new_targets_are_found_at_once_and_unknown_ones_cost_little(monkeypatch):
    rows = {"ids": ["a"], "version": 1, "loads": 0}

    def columns():
        rows["loads"] += 1
        return list(rows["ids"]), [0] * len(rows["ids"]), [None] * len(rows["ids"])

    clock = [100.0]
    monkeypatch.setattr("eowatch.daemon.registry.time.monotonic", lambda: clock[0])
    registry = TargetRegistry(columns, refresh_seconds=5.0, version=lambda: rows["version"])
    rows["ids"].append("b")
    rows["version"] = 2                    # imported just now
    clock[0] += 0.6
    assert registry.lookup(np.array(["b"], dtype=object)).tolist() == [1]
    assert rows["loads"] == 2
    for _ in range(20):                    # a stream of ids nobody registered
        clock[0] += 0.6
        assert registry.lookup(np.array(["ghost"], dtype=object)).tolist() == [-1]
    assert rows["loads"] == 2 + 2          # the version is unchanged: every 5 s only
