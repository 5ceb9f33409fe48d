"""What the daemon finds out besides Sendcloud's own flags, as a process against the simulator:
shop probes and their alerts, configuration checks and status mappings, the inventory and the
configuration changes next to failures — across a restart."""

from __future__ import annotations

import json
import ssl
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
import yaml

from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, SimIntegration, Simulator
from monitor.simulator.server import MISCONFIGURED
from monitor.simulator.shops import ShopServer
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, run_once


def config(
    tmp_path: Path, sim: Simulator, port: int, ids: list[int] | str, **sections: Any
) -> Path:
    document: dict[str, Any] = {
        "listen_address": f"127.0.0.1:{port}",
        "log_format": "json",
        "defaults": {"poll_interval_seconds": 5},
        "alerting": {"state_file": str(tmp_path / "state" / "alerts.json")},
        "probes": {"interval_seconds": 10, "allow_private_addresses": True},
        "sendcloud": {
            "api_url": sim.url,
            "public_key": DEMO_PUBLIC_KEY,
            "secret_key": DEMO_SECRET_KEY,
            "integration_ids": ids,
        },
    }
    for name, values in sections.items():
        document.setdefault(name, {}).update(values)
    path = tmp_path / "monitor.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def alerts(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [e for e in daemon.events("alert") if e["alert"] == name]


@pytest.fixture
def tls(tmp_path: Path) -> Any:
    class Tls:
        ca = trustme.CA(organization_name="Shop test CA")
        ca_file = tmp_path / "ca.pem"

        def context(self, ca: trustme.CA | None = None, days: float = 90) -> ssl.SSLContext:
            leaf = (ca or self.ca).issue_cert(
                "localhost", not_after=datetime.now(UTC) + timedelta(days=days)
            )
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf.configure_cert(context)
            return context

    found = Tls()
    found.ca.cert_pem.write_to_path(str(found.ca_file))
    return found


