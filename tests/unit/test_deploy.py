"""deploy/: the Kubernetes manifests, the dashboard, the alert rules, compose.

The manifests are rendered by the real `kubectl kustomize`, the rules checked
and unit-tested by the real `promtool`, and every metric a panel or a rule
names is looked up in the live prometheus registry of `streams/metrics.py`,
so a renamed metric or a typo in a selector fails here, not in a cluster.

Tools: kubectl on PATH; promtool on PATH or at .venv/bin/promtool (put there by
`make install`: deploy/tools/install-promtool.sh). When one cannot be had, the
tests that need it skip saying why, except under CI (env CI set), where they fail.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams import metrics
from streams.config import PROJECT_ROOT, Settings, secret_env_names
from streams.engine.policy import DEFAULT_POLICY_PATH, load_policy

DEPLOY = PROJECT_ROOT / "deploy"
K8S = DEPLOY / "k8s"
VARIANTS = ["base", "overlays/production"]
BENCH_RESULT = PROJECT_ROOT / "bench" / "results" / "e2e-20261201-094300.md"
#: The run the memory figures come from (consent with signals and the notice schedule).
MEMORY_RESULT = PROJECT_ROOT / "bench" / "results" / "e2e-20261204-181943.md"
#: Objects the manifests reference but must not contain: created out of band so
#: that no secret value is ever in the repository.
EXTERNAL_SECRETS = {"pfilter-secrets", "pfilter-kafka-ca"}


# ------------------------------------------------------------------ tools
def _tool(name: str, install: list[str] | None = None) -> str:
    path = shutil.which(name) or shutil.which(name, path=str(PROJECT_ROOT / ".venv" / "bin"))
    if path is None and install:
        subprocess.run(install, cwd=PROJECT_ROOT, check=False, timeout=300)
        path = shutil.which(name, path=str(PROJECT_ROOT / ".venv" / "bin"))
    if path is None:
        msg = f"{name} is not installed (see the docstring of tests/unit/test_deploy.py)"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI needs it", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="module")
def kubectl() -> str:
    return _tool("kubectl")


@pytest.fixture(scope="module")
def promtool() -> str:
    return _tool("promtool", install=[str(DEPLOY / "tools" / "install-promtool.sh")])


_RENDERED: dict[str, list[dict[str, Any]]] = {}


@pytest.fixture(params=VARIANTS)
def objs(request: pytest.FixtureRequest, kubectl: str) -> list[dict[str, Any]]:
    variant = request.param
    if variant not in _RENDERED:
        out = subprocess.run([kubectl, "kustomize", str(K8S / variant)], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, f"kubectl kustomize {variant}: {out.stderr}"
        _RENDERED[variant] = [d for d in yaml.safe_load_all(out.stdout) if d]
    return _RENDERED[variant]


def one(objs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def by_name(objs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any] | None:
    return next((o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name), None)


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def pod_spec(objs: list[dict[str, Any]]) -> dict[str, Any]:
    return one(objs, "StatefulSet")["spec"]["template"]["spec"]


def worker(objs: list[dict[str, Any]]) -> dict[str, Any]:
    containers = pod_spec(objs)["containers"]
    assert len(containers) == 1
    return containers[0]


def effective_env(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every env var the worker gets: {name: its env entry, or {"value": ...} from a ConfigMap}."""
    c = worker(objs)
    env: dict[str, dict[str, Any]] = {}
    for src in c.get("envFrom", []):
        assert set(src) == {"configMapRef"}, f"envFrom only from ConfigMaps, got {src}"
        cm = by_name(objs, "ConfigMap", src["configMapRef"]["name"])
        assert cm is not None, f"envFrom names a ConfigMap the render lacks: {src}"
        env.update({k: {"name": k, "value": v} for k, v in cm["data"].items()})
    env.update({e["name"]: e for e in c.get("env", [])})
    return env


def known_env_names() -> set[str]:
    names = {f"PFILTER_{n.upper()}" for n in Settings.model_fields}
    return names | {"KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL"}


