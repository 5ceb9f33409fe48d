"""The simulator itself: spec conformance and its HTTP control endpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator

SPEC = Path(__file__).parents[3] / "shared" / "sendcloud" / "integrations-v3.openapi.yaml"
AUTH = (DEMO_PUBLIC_KEY, DEMO_SECRET_KEY)


def spec_validator(schema_name: str) -> Any:
    jsonschema = pytest.importorskip("jsonschema")
    if not SPEC.exists():
        pytest.skip("the shared API specification is not beside the project")
    spec = yaml.safe_load(SPEC.read_text())
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_integrations_match_the_spec(sim: Simulator) -> None:
    validator = spec_validator("integration-response-model")
    listed = httpx.get(sim.url + "/integrations", auth=AUTH).json()["data"]
    assert {item["id"] for item in listed} == {1, 2, 3, 4, 6}  # 5 is deleted
    for item in listed:
        validator.validate(item)
        validator.validate(
            httpx.get(f"{sim.url}/integrations/{item['id']}", auth=AUTH).json()["data"]
        )


def test_logs_and_errors_match_the_spec(sim: Simulator) -> None:
    log_validator = spec_validator("integration-log")
    error_validator = spec_validator("errors")
    logs = httpx.get(sim.url + "/integrations/2/logs", auth=AUTH).json()["data"]
    assert logs
    httpx.post(sim.origin + "/_simulator/logs", json={"integration_id": 1, "response_code": 401})
    httpx.post(sim.origin + "/_simulator/logs", json={"integration_ids": [3, 4]})
    streamed = httpx.get(sim.url + "/integrations/logs", auth=AUTH).json()["data"]
    assert {entry["integration_id"] for entry in streamed} >= {1, 2, 3, 4}
    for entry in logs + streamed:
        log_validator.validate(entry)
    for response in (
        httpx.get(sim.url + "/integrations/logs?page_size=0", auth=AUTH),
        httpx.get(sim.url + "/integrations/logs?cursor=soon", auth=AUTH),
        httpx.get(sim.url + "/integrations/logs", auth=("x", "y")),
        httpx.get(sim.url + "/integrations/5", auth=AUTH),
        httpx.get(sim.url + "/integrations/1", auth=("x", "y")),
        httpx.get(sim.url + "/integrations?page_size=500", auth=AUTH),
    ):
        assert response.status_code in (400, 401, 404)
        error_validator.validate(response.json())


def test_control_endpoints(sim: Simulator) -> None:
    control = sim.origin + "/_simulator"
    assert httpx.patch(control + "/integrations/1", json={"scenario": "failing"}).status_code == 200
    record = httpx.get(sim.url + "/integrations/1", auth=AUTH).json()["data"]
    assert record["started_failing_at"] is not None
    httpx.patch(control + "/integrations/1", json={"scenario": "healthy"})
    assert (
        httpx.get(sim.url + "/integrations/1", auth=AUTH).json()["data"]["started_failing_at"]
        is None
    )
    httpx.patch(control + "/integrations/77", json={"shop_name": "Added", "scenario": "stale"})
    assert httpx.get(sim.url + "/integrations/77", auth=AUTH).json()["data"]["shop_name"] == "Added"
    assert httpx.delete(control + "/integrations/77").status_code == 200
    assert httpx.get(sim.url + "/integrations/77", auth=AUTH).status_code == 404
    httpx.post(control + "/faults", json={"status": 503, "count": 1})
    assert httpx.get(sim.url + "/integrations/1", auth=AUTH).status_code == 503
    assert httpx.get(sim.url + "/integrations/1", auth=AUTH).status_code == 200
    assert "/integrations/1" in httpx.get(control + "/requests").json()["requests"]
    bad = httpx.patch(control + "/integrations/1", json={"scenario": "on-fire"})
    assert bad.status_code == 400


def test_cursor_pagination_walks_every_item_once(sim: Simulator) -> None:
    url: str | None = sim.url + "/integrations?page_size=2"
    seen: list[int] = []
    while url:
        response = httpx.get(url, auth=AUTH)
        seen += [item["id"] for item in response.json()["data"]]
        url = response.links.get("next", {}).get("url")
    assert seen == [1, 2, 3, 4, 6]
    garbage = httpx.get(sim.url + "/integrations?cursor=%%%", auth=AUTH)
    assert garbage.status_code == 400


def test_the_status_mapping_as_the_spec_has_it(sim: Simulator) -> None:
    from monitor.simulator.server import GOOD_MAPPING

    sim.update(1, type="prestashop_v2")
    validator = spec_validator("get-custom-status-mapping")
    good = httpx.get(sim.url + "/shop-order-statuses/mapping?integration_id=1", auth=AUTH)
    assert good.status_code == 200
    validator.validate(good.json())
    assert good.json()["data"] == {"integration_id": 1, "mapping": list(GOOD_MAPPING)}
    broken = [{"status_category": "CANCEL", "external_id": "1", "is_valid": False}]
    httpx.patch(sim.origin + "/_simulator/integrations/1", json={"status_mapping": broken})
    answer = httpx.get(sim.url + "/shop-order-statuses/mapping?integration_id=1", auth=AUTH)
    assert answer.json()["data"]["mapping"] == broken
    error_validator = spec_validator("errors")
    for url, status in (
        ("/shop-order-statuses/mapping?integration_id=2", 400),  # not PrestaShop v2
        ("/shop-order-statuses/mapping", 400),  # the spec's own example error
        ("/shop-order-statuses/mapping?integration_id=999", 404),
    ):
        response = httpx.get(sim.url + url, auth=AUTH)
        assert response.status_code == status
        error_validator.validate(response.json())


def test_every_shop_has_its_own_url_and_updated_at_can_move(sim: Simulator) -> None:
    listed = httpx.get(sim.url + "/integrations", auth=AUTH).json()["data"]
    urls = [item["shop_url"] for item in listed]
    assert len(set(urls)) == len(urls)
    assert {item["updated_at"] for item in listed} == {item["created_at"] for item in listed}
    httpx.patch(
        sim.origin + "/_simulator/integrations/1", json={"updated_at": "2026-11-27T12:00:00Z"}
    )
    record = httpx.get(sim.url + "/integrations/1", auth=AUTH).json()["data"]
    assert record["updated_at"] == "2026-11-27T12:00:00Z"