@pytest.mark.timeout(120)
def test_probes_checks_and_status_mappings_in_the_daemon_and_check(
    tmp_path: Path, tls: Any
) -> None:
    expiring = ShopServer("tls", tls.context(days=5)).start()
    untrusted = ShopServer("tls", tls.context(ca=trustme.CA(organization_name="Other CA"))).start()
    plain = ShopServer("plain").start()
    broken = [
        {"status_category": "READY_TO_SEND", "external_id": "11", "is_valid": True},
        {"status_category": "IN_TRANSIT", "external_id": "11", "is_valid": True},
        {"status_category": "DELIVERED", "external_id": None, "is_valid": True},
        {"status_category": "CANCEL", "external_id": "1", "is_valid": False},
    ]
    shop = plain.url
    shops = [
        SimIntegration(1, shop_name="Expiring", shop_url=expiring.url),
        SimIntegration(2, shop_name="Untrusted", shop_url=untrusted.url),
        SimIntegration(3, shop_url=shop + "3", extra=MISCONFIGURED["feedback_off"]),
        SimIntegration(4, shop_url=shop + "4", extra=MISCONFIGURED["webhook_without_url"]),
        SimIntegration(
            5, shop_url=shop + "5", extra=MISCONFIGURED["service_points_without_carriers"]
        ),
        SimIntegration(6, shop_url=shop + "twin"),
        SimIntegration(7, shop_url=shop + "twin/"),
        SimIntegration(8, shop_url=shop + "8", type="prestashop_v2", status_mapping=broken),
        SimIntegration(9, shop_url=shop + "9", type="woocommerce"),  # its mapping: a 400
        SimIntegration(10, shop_url=shop + "10", extra=MISCONFIGURED["feedback_off"]),
    ]
    try:
        with Simulator(shops) as sim:
            port = free_port()
            path = config(
                tmp_path,
                sim,
                port,
                list(range(1, 11)),
                probes={
                    "ca_file": str(tls.ca_file),
                    "status_mapping_types": ["prestashop_v2", "woocommerce"],
                },
                sendcloud={"integrations": {10: {"checks": {"ignore": ["feedback_off"]}}}},
            )
            daemon = DaemonProcess(["run", "--config", str(path)], {}, port)
            try:
                daemon.wait_ready()
                daemon.wait_for(
                    lambda: alerts(daemon, "IntegrationShopUnreachable"), 40, "the second probe"
                )
                daemon.wait_for(
                    lambda: len(alerts(daemon, "IntegrationMisconfigured")) == 6, 20, "checks"
                )
                metrics = daemon.get("/metrics").text
                status = daemon.get("/status.json").json()
                mapping_asks = {
                    i: sim.request_count(f"/shop-order-statuses/mapping?integration_id={i}")
                    for i in (8, 9)
                }
                assert daemon.terminate()[0] == 0
            finally:
                daemon.kill()
            checked = run_once(["check", "--config", str(path), "--output", "json"], {})
    finally:
        for server in (expiring, untrusted, plain):
            server.stop()

    [cert] = alerts(daemon, "IntegrationShopCertificateExpiring")
    assert (cert["integration_id"], cert["severity"]) == (1, "warning")
    assert cert["certificate_issuer"] == "Shop test CA"
    assert "expires in 4d" in cert["summary"]
    [down] = alerts(daemon, "IntegrationShopUnreachable")
    assert (down["integration_id"], down["probe_result"]) == (2, "untrusted")
    assert down["certificate_issuer"] == "Other CA"
    misconfigured = {
        e["integration_id"]: e["failed_checks"] for e in alerts(daemon, "IntegrationMisconfigured")
    }
    assert misconfigured == {
        3: ["feedback_off"],
        4: ["webhook_without_url"],
        5: ["service_points_without_carriers"],
        6: ["duplicate_shop"],
        7: ["duplicate_shop"],
        8: ["status_mapping"],
    }
    # the metrics say the same (10's check is switched off, 9's mapping is not offered)
    from tests.conftest import metric_samples

    samples = metric_samples(metrics)
    flagged = {
        (dict(labels)["integration_id"], dict(labels)["check"])
        for name, labels in samples
        if name == "integration_misconfigured"
    }
    assert flagged == {
        ("3", "feedback_off"),
        ("4", "webhook_without_url"),
        ("5", "service_points_without_carriers"),
        ("6", "duplicate_shop"),
        ("7", "duplicate_shop"),
        ("8", "status_mapping"),
    }
    results = {
        dict(labels)["integration_id"]: dict(labels)["result"]
        for name, labels in samples
        if name == "integration_shop_probe_result"
    }
    assert (results["1"], results["2"], results["3"]) == ("ok", "untrusted", "plaintext_ok")
    # a mapping the API does not offer is asked once; a broken one at every survey
    assert mapping_asks[9] == 1
    assert mapping_asks[8] >= 2
    events = [e["integration_id"] for e in daemon.events("status_mapping_unsupported")]
    assert events == [9]
    rows = {r["integration_id"]: r for r in status["integrations"]}
    assert rows[1]["certificate_expiring"] is True
    assert 4.9 < rows[1]["certificate_days_left"] <= 5
    assert rows[8]["findings"][-1].startswith("the order status mapping is broken: DELIVERED")
    assert rows[10]["failed_checks"] == []
    # check: one poll, one probe of each shop, one read of each mapping: a WARNING
    assert checked.returncode == 1, checked.stdout + checked.stderr
    document = json.loads(checked.stdout)
    assert document["exit_code"] == 1
    rows = {r["integration_id"]: r for r in document["integrations"]}
    assert rows[1]["certificate_expiring"] is True
    assert rows[8]["failed_checks"] == ["status_mapping"]
    assert rows[2]["probe_result"] == "untrusted"


