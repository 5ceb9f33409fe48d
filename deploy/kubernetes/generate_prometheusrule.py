"""Writes prometheusrule.yaml from ../prometheus/rules.yml: one source of truth for the rules.

python deploy/kubernetes/generate_prometheusrule.py > deploy/kubernetes/prometheusrule.yaml
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

RULES = Path(__file__).parent.parent / "prometheus" / "rules.yml"
HEADER = (
    "# Generated from deploy/prometheus/rules.yml by generate_prometheusrule.py: do not edit.\n"
)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PromQL) as literal blocks, as they are written in rules.yml."""


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _string)


def prometheus_rule() -> str:
    rules = yaml.safe_load(RULES.read_text())
    document = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sendcloud-integration-monitor",
            "labels": {"app.kubernetes.io/name": "sendcloud-integration-monitor"},
        },
        "spec": {"groups": rules["groups"]},
    }
    return HEADER + yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=1_000_000)


if __name__ == "__main__":
    sys.stdout.write(prometheus_rule())
