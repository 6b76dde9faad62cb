"""A season whose acquisitions arrive out of order ends in the states of the in-order season, on
both buses; the evidence (API, `eowatch explain`) shows the late observation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from eowatch.cli import main
from eowatch.contract.messages import ObservationChunk
from eowatch.daemon.api import create_app
from eowatch.daemon.evidence import Explainer

from .pipeline import drain, make_daemon, parcel_states

HELD, RELEASED_AFTER = 6, 14  # the 6th acquisition reaches the bus after the 14th


class HoldingBack:
    """The feed's host, but one acquisition's chunks are published only after later ones."""

    def __init__(self, host: Any) -> None:
        self.host, self.seen, self.held = host, 0, []

    def publish(self, feed: str, chunks: Sequence[ObservationChunk], cursor: dict) -> None:
        if chunks and chunks[0].kind == "observations":
            self.seen += 1
            if self.seen == HELD:
                self.held = list(chunks)
                chunks = []
        self.host.publish(feed, chunks, cursor)
        if self.seen == RELEASED_AFTER and self.held:
            self.host.publish(feed, self.held, cursor)
            self.held = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.host, name)


@pytest.mark.parametrize("bus", ["embedded", "kafka"])
def test_out_of_order_acquisitions_end_in_the_in_order_states(bus, tmp_path, unique, request,
                                                              capsys, monkeypatch):
    bootstrap = request.getfixturevalue("kafka_bootstrap") if bus == "kafka" else None
    in_order = make_daemon(tmp_path / "in-order", bus, f"{unique}-a", bootstrap)
    try:
        drain(in_order)
        expected = parcel_states(in_order)
    finally:
        in_order.shutdown()

    daemon = make_daemon(tmp_path / "late", bus, f"{unique}-b", bootstrap)
    try:
        feed = daemon.adapters[0]
        feed.host = HoldingBack(feed.host)
        drain(daemon)
        assert not feed.host.held
        got = parcel_states(daemon)
        for name in expected:
            np.testing.assert_allclose(got[name], expected[name], atol=1e-4, err_msg=name)
        applied = daemon.metrics.registry.get_sample_value(
            "eowatch_late_observations_applied_total", {"feed": "simulated"})
        assert applied and applied > 0
        assert (daemon.metrics.registry.get_sample_value(
            "eowatch_observations_skipped_total", {"reason": "late"}) or 0) == 0

        # the evidence of a parcel the late acquisition observed shows it, in order
        parcel = next(p for p, series in daemon.store.read_log(
            daemon.model.sha256, [f"sim-{i:06d}" for i in range(150)]).items()
            if (series.flags & 2).any())[0]
        explainer = Explainer(daemon.store, daemon.model.metadata, daemon.model.sha256,
                              daemon.model.metadata.stop_threshold, "01-01")
        client = TestClient(create_app(daemon.store, daemon.bus, daemon.metrics,
                                       daemon.model.metadata, daemon.model.sha256,
                                       explainer=explainer))
        evidence = client.get(f"/parcels/{parcel}/evidence").json()
        steps = evidence["steps"]
        assert steps["dates"] == sorted(steps["dates"]) and sum(steps["late"]) == 1
        assert len(steps["dates"]) == int(got["observations"][int(parcel[4:])])
        assert set(steps["probabilities"]) == set(daemon.model.metadata.class_names)
        assert all(abs(sum(p) - 1) < 1e-2 for p in zip(*steps["probabilities"].values(),
                                                         strict=True))
        decision = evidence["decision"]
        assert decision is not None and decision["parcel_id"] == parcel
        png = client.get(f"/parcels/{parcel}/evidence.png")
        assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
        assert client.get("/parcels/nope/evidence").status_code == 404

        for name, value in {"EOWATCH_DATA_DIR": str(tmp_path / "late"), "EOWATCH_SHARDS": "8",
                            "EOWATCH_BUS": bus, "EOWATCH_PARTITIONS": "4"}.items():
            monkeypatch.setenv(name, value)
        capsys.readouterr()
        assert main(["explain", parcel, "--png", str(tmp_path / "e.png")]) == 0
        text = capsys.readouterr().out
        assert " late" in text and "<- decision" in text
        assert len([line for line in text.splitlines() if line[:2] == "20"]) >= len(
            steps["dates"])
        assert (tmp_path / "e.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        daemon.shutdown()