@pytest.mark.timeout(150)
def test_the_inventory_and_configuration_changes_across_a_restart(tmp_path: Path) -> None:
    plain = ShopServer("plain").start()
    now = datetime.now(UTC)
    shops = [
        SimIntegration(
            n,
            shop_name=f"Shop {n}",
            shop_url=f"{plain.url}{n}",
            type="shopify",
            updated_at=now - timedelta(days=3),
        )
        for n in (1, 2, 3)
    ]
    try:
        with Simulator(shops) as sim:
            port = free_port()
            path = config(tmp_path, sim, port, [1, 2], alerting={"failing_for_seconds": 0})
            first = DaemonProcess(["run", "--config", str(path)], {}, port)
            try:
                first.wait_ready()
                first.wait_for(
                    lambda: first.metric("integration_monitor_unmonitored_integrations") == 1,
                    20,
                    "the first inventory walk",
                )
                time.sleep(1)  # the history writes what it has every half second
                assert first.terminate()[0] == 0
            finally:
                first.kill()
            appeared = [
                (e["integration_id"], e["monitored"]) for e in first.events("integration_appeared")
            ]
            assert appeared == [(3, False)]
            assert (
                "integration 3 (shopify, http://localhost:"
                in first.events("integration_appeared")[0]["message"]
            )

            # while it is down: a new integration, and integration 1's configuration changes
            changed = datetime.now(UTC).replace(microsecond=0)
            sim.add(SimIntegration(4, shop_name="Shop 4", shop_url=f"{plain.url}4"))
            sim.update(1, updated_at=changed)

            second = DaemonProcess(["run", "--config", str(path)], {}, port)
            try:
                second.wait_ready()
                second.wait_for(
                    lambda: second.events("integration_appeared"), 20, "the walk after the restart"
                )
                second.wait_for(
                    lambda: second.events("integration_config_changed"), 10, "the change"
                )
                sim.update(1, scenario="failing")
                second.wait_for(
                    lambda: [
                        e for e in second.events("alert") if e["alert"] == "IntegrationFailing"
                    ],
                    20,
                    "the failure",
                )
                sim.remove(3)
                second.wait_for(
                    lambda: second.events("integration_disappeared"), 20, "the next walk"
                )
                history = httpx.get(
                    second.base + "/api/v1/integrations/default/1/history", timeout=5
                ).json()
                page = second.get("/integrations/default/1").text
                assert second.metric("integration_monitor_unmonitored_integrations") == 1
                assert second.terminate()[0] == 0
            finally:
                second.kill()
    finally:
        plain.stop()
    # nothing seen before the restart is announced again; what came while it was down is
    assert [
        (e["integration_id"], e["monitored"]) for e in second.events("integration_appeared")
    ] == [(4, False)]
    assert [e["integration_id"] for e in second.events("integration_disappeared")] == [3]
    # the change made while it was down is one change on the timeline, found by the first poll
    [change] = history["changes"]
    assert change["updated_at"] == changed.isoformat().replace("+00:00", "Z")
    assert datetime.fromisoformat(change["previous_updated_at"]) == (
        now - timedelta(days=3)
    ).replace(microsecond=0)
    assert "Configuration changes" in page
    # and the failure that followed says so
    [failing] = [e for e in second.events("alert") if e["alert"] == "IntegrationFailing"]
    assert failing["config_changed_at"] == change["updated_at"]
    assert "Its configuration changed" in failing["summary"]
    assert "before it started failing" in failing["summary"]


@pytest.mark.timeout(120)
def test_with_all_an_integration_is_announced_when_its_monitoring_starts_and_ends(
    tmp_path: Path,
) -> None:
    plain = ShopServer("plain").start()
    try:
        with Simulator([SimIntegration(1, shop_url=f"{plain.url}1")]) as sim:
            port = free_port()
            path = config(tmp_path, sim, port, "all")
            first = DaemonProcess(["run", "--config", str(path)], {}, port)
            try:
                first.wait_ready()
                sim.add(SimIntegration(2, shop_name="New shop", shop_url=f"{plain.url}2"))
                first.wait_for(lambda: first.events("integration_appeared"), 15, "the new one")
                time.sleep(1)
                assert first.terminate()[0] == 0
            finally:
                first.kill()
            sim.add(SimIntegration(3, shop_url=f"{plain.url}3"))  # while it is down
            second = DaemonProcess(["run", "--config", str(path)], {}, port)
            try:
                second.wait_ready()
                second.wait_for(lambda: second.events("integration_appeared"), 15, "3")
                sim.remove(2)
                second.wait_for(lambda: second.events("integration_disappeared"), 20, "2 gone")
                gone = second.metric("integration_up", integration_id="2")
                assert second.terminate()[0] == 0
            finally:
                second.kill()
    finally:
        plain.stop()
    assert [
        (e["integration_id"], e["monitored"]) for e in first.events("integration_appeared")
    ] == [(2, True)]
    assert first.events("integration_appeared")[0]["message"].endswith(
        "it is monitored from now on"
    )
    assert [e["integration_id"] for e in second.events("integration_appeared")] == [3]
    [disappeared] = second.events("integration_disappeared")
    assert disappeared["integration_id"] == 2
    assert disappeared["message"] == (
        f"integration 2 (api, {plain.url}2) disappeared from the account; its series and alerts end"
    )
    assert gone is None  # its series ended