# ------------------------------------------------------------ kubernetes
def test_every_object_has_its_required_fields(objs: list[dict[str, Any]]) -> None:
    kinds = {o["kind"] for o in objs}
    assert {"StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy", "ServiceMonitor",
            "ScaledObject", "PrometheusRule", "ConfigMap"} <= kinds
    seen = set()
    for o in objs:
        assert re.fullmatch(r"[a-z0-9.]+(/v\d+(alpha\d+|beta\d+)?)?|v1", o.get("apiVersion", "")), o
        assert o.get("kind"), o
        name = o.get("metadata", {}).get("name")
        assert name and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name), o
        assert (o["kind"], name) not in seen, f"duplicate {o['kind']}/{name}"
        seen.add((o["kind"], name))
        assert o["metadata"]["labels"]["app.kubernetes.io/name"] == "pfilter"
        if o["kind"] != "ConfigMap":
            assert "spec" in o, f"{o['kind']}/{name} has no spec"
    api = {o["kind"]: o["apiVersion"] for o in objs}
    assert api["StatefulSet"] == "apps/v1"
    assert api["PodDisruptionBudget"] == "policy/v1"
    assert api["NetworkPolicy"] == "networking.k8s.io/v1"
    assert api["ServiceMonitor"] == "monitoring.coreos.com/v1"
    assert api["ScaledObject"] == "keda.sh/v1alpha1"
    assert api["PrometheusRule"] == "monitoring.coreos.com/v1"


def test_the_prometheus_rule_object_is_the_alert_rules_file(objs: list[dict[str, Any]]) -> None:
    rule = one(objs, "PrometheusRule")
    source = yaml.safe_load((DEPLOY / "prometheus" / "pfilter-alerts.yml").read_text())
    assert rule["spec"]["groups"] == source["groups"], \
        "deploy/k8s/base/prometheusrule.yaml is stale: .venv/bin/python deploy/tools/gen-prometheusrule.py"


def test_statefulset_service_selector_and_labels_agree(objs: list[dict[str, Any]]) -> None:
    sts = one(objs, "StatefulSet")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert selects(sts["spec"]["selector"]["matchLabels"], labels)
    svc = by_name(objs, "Service", sts["spec"]["serviceName"])
    assert svc is not None, "serviceName names no Service"
    assert svc["spec"]["clusterIP"] == "None", "a StatefulSet's governing Service is headless"
    assert selects(svc["spec"]["selector"], labels)
    assert [p["name"] for p in svc["spec"]["ports"]] == ["web"]
    assert svc["spec"]["ports"][0]["targetPort"] == "web"


def test_worker_is_the_fast_runtime_exactly_once_with_a_stable_instance_id(objs: list[dict[str, Any]]) -> None:
    env = effective_env(objs)
    assert env["PFILTER_RUNTIME"]["value"] == "fast"
    assert env["PFILTER_PROCESSING_GUARANTEE"]["value"] == "exactly_once"
    # the fast runtime's transactional.id is <group_id>.<instance_id> (streams/config.py)
    assert "instance_id" in Settings.model_fields
    assert env["PFILTER_INSTANCE_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    unknown = set(env) - known_env_names()
    assert not unknown, f"env vars no setting reads (typos?): {sorted(unknown)}"
    # the literal settings together are valid (kustomize cannot check a value)
    literals = {n.removeprefix("PFILTER_").lower(): e["value"] for n, e in env.items()
                if "value" in e and n.startswith("PFILTER_") and not n.endswith("_FILE")}
    Settings.model_validate(literals)


def test_probes_hit_readyz_and_healthz_on_the_web_port(objs: list[dict[str, Any]]) -> None:
    c = worker(objs)
    port = next(p for p in c["ports"] if p["name"] == "web")
    assert str(port["containerPort"]) == effective_env(objs)["PFILTER_WEB_PORT"]["value"]
    assert effective_env(objs)["PFILTER_WEB_BIND"]["value"] == "0.0.0.0"
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "web"}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "web"}


def test_state_dir_is_on_the_pvc_template(objs: list[dict[str, Any]]) -> None:
    sts = one(objs, "StatefulSet")
    templates = {t["metadata"]["name"]: t for t in sts["spec"]["volumeClaimTemplates"]}
    state_dir = effective_env(objs)["PFILTER_STATE_DIR"]["value"]
    mount = next(m for m in worker(objs)["volumeMounts"] if m["mountPath"] == state_dir)
    assert mount["name"] in templates, "PFILTER_STATE_DIR is not on a volumeClaimTemplate"
    assert not mount.get("readOnly")
    spec = templates[mount["name"]]["spec"]
    assert spec["accessModes"] == ["ReadWriteOnce"]
    assert re.fullmatch(r"\d+[MG]i", spec["resources"]["requests"]["storage"])
    assert mount["name"] not in {v["name"] for v in pod_spec(objs)["volumes"]}


