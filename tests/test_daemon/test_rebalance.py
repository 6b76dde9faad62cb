"""Two daemons in one consumer group on a real broker and a shared PostgreSQL store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..conftest import free_port
from .pipeline import offline_decisions
from .test_service import get, wait_for

PARCELS = 300


def start(tmp_path: Path, name: str, port: int, env: dict[str, str]) -> subprocess.Popen:
    log = open(tmp_path / f"{name}.log", "a")
    return subprocess.Popen([sys.executable, "-m", "eowatch.cli", "run"],
                            env={**os.environ, **env, "EOWATCH_API_PORT": str(port)},
                            stdout=log, stderr=subprocess.STDOUT)


def metrics_text(port: int) -> str:
    import urllib.request
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return response.read().decode()


def metric(port: int, name: str) -> float:
    """The sum of a metric's series; 0 while the API does not answer."""
    try:
        text = metrics_text(port)
    except OSError:
        return 0.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") or line.startswith(name + " "))


def decisions(port: int) -> dict[str, tuple[str, float]]:
    items: list[dict] = []
    while True:
        body = get(port, f"/decisions?limit=1000&offset={len(items)}")
        if not body or not body["items"]:
            break
        items += body["items"]
    return {d["parcel_id"]: (d["class"], round(d["day_of_season"], 3)) for d in items}


def group_settings(tmp_path: Path, unique: str, kafka_bootstrap: str, postgres_url: str
                   ) -> dict[str, str]:
    """Settings of the members of one group on the test broker and an empty PostgreSQL."""
    import sqlalchemy as sa
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return {"EOWATCH_BUS": "kafka", "EOWATCH_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "EOWATCH_STORE_URL": postgres_url, "EOWATCH_TOPIC_PREFIX": unique,
            "EOWATCH_CONSUMER_GROUP": f"{unique}-group", "EOWATCH_PARTITIONS": "4",
            "EOWATCH_SHARDS": "32", "EOWATCH_SIM_PARCELS": str(PARCELS),
            "EOWATCH_SIM_SEASONS": "1", "EOWATCH_DATA_DIR": str(tmp_path),
            "EOWATCH_FEEDS": "simulated"}


def test_two_consumers_split_the_shards_and_survive_a_kill(tmp_path, unique, kafka_bootstrap,
                                                          postgres_url):
    env = group_settings(tmp_path, unique, kafka_bootstrap, postgres_url)
    port_a, port_b = free_port(), free_port()
    # A runs the feed and a consumer; B only a consumer
    a = start(tmp_path, "a", port_a, {**env, "EOWATCH_SIM_DAYS_PER_SECOND": "8"})
    wait_for(lambda: get(port_a, "/healthz"), 60, a)
    b = start(tmp_path, "b", port_b, {**env, "EOWATCH_FEEDS": ""})
    try:
        # both members hold partitions: the group split them
        wait_for(lambda: metric(port_a, "eowatch_partitions_assigned") > 0
                 and metric(port_b, "eowatch_partitions_assigned") > 0
                 and metric(port_a, "eowatch_partitions_assigned")
                 + metric(port_b, "eowatch_partitions_assigned") == 4, 90, b)
        wait_for(lambda: metric(port_b, "eowatch_observations_consumed_total") > 0, 60, b)
        b.kill()  # SIGKILL mid-stream: whatever B had not checkpointed is replayed by A
        b.wait()
        wait_for(lambda: metric(port_a, "eowatch_partitions_assigned") == 4, 60, a)
        wait_for(lambda: len(decisions(port_a)) >= PARCELS, 300, a)
        assert decisions(port_a) == offline_decisions(PARCELS)
        assert metric(port_a, "eowatch_partition_handovers_total") >= 2
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=15)


def test_a_member_paused_past_its_session_cannot_overwrite_its_successor(tmp_path, unique,
                                                                         kafka_bootstrap,
                                                                         postgres_url):
    """SIGSTOP one member until the group hands its partitions over, then SIGCONT it: its
    stale state must not reach the store (the shard epochs fence it), and every decision is
    still the offline one."""
    import signal

    env = {**group_settings(tmp_path, unique, kafka_bootstrap, postgres_url),
           "EOWATCH_CHECKPOINT_SECONDS": "0.5"}
    port_a, port_b = free_port(), free_port()
    a = start(tmp_path, "a", port_a, {**env, "EOWATCH_FEEDS": ""})  # the one paused
    wait_for(lambda: get(port_a, "/healthz"), 60, a)
    b = start(tmp_path, "b", port_b, {**env, "EOWATCH_SIM_DAYS_PER_SECOND": "8"})
    try:
        wait_for(lambda: metric(port_a, "eowatch_partitions_assigned") > 0
                 and metric(port_b, "eowatch_partitions_assigned") > 0, 90, b)
        wait_for(lambda: metric(port_a, "eowatch_observations_consumed_total") > 0, 60, a)
        a.send_signal(signal.SIGSTOP)
        wait_for(lambda: metric(port_b, "eowatch_partitions_assigned") == 4, 90, b)
        a.send_signal(signal.SIGCONT)
        wait_for(lambda: len(decisions(port_b)) >= PARCELS, 300, b)
        assert decisions(port_b) == offline_decisions(PARCELS)
    finally:
        for process in (a, b):
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                process.wait(timeout=60)
