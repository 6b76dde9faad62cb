"""The dashboards and alert rules against a real Prometheus scraping a real daemon.

A daemon plays a simulated season with radar over a floodplain and a webhook subscriber; the
Debian `prometheus` scrapes its /metrics every second. Then every panel's query must return
data and every alert expression must parse, through Prometheus' HTTP API; every metric a
dashboard names must be exported; `promtool check metrics` must pass. A PNG of each dashboard,
drawn from this run's data, goes to docs/dashboards/.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from .conftest import free_port
from .data.webhooks import Receiver
from .test_deployment_files import tool

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = sorted((ROOT / "grafana" / "dashboards").glob("*.json"))
VARIABLES = {"$instance": ".*", "$feed": ".*", "$area": ".*"}


def dashboards() -> list[dict]:
    return [json.loads(path.read_text()) for path in DASHBOARDS]


def panel_queries(board: dict) -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL with the variables set to All) of every target."""
    found = []
    for panel in board["panels"]:
        for target in panel["targets"]:
            expr = target["expr"]
            for name, value in VARIABLES.items():
                expr = expr.replace(name, value)
            found.append((panel["title"], target.get("legendFormat", ""), expr))
    return found


def test_dashboards_are_well_formed():
    uids = [board["uid"] for board in dashboards()]
    assert len(uids) == len(set(uids)) == 2
    for board in dashboards():
        names = [v["name"] for v in board["templating"]["list"]]
        assert names[0] == "datasource" and {"instance", "feed"} <= set(names)
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids))
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${datasource}"
                assert 'instance="' not in target["expr"], "a hard-coded instance"
                assert 'instance=~"$instance"' in target["expr"], panel["title"]


