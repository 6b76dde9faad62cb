"""The files that make eowatch a service, checked against the real tools that read them:
hadolint for the Dockerfile, kustomize and the Kubernetes schemas for the manifests, promtool
for the Prometheus configuration and rules; the compose file against eowatch's own settings
(no Docker Engine or Compose here: every service, mount, dependency and EOWATCH_* variable is
checked instead)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from eowatch.contract.registry import feed_specs
from eowatch.settings import Settings

from .conftest import IN_CI

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(__import__("sys").executable
                                                                  ).parent))
    if found is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (`make setup` installs it)")
        pytest.skip(f"{name} not installed")
    return found


def known_variables() -> set[str]:
    """Every EOWATCH_* variable eowatch reads: its settings and every feed's."""
    names = {f"EOWATCH_{field.upper()}" for field in Settings.model_fields}
    for spec in feed_specs().values():
        prefix = str(spec.settings.model_config.get("env_prefix", ""))
        names |= {f"{prefix}{field.upper()}" for field in spec.settings.model_fields}
    return names


def test_the_dockerfile_passes_hadolint_and_runs_as_a_non_root_user_with_a_healthcheck():
    subprocess.run([tool("hadolint"), str(ROOT / "Dockerfile")], check=True,
                   capture_output=True, text=True)
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM \$\{PYTHON_IMAGE\} AS build$", text, re.M)
    assert re.search(r"^ARG PYTHON_IMAGE=python:\d+\.\d+\.\d+-slim", text, re.M)  # pinned
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert re.search(r'^VOLUME \["/var/lib/eowatch"\]$', text, re.M)
    assert re.search(r'^ENTRYPOINT \["eowatch"\]$', text, re.M)
    assert "ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu" in text  # CPU by default
    for name in re.findall(r"\b(EOWATCH_[A-Z0-9_]+)=", text):
        assert name in known_variables(), name


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_the_compose_stack_is_wired_by_real_settings():
    stack = compose()
    services = stack["services"]
    assert {"kafka", "postgres", "prometheus", "grafana", "eowatch-feeds", "eowatch-consumer-1",
            "eowatch-consumer-2"} <= set(services)
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    known = known_variables()
    for name, service in services.items():
        for variable in service.get("environment", {}):
            if variable.startswith("EOWATCH_"):
                assert variable in known, f"{name}: {variable} is no eowatch setting"
        for dependency in service.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in stack.get("volumes", {}), f"{name}: undeclared {source}"
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]
                    ).is_file()
    feeds = services["eowatch-feeds"]["environment"]
    assert feeds["EOWATCH_CONSUME"] == "false" and feeds["EOWATCH_FEEDS"]
    for consumer in ("eowatch-consumer-1", "eowatch-consumer-2"):
        assert services[consumer]["environment"]["EOWATCH_FEEDS"] == ""
        assert services[consumer]["environment"].get("EOWATCH_CONSUME", "true") == "true"
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t.split(":")[0] for job in scrape["scrape_configs"]
               for config in job["static_configs"] for t in config["targets"]}
    assert targets == {"eowatch-feeds", "eowatch-consumer-1", "eowatch-consumer-2"}


@pytest.mark.parametrize("overlay", ["example", "gpu"])
def test_kustomize_builds_each_overlay_and_the_result_passes_the_schemas(overlay):
    import kubernetes_validate

    built = subprocess.run([tool("kubectl"), "kustomize", str(DEPLOY / "k8s" / "overlays" /
                                                              overlay)],
                           check=True, capture_output=True, text=True).stdout
    documents = [d for d in yaml.safe_load_all(built) if d]
    kinds = sorted(d["kind"] for d in documents)
    assert kinds == ["ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget", "Secret",
                     "Service", "ServiceMonitor"]
    known = known_variables()
    for document in documents:
        if document["kind"] == "ServiceMonitor":   # a CRD: no schema among Kubernetes' own
            assert document["spec"]["endpoints"][0]["path"] == "/metrics"
            continue
        kubernetes_validate.validate(document, "1.30.0", strict=True)
        if document["kind"] == "ConfigMap":
            assert set(document["data"]) <= known
        if document["kind"] == "Deployment":
            pod = document["spec"]["template"]["spec"]
            container = pod["containers"][0]
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["resources"]["requests"]
            assert pod["securityContext"]["runAsNonRoot"] is True
            assert {e["name"] for e in container.get("env", [])} <= known
    consumers = next(d for d in documents if d["metadata"]["name"] == "eowatch-consumer")
    assert consumers["spec"]["replicas"] == 3
    limits = consumers["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert ("nvidia.com/gpu" in limits) == (overlay == "gpu")


def test_prometheus_configuration_and_rules_pass_promtool():
    promtool = tool("promtool")
    subprocess.run([promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml")],
                   check=True, capture_output=True)
    cases = [DEPLOY / "prometheus" / name for name in ("rules.test.yml",
                                                       "rules.season.test.yml")]
    result = subprocess.run([promtool, "test", "rules", *map(str, cases)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    rules = yaml.safe_load((DEPLOY / "prometheus" / "rules.yml").read_text())
    tests = "".join(case.read_text() for case in cases)
    for rule in rules["groups"][0]["rules"]:
        assert rule["annotations"]["runbook"] and rule["annotations"]["summary"]
        # each rule has a case in which it fires (an exp_alerts block under its name)
        assert re.search(rf"alertname: {rule['alert']}\n\s+exp_alerts:", tests), rule["alert"]