@pytest.mark.timeout(120)
def test_probes_turned_off_and_on_by_a_reload(tmp_path: Path, tls: Any) -> None:
    untrusted = ShopServer("tls", tls.context(ca=trustme.CA())).start()
    try:
        with Simulator([SimIntegration(1, shop_url=untrusted.url)]) as sim:
            port = free_port()
            path = config(tmp_path, sim, port, [1], probes={"ca_file": str(tls.ca_file)})
            daemon = DaemonProcess(["run", "--config", str(path)], {}, port)
            try:
                daemon.wait_ready()
                daemon.wait_for(
                    lambda: alerts(daemon, "IntegrationShopUnreachable"), 40, "two probes"
                )
                document = yaml.safe_load(path.read_text())
                document["probes"]["enabled"] = False
                path.write_text(yaml.safe_dump(document))
                reloaded = httpx.post(daemon.base + "/-/reload", timeout=30)
                assert reloaded.status_code == 200, reloaded.text
                daemon.wait_for(
                    lambda: [
                        e
                        for e in alerts(daemon, "IntegrationShopUnreachable")
                        if e["status"] == "resolved"
                    ],
                    15,
                    "the shop alert to resolve",
                )
                daemon.wait_for(
                    lambda: daemon.metric("integration_shop_probe_success") is None,
                    15,
                    "the probe series to end",
                )
                accepted = untrusted.accepts
                document["probes"]["enabled"] = True
                path.write_text(yaml.safe_dump(document))
                assert httpx.post(daemon.base + "/-/reload", timeout=30).status_code == 200
                daemon.wait_for(  # at once: the last probe, kept in the history
                    lambda: daemon.metric("integration_shop_probe_success") == 0,
                    15,
                    "the probes it knew",
                )
                daemon.wait_for(  # and probing again, an interval after the last probe
                    lambda: untrusted.accepts > accepted, 25, "a probe after the reload"
                )
                assert daemon.terminate()[0] == 0
            finally:
                daemon.kill()
    finally:
        untrusted.stop()
    assert daemon.events("shop_probes_off")


@pytest.mark.timeout(60)
def test_the_demo_shows_an_expiring_certificate_and_a_misconfigured_shop() -> None:
    port = free_port()
    daemon = DaemonProcess(["demo", "--listen", f"127.0.0.1:{port}"], {}, port)
    try:
        daemon.wait_ready()
        daemon.wait_for(
            lambda: (
                alerts(daemon, "IntegrationMisconfigured")
                and alerts(daemon, "IntegrationShopCertificateExpiring")
            ),
            30,
            "the demo's shop alerts",
        )
        result = daemon.metric("integration_shop_probe_result", integration_id="1008", result="ok")
        expiry = daemon.metric(
            "integration_shop_certificate_expiry_timestamp_seconds", integration_id="1008"
        )
        checks = {
            check: daemon.metric("integration_misconfigured", integration_id="1009", check=check)
            for check in ("feedback_off", "webhook_without_url")
        }
        rows = {r["integration_id"]: r for r in daemon.get("/status.json").json()["integrations"]}
        page = daemon.get("/").text
        assert daemon.terminate()[0] == 0
    finally:
        daemon.kill()
    assert result == 1
    assert expiry is not None
    assert 3.9 < (expiry - time.time()) / 86400 <= 4
    assert checks == {"feedback_off": 1, "webhook_without_url": 1}
    [cert] = alerts(daemon, "IntegrationShopCertificateExpiring")
    assert (cert["integration_id"], cert["severity"]) == (1008, "warning")
    [wrong] = alerts(daemon, "IntegrationMisconfigured")
    assert wrong["failed_checks"] == ["feedback_off", "webhook_without_url"]
    assert rows[1008]["certificate_expiring"] is True
    assert rows[1008]["findings"] == ["TLS certificate valid, expires in 4 days"]
    assert "TLS certificate valid, expires in 4 days" in page
    assert "the shop is never told an order shipped" in page