def test_pdb_network_policy_service_monitor_and_scaler_select_the_workers(objs: list[dict[str, Any]]) -> None:
    sts = one(objs, "StatefulSet")
    pod_labels = sts["spec"]["template"]["metadata"]["labels"]
    pdb = one(objs, "PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"]["matchLabels"], pod_labels)
    assert pdb["spec"]["maxUnavailable"] == 1

    np = one(objs, "NetworkPolicy")
    assert selects(np["spec"]["podSelector"]["matchLabels"], pod_labels)
    assert sorted(np["spec"]["policyTypes"]) == ["Egress", "Ingress"]
    assert [p["port"] for rule in np["spec"]["ingress"] for p in rule["ports"]] == ["web"]
    egress_ports = {p["port"] for rule in np["spec"]["egress"] for p in rule.get("ports", [])}
    assert 53 in egress_ports
    broker_port = int(effective_env(objs)["KAFKA_BOOTSTRAP_SERVERS"]["value"].split(",")[0].rsplit(":", 1)[1])
    assert broker_port in egress_ports, "the NetworkPolicy blocks the brokers' port"

    sm = one(objs, "ServiceMonitor")
    svc = by_name(objs, "Service", sts["spec"]["serviceName"])
    assert selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"]["labels"])
    assert [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("web", "/metrics")]

    so = one(objs, "ScaledObject")
    ref = so["spec"]["scaleTargetRef"]
    assert (ref["apiVersion"], ref["kind"], ref["name"]) == ("apps/v1", "StatefulSet", sts["metadata"]["name"])
    (trigger,) = so["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    assert re.search(r"\bpfilter_consumer_lag_records\b", trigger["metadata"]["query"])
    assert int(trigger["metadata"]["threshold"]) > 0
    partitions = int(effective_env(objs).get("PFILTER_PARTITIONS", {}).get(
        "value", Settings.model_fields["partitions"].default))
    assert so["spec"]["minReplicaCount"] <= sts["spec"]["replicas"] <= so["spec"]["maxReplicaCount"]
    assert so["spec"]["maxReplicaCount"] <= partitions, "workers beyond the partition count idle"
    ns = so.get("metadata", {}).get("namespace")
    if ns:
        assert f'namespace="{ns}"' in trigger["metadata"]["query"]


def test_policy_comes_from_a_configmap_and_passes_its_check(objs: list[dict[str, Any]]) -> None:
    path = Path(effective_env(objs)["PFILTER_POLICY_FILE"]["value"])
    mount = next(m for m in worker(objs)["volumeMounts"] if m["mountPath"] == str(path.parent))
    volume = next(v for v in pod_spec(objs)["volumes"] if v["name"] == mount["name"])
    cm = by_name(objs, "ConfigMap", volume["configMap"]["name"])
    assert cm is not None
    text = cm["data"][path.name]
    assert text == (K8S / "base" / "policy.toml").read_text()
    # the base ships the shipped default: an edit to one without the other is drift
    assert text == DEFAULT_POLICY_PATH.read_text()
    load_policy(K8S / "base" / "policy.toml", secret=b"k8s-test-stand-in-secret-32-bytes!")


def test_secrets_only_by_reference_never_inline(objs: list[dict[str, Any]]) -> None:
    for o in objs:
        assert o["kind"] != "Secret", f"a Secret in the manifests: {o['metadata']['name']} (create it out of band)"
    secret_envs = secret_env_names()
    assert {"PFILTER_PSEUDONYM_KEY", "PFILTER_KEK", "PFILTER_KAFKA_SASL_PASSWORD"} <= secret_envs
    env = effective_env(objs)
    for cm in (o for o in objs if o["kind"] == "ConfigMap"):
        leaked = set(cm.get("data", {})) & secret_envs
        assert not leaked, f"secret settings in ConfigMap {cm['metadata']['name']}: {leaked}"
    spec = pod_spec(objs)
    secret_mounts = {}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in worker(objs)["volumeMounts"]:
        vol = volumes.get(m["name"], {})  # absent: the volumeClaimTemplate
        if "secret" in vol:
            assert vol["secret"]["secretName"] in EXTERNAL_SECRETS
            assert m.get("readOnly") is True
            secret_mounts[m["mountPath"]] = {i["path"] for i in vol["secret"]["items"]}
    for name, entry in env.items():
        if name in secret_envs:
            assert "value" not in entry, f"{name} has an inline value"
            assert entry["valueFrom"]["secretKeyRef"]["name"] in EXTERNAL_SECRETS
    # every *_FILE of a secret setting points at a file of a mounted Secret
    files = [n for n in env if n.endswith("_FILE") and n.removesuffix("_FILE") in secret_envs]
    assert {"PFILTER_PSEUDONYM_KEY_FILE", "PFILTER_KEK_FILE", "PFILTER_KAFKA_SASL_PASSWORD_FILE"} <= set(files)
    for name in files:
        p = Path(env[name]["value"])
        assert p.name in secret_mounts.get(str(p.parent), set()), f"{name}={p} is not in a mounted Secret"
    # the username is no secret but lives beside the password; any secretKeyRef names an external Secret
    for entry in env.values():
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            assert ref["name"] in EXTERNAL_SECRETS
    # no secret value anywhere in the render: not the example key, nothing key-shaped
    rendered = json.dumps(objs)
    example = (DEPLOY / "pseudonym_key.example").read_text().strip()
    assert example not in rendered
    assert not re.search(r"-----BEGIN [A-Z ]*PRIVATE KEY-----", rendered)


def test_resources_are_sized_from_the_measured_figures(objs: list[dict[str, Any]]) -> None:
    res = worker(objs)["resources"]
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(res[kind])
    # one decision thread: at least one core requested
    assert float(res["requests"]["cpu"]) >= 1
    bench = BENCH_RESULT.read_text()
    per_subject = re.search(r"= \*\*([\d.]+) bytes per subject\*\*", MEMORY_RESULT.read_text()).group(1)
    header = next(line for line in bench.splitlines() if "events per CPU-s" in line)
    row = next(line for line in bench.splitlines() if line.startswith("| fast-eos |"))
    column = [c.strip() for c in header.split("|")].index("events per CPU-s")
    per_cpu_s = [c.strip() for c in row.split("|")][column]
    assert re.fullmatch(r"[\d,]+", per_cpu_s), per_cpu_s
    comments = (K8S / "base" / "statefulset.yaml").read_text() + (
        K8S / "overlays" / "production" / "statefulset-patch.yaml").read_text()
    for text in ((K8S / "base" / "statefulset.yaml").read_text(),
                 (K8S / "overlays" / "production" / "statefulset-patch.yaml").read_text()):
        assert f"x {per_subject} B" in text, "a sizing comment does not use the measured bytes per subject"
        # and the request it arrives at holds that state (a stale request would not)
        subjects = int(re.search(r"state\s+([\d,]+) x", text).group(1).replace(",", ""))
        request = re.search(r"-> request (\d+)(Mi|Gi)", text)
        req_bytes = int(request.group(1)) * (2**20 if request.group(2) == "Mi" else 2**30)
        assert req_bytes >= subjects * float(per_subject), "the memory request does not hold the measured state"
        memory = re.search(r"requests:\s*\n\s*cpu: \"?[\d.]+\"?\s*\n\s*memory: (\S+)", text)
        assert memory and memory.group(1) == request.group(1) + request.group(2), "the request is not the sized one"
    assert per_cpu_s in comments, "the sizing comment does not cite the measured events per CPU-second"


# ------------------------------------------------------------ compose
def test_compose_has_prometheus_and_grafana_provisioned() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "topics", "worker", "prometheus", "grafana"} <= set(services)
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (DEPLOY / src).exists(), f"{name} mounts missing {src}"
    mounts = {s: {v.split(":")[1]: DEPLOY / v.split(":")[0] for v in services[s].get("volumes", [])
                  if v.startswith(".")} for s in ("prometheus", "grafana")}
    # Prometheus: its config, which loads the alert rules and scrapes the worker's web port
    conf_path = next(a for a in services["prometheus"]["command"] if a.startswith("--config.file="))
    conf_file = Path(conf_path.split("=", 1)[1])
    conf = yaml.safe_load((mounts["prometheus"][str(conf_file.parent)] / conf_file.name).read_text())
    assert conf["rule_files"] == ["pfilter-alerts.yml"]
    (target,) = conf["scrape_configs"][0]["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "worker"
    worker_env = services["worker"]["environment"]
    assert worker_env["PFILTER_WEB_BIND"] == "0.0.0.0"
    assert int(port) == Settings.model_fields["web_port"].default
    # Grafana: datasource and dashboard provider where Grafana reads them
    prov = mounts["grafana"]["/etc/grafana/provisioning"]
    ds = yaml.safe_load((prov / "datasources" / "prometheus.yml").read_text())["datasources"][0]
    assert ds["type"] == "prometheus" and ds["url"] == "http://prometheus:9090"
    provider = yaml.safe_load((prov / "dashboards" / "pfilter.yml").read_text())["providers"][0]
    dash_dir = mounts["grafana"][provider["options"]["path"]]
    assert (dash_dir / "pfilter-dashboard.json").is_file()


# ------------------------------------------------------------ prometheus
def test_alert_rules_pass_promtool(promtool: str) -> None:
    d = DEPLOY / "prometheus"
    for args in (["check", "rules", "pfilter-alerts.yml"], ["test", "rules", "pfilter-alerts.test.yml"],
                 ["check", "config", "prometheus.yml"]):
        out = subprocess.run([promtool, *args], cwd=d, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"promtool {' '.join(args)}:\n{out.stdout}\n{out.stderr}"


def test_every_alert_is_unit_tested() -> None:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "pfilter-alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    tests = yaml.safe_load((DEPLOY / "prometheus" / "pfilter-alerts.test.yml").read_text())
    firing = {t["alertname"] for case in tests["tests"] for t in case["alert_rule_test"] if t["exp_alerts"]}
    assert alerts == firing, f"alerts without a test that fires them: {alerts - firing}"


# ------------------------------------------------------------ metric names
def exposed_metric_names() -> dict[str, str]:
    """Series names the registry exposes -> the metric family, from the live REGISTRY."""
    names: dict[str, str] = {}
    for family in metrics.REGISTRY.collect():
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"],
                    "gauge": [""], "summary": ["_sum", "_count", ""]}[family.type]
        for s in suffixes:
            names[family.name + s] = family.name
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana" / "pfilter-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v["type"] == "query"]
    return exprs