class Prometheus:
    def __init__(self, workdir: Path, target: str) -> None:
        rules = workdir / "rules.yml"
        rules.write_text((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
        config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                  "rule_files": [str(rules)],
                  "scrape_configs": [{"job_name": "eowatch",
                                      "static_configs": [{"targets": [target]}]}]}
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(workdir / "prometheus.log", "w")
        self.process = subprocess.Popen(
            [tool("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/-/ready", timeout=2):
                    return
            except OSError:
                time.sleep(0.3)
        raise TimeoutError("Prometheus did not start: see prometheus.log")

    def wait_for_scrape(self, timeout_s: float = 60) -> None:
        """Until the target has been scraped once (the season then plays under its eyes)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.api("query", query="up")["data"]["result"]:
                return
            time.sleep(0.3)
        raise TimeoutError("Prometheus scraped nothing")

    def api(self, path: str, **params: str) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}/api/v1/{path}?{query}", timeout=30) as answer:
            return json.loads(answer.read())

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


@pytest.fixture(scope="module")
def scraped(tmp_path_factory):
    """A daemon that played a season with a flood and webhooks, scraped all along."""
    from fastapi.testclient import TestClient

    from eowatch.daemon import scheduler as jobs
    from eowatch.daemon.api import create_app
    from eowatch.daemon.webhooks.targets import parse_networks
    from eowatch.daemon.webhooks.tokens import new_token, token_hash

    from .test_daemon.pipeline import make_daemon

    workdir = tmp_path_factory.mktemp("monitoring")
    receiver = Receiver()
    daemon = make_daemon(workdir, "embedded", "mon", feeds=("simulated", "simulated-sentinel1"),
                         webhook_allow_cidrs=("127.0.0.0/8",), feed_settings={
                             "simulated": {"days_per_second": 15.0, "parcels": 300},
                             "simulated-sentinel1": {"years": 1, "flood_days": (120,),
                                                     "days_per_second": 15.0}})
    api_thread = daemon.serve_api()
    prometheus = Prometheus(workdir, f"127.0.0.1:{daemon.api_port}")
    try:
        token = new_token()
        daemon.store.create_token("monitoring", "write", token_hash(token))
        client = TestClient(create_app(daemon.store, daemon.bus, daemon.metrics,
                                       daemon.model.metadata, daemon.model.sha256, True,
                                       parse_networks(["127.0.0.0/8"])))
        created = client.post("/subscriptions", headers={"Authorization": f"Bearer {token}"},
                              json={"url": receiver.url, "kinds": ["crop.decision",
                                                                   "flood.opened"]})
        assert created.status_code == 201
        prometheus.wait_for_scrape()
        started = time.time()
        stop = threading.Event()
        worker = threading.Thread(target=daemon.webhooks.run, args=(stop, 0.2), daemon=True)
        worker.start()
        jobs.start(daemon.scheduler)   # the feeds polled as a running daemon polls them
        deadline, idle = time.monotonic() + 300, 0
        while time.monotonic() < deadline:
            handled = daemon.consumer.run_once(timeout_s=0.5)
            finished = all(getattr(a, "finished", True) for a in daemon.adapters)
            idle = idle + 1 if not handled and finished else 0
            if idle >= 3 and daemon.consumer.consumer.lag() == 0:
                break
        daemon.consumer.checkpoint()
        while daemon.webhooks.run_once():
            pass
        stop.set()
        worker.join(timeout=30)
        time.sleep(3)   # a few more scrapes of the final state
        metrics_text = urllib.request.urlopen(
            f"http://127.0.0.1:{daemon.api_port}/metrics", timeout=10).read().decode()
        yield prometheus, metrics_text, (started, time.time())
    finally:
        prometheus.close()
        receiver.close()
        daemon.api.should_exit = True
        api_thread.join(timeout=5)
        daemon.shutdown()


def test_every_panel_query_returns_data_and_every_alert_expression_parses(scraped):
    prometheus, _, (start, end) = scraped
    for board in dashboards():
        for title, _legend, expr in panel_queries(board):
            answer = prometheus.api("query_range", query=expr, start=str(start),
                                    end=str(end), step="1")
            assert answer["status"] == "success", (title, expr)
            values = [float(v) for series in answer["data"]["result"]
                      for _, v in series["values"]]
            assert any(math.isfinite(v) for v in values), f"empty panel {title!r}: {expr}"
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "rules.yml").read_text())
    for rule in rules["groups"][0]["rules"]:
        answer = prometheus.api("query", query=rule["expr"])
        assert answer["status"] == "success", rule["alert"]
    loaded = prometheus.api("rules")["data"]["groups"][0]["rules"]
    assert {r["name"] for r in loaded} == {r["alert"] for r in rules["groups"][0]["rules"]}
    assert all(r["health"] == "ok" for r in loaded), [r for r in loaded if r["health"] != "ok"]


def test_every_metric_a_dashboard_or_rule_names_is_exported_and_promtool_accepts_them(scraped):
    _, metrics_text, _ = scraped
    exported = set(re.findall(r"^# TYPE (\w+) ", metrics_text, re.M))
    exported |= {f"{name}_{suffix}" for name in exported
                 for suffix in ("bucket", "sum", "count", "total", "info")}
    rules = (ROOT / "deploy" / "prometheus" / "rules.yml").read_text()
    for text in [p.read_text() for p in DASHBOARDS] + [rules]:
        for name in set(re.findall(r"\beowatch_[a-z0-9_]+", text)):
            assert name in exported, name
    result = subprocess.run([tool("promtool"), "check", "metrics"], input=metrics_text,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_picture_of_each_dashboard_is_drawn_from_the_run(scraped):
    """docs/dashboards/<uid>.png: what an operator sees, drawn with matplotlib from this run's
    data (Grafana itself cannot run here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prometheus, _, (start, end) = scraped
    out = ROOT / "docs" / "dashboards"
    out.mkdir(parents=True, exist_ok=True)
    for board in dashboards():
        panels = board["panels"]
        columns = 2
        rows = math.ceil(len(panels) / columns)
        figure, axes = plt.subplots(rows, columns, figsize=(12, 2.8 * rows), squeeze=False)
        for ax, panel in zip(axes.ravel(), panels, strict=False):
            for _, legend, expr in panel_queries({"panels": [panel]}):
                answer = prometheus.api("query_range", query=expr, start=str(start),
                                        end=str(end), step="1")
                for series in answer["data"]["result"][:8]:
                    label = re.sub(r"\{\{(\w+)\}\}",
                                   lambda m, s=series: s["metric"].get(m.group(1), ""),
                                   legend) or "none"
                    points = [(float(t) - start, float(v)) for t, v in series["values"]]
                    ax.plot(*zip(*points, strict=True), label=label)
            ax.set_title(panel["title"], fontsize=9)
            ax.tick_params(labelsize=7)
            ax.set_xlabel("seconds into the run", fontsize=7)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=6, loc="upper left")
        for ax in axes.ravel()[len(panels):]:
            ax.axis("off")
        figure.suptitle(f"{board['title']} (simulated season, {int(end - start)} s)")
        figure.tight_layout()
        path = out / f"{board['uid']}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        assert path.stat().st_size > 10_000
