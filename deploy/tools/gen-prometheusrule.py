"""Writes deploy/k8s/base/prometheusrule.yaml from deploy/prometheus/pfilter-alerts.yml.

The Prometheus Operator loads rules from PrometheusRule objects, not files;
kustomize cannot embed a file into a custom resource, so the object is
generated, and tests/unit/test_deploy.py fails when the two differ:

    .venv/bin/python deploy/tools/gen-prometheusrule.py
"""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "deploy" / "prometheus" / "pfilter-alerts.yml"
TARGET = ROOT / "deploy" / "k8s" / "base" / "prometheusrule.yaml"


def render() -> str:
    groups = yaml.safe_load(SOURCE.read_text())["groups"]
    obj = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "pfilter", "labels": {"app.kubernetes.io/component": "worker"}},
           "spec": {"groups": groups}}
    head = ("# GENERATED from deploy/prometheus/pfilter-alerts.yml by deploy/tools/gen-prometheusrule.py;\n"
            "# edit the source and re-run it (tests/unit/test_deploy.py checks they agree).\n")
    return head + yaml.safe_dump(obj, sort_keys=False, width=120)


if __name__ == "__main__":
    TARGET.write_text(render())