def rule_exprs() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus" / "pfilter-alerts.yml").read_text())
    return [r["expr"] for g in rules["groups"] for r in g["rules"]]


def names_in(expr: str) -> set[str]:
    return set(re.findall(r"\bpfilter_[a-z_]+\b", expr))


@pytest.mark.parametrize("source", ["dashboard", "rules", "k8s"])
def test_every_metric_named_exists_in_streams_metrics(source: str) -> None:
    exposed = exposed_metric_names()
    if source == "dashboard":
        exprs = dashboard_exprs()
    elif source == "rules":
        exprs = rule_exprs()
    else:
        exprs = [(K8S / "base" / "scaledobject.yaml").read_text()]
    used = set().union(*(names_in(e) for e in exprs))
    assert used, "no pfilter_ metric found: the parser is broken"
    unknown = used - set(exposed)
    assert not unknown, f"{source} names metrics streams/metrics.py does not expose: {sorted(unknown)}"


def test_dashboard_and_rules_cover_what_the_issue_asks() -> None:
    exposed = exposed_metric_names()
    dash = json.loads((DEPLOY / "grafana" / "pfilter-dashboard.json").read_text())
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"] and p["gridPos"]["w"] <= 24
    on_panels = {exposed[n] for e in dashboard_exprs() for n in names_in(e)}
    assert {"pfilter_events_in", "pfilter_emitted", "pfilter_dropped", "pfilter_dlq",
            "pfilter_consent_lag_records", "pfilter_partition_stalled_seconds", "pfilter_stage_seconds",
            "pfilter_decision_latency_seconds"} <= on_panels
    in_rules = {exposed[n] for e in rule_exprs() for n in names_in(e)}
    assert {"pfilter_ready", "pfilter_partition_stalled_seconds", "pfilter_dlq",
            "pfilter_consumer_lag_records", "pfilter_barrier_catchup_records"} <= in_rules
