"""Configuration checks and the assessment of a snapshot: pure, explicit records."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from monitor.checks import (
    CHECKS,
    DUPLICATE_SHOP,
    FEEDBACK_OFF,
    SERVICE_POINTS_WITHOUT_CARRIERS,
    STATUS_MAPPING,
    WEBHOOK_WITHOUT_URL,
    Assessor,
    mapping_problems,
    normalised_shop,
    record_checks,
)
from monitor.health import derive
from monitor.probes import Outcome, Result, ShopProbe
from monitor.sendcloud import MappingEntry, StatusMapping, parse_integration
from monitor.store import AccountSnapshot, Observation, ReadOutcome

T0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
CLEAN = {
    "feedback_type": "eager",
    "webhook_active": True,
    "webhook_url": "https://hooks.example.com/x?token=1",
    "service_point_enabled": True,
    "service_point_carriers": ["ups"],
}


def record(integration_id: int, **fields: Any) -> Any:
    data = {"id": integration_id, "shop_url": f"https://shop{integration_id}.example.com/"}
    data.update(CLEAN)
    data.update(fields)
    found, bad = parse_integration(data)
    assert bad == []
    return found


def names(found: list[Any]) -> list[str]:
    return [f.check for f in found]


@pytest.mark.parametrize(
    ("fields", "failed"),
    [
        ({}, []),
        ({"feedback_type": "none"}, [FEEDBACK_OFF]),
        ({"feedback_type": "delayed"}, []),
        ({"webhook_url": None}, [WEBHOOK_WITHOUT_URL]),
        ({"webhook_url": "  "}, [WEBHOOK_WITHOUT_URL]),
        ({"webhook_url": None, "webhook_active": False}, []),
        ({"service_point_carriers": []}, [SERVICE_POINTS_WITHOUT_CARRIERS]),
        ({"service_point_carriers": [], "service_point_enabled": False}, []),
        (
            {"feedback_type": "none", "webhook_url": None, "service_point_carriers": []},
            [FEEDBACK_OFF, WEBHOOK_WITHOUT_URL, SERVICE_POINTS_WITHOUT_CARRIERS],
        ),
    ],
)
def test_each_record_check(fields: dict[str, Any], failed: list[str]) -> None:
    assert names(record_checks(record(1, **fields), mapping_type=False)) == failed


def test_what_a_record_does_not_say_is_not_flagged() -> None:
    found, _ = parse_integration({"id": 1, "webhook_active": True, "service_point_enabled": True})
    assert record_checks(found, mapping_type=False) == []  # no webhook_url, no carriers key


def test_prestashop_v2_feedback_comes_from_its_status_mapping() -> None:
    presta = record(1, feedback_type="none", type="prestashop_v2")
    assert record_checks(presta, mapping_type=True) == []


def test_the_texts_say_what_happens() -> None:
    [failed] = record_checks(record(1, feedback_type="none"), mapping_type=False)
    assert "never told an order shipped" in failed.text


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("https://www.Shop.example.com/", "shop.example.com"),
        ("http://shop.example.com", "shop.example.com"),
        ("https://shop.example.com:443/store/", "shop.example.com/store"),
        ("https://shop.example.com:8443/store", "shop.example.com:8443/store"),
        ("https://user:pw@shop.example.com./?q=1#x", "shop.example.com"),
        ("shop.example.com", None),
        (None, None),
    ],
)
def test_normalised_shops(url: str | None, normalised: str | None) -> None:
    assert normalised_shop(url) == normalised


def mapping(*entries: tuple[str, str | None, bool]) -> StatusMapping:
    return StatusMapping(7, tuple(MappingEntry(*e) for e in entries))


def test_status_mapping_problems() -> None:
    good = mapping(
        ("READY_TO_SEND", "11", True),
        ("IN_TRANSIT", "11", True),  # two categories on one status: fine (the spec's example)
        ("DELIVERED", "12", True),
        ("CANCEL", "6", True),
    )
    assert mapping_problems(good) == []
    broken = mapping(
        ("READY_TO_SEND", "11", True),
        ("DELIVERED", None, True),
        ("CANCEL", "1", False),
    )
    assert mapping_problems(broken) == [
        "DELIVERED is unmapped",
        "CANCEL points at a deleted shop status (1)",
        "IN_TRANSIT is unmapped",
    ]


def snapshot(*records: Any, unreadable: tuple[int, ...] = ()) -> AccountSnapshot:
    observations = {
        r.id: Observation(
            r.id,
            ReadOutcome.ERROR if r.id in unreadable else ReadOutcome.OK,
            r,
            derive(r, T0, 7200),
        )
        for r in records
    }
    return AccountSnapshot("eu", observations, 1, T0)


def test_the_assessment_of_an_account() -> None:
    probe = ShopProbe("https://shop1.example.com:443", Outcome(Result.OK, T0))
    ignored = {("eu", 4): frozenset({FEEDBACK_OFF})}
    assessor = Assessor(
        probes=lambda: {probe.target: probe},
        mappings=lambda account: {
            5: mapping(("READY_TO_SEND", "1", False)),
            6: mapping(("READY_TO_SEND", "1", False)),
        },
        ignored=lambda account, i: ignored.get((account, i), frozenset()),
        unmonitored=lambda account: (99,),
    )
    shop = "https://twin.example.com/"
    assessed = assessor(
        snapshot(
            record(1),
            record(2, shop_url=shop),
            record(3, shop_url="http://www.twin.example.com"),
            record(4, feedback_type="none"),  # switched off for this integration
            record(5, type="prestashop_v2"),
            record(6, type="woocommerce"),  # a mapping of another type is not looked at
        )
    )
    findings = assessed.findings
    assert findings[1].probe is probe
    assert findings[1].failed == ()
    assert [f.check for f in findings[2].failed] == [DUPLICATE_SHOP]
    assert "integration 3 of this account is on the same shop" in findings[2].failed[0].text
    assert [f.check for f in findings[3].failed] == [DUPLICATE_SHOP]
    assert 4 not in findings
    assert [f.check for f in findings[5].failed] == [STATUS_MAPPING]
    assert 6 not in findings
    assert assessed.unmonitored == (99,)
    # unchanged records and findings: the same objects again (nothing to render anew)
    again = assessor(assessed)
    assert again.findings[2] is findings[2]
    assert again.findings[1] is findings[1]


def test_every_check_can_be_named() -> None:
    assert CHECKS == (
        "feedback_off",
        "webhook_without_url",
        "service_points_without_carriers",
        "duplicate_shop",
        "status_mapping",
    )
