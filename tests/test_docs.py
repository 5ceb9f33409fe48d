"""The alert documentation stays true: examples validate, every option and alert is described."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from monitor.alerting.rules import ALERTS, AlertKey, fingerprint
from monitor.settings import AlertingSettings, AlertmanagerSettings, WebhookSettings

DOCS = Path(__file__).parents[1] / "docs"
TEXT = (DOCS / "alerts.md").read_text()
SCHEMA = json.loads((DOCS / "alert-event.schema.json").read_text())


def examples() -> list[dict[str, object]]:
    return [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", TEXT, re.S)]


def test_every_example_validates_against_the_schema() -> None:
    validator = jsonschema.Draft202012Validator(
        SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )
    found = examples()
    assert {e["alert"] for e in found} == set(ALERTS)
    assert {e["kind"] for e in found} == {"fired", "cause", "escalated", "repeat", "resolved"}
    for example in found:
        validator.validate(example)


def test_example_fingerprints_are_real() -> None:
    for example in examples():
        integration_id = example["integration_id"]
        assert integration_id is None or isinstance(integration_id, int)
        key = AlertKey(str(example["alert"]), str(example["account"]), integration_id)
        assert example["fingerprint"] == fingerprint(key)


def test_every_option_is_documented() -> None:
    for model, prefix in (
        (AlertingSettings, ""),
        (WebhookSettings, "webhooks[]."),
        (AlertmanagerSettings, "alertmanager."),
    ):
        for name in model.model_fields:
            if name in ("webhooks", "alertmanager"):
                continue
            assert f"`{prefix}{name}" in TEXT, f"{prefix}{name} is not documented"
