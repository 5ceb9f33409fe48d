"""Grouping across accounts and platform incidents, pure: explicit times, no I/O."""

from __future__ import annotations

import json
from typing import Any

from monitor.notify.grouping import Grouper, IncidentDesk, collapse
from monitor.notify.messages import message


def event(
    n: int,
    *,
    account: str | None = None,
    kind: str = "fired",
    status: str = "firing",
    integration_type: str = "shopify",
    alert: str = "IntegrationFailing",
) -> dict[str, Any]:
    return {
        "alert": alert,
        "status": status,
        "kind": kind,
        "severity": "warning",
        "account": account or f"account-{n % 4}",
        "fingerprint": f"fp-{account or n % 4}-{n}",
        "integration_id": n,
        "shop_name": f"Shop {n}",
        "integration_type": integration_type,
        "starts_at": "2026-12-01T10:02:00Z",
        "summary": f"Sendcloud cannot fetch orders from Shop {n}.",
        "runbook_url": "https://runbooks.example/#integrationfailing",
        "cause": {
            "exception": "ConnectTimeout",
            "exception_type": "httpx.ConnectTimeout",
            "host": f"shop{n}.myshopify.com",
        },
    }


def test_a_route_gathers_every_account_for_group_wait() -> None:
    grouper = Grouper(10)
    grouper.add("route 1", [event(1)], now=100.0)
    grouper.add("route 1", [event(2), event(3)], now=105.0)
    grouper.add("route 2", [event(4)], now=108.0)
    assert grouper.next_due() == 110.0
    assert grouper.due(109.9) == []
    [(key, events)] = grouper.due(110.0)
    assert key == "route 1"
    assert [e["integration_id"] for e in events] == [1, 2, 3]
    assert grouper.next_due() == 118.0
    grouper.add("route 1", [event(5)], now=111.0)  # a new group, with its own wait
    assert {k for k, _ in grouper.due(121.0)} == {"route 1", "route 2"}
    assert grouper.next_due() is None


def test_a_group_has_each_alert_once_at_its_newest() -> None:
    cause = {**event(1, kind="cause"), "cause": {"exception": "SSL error"}}
    merged = collapse([event(1), event(2), cause, event(2, kind="resolved", status="resolved")])
    assert [(e["integration_id"], e["kind"]) for e in merged] == [(1, "fired"), (2, "resolved")]
    assert merged[0]["cause"] == {"exception": "SSL error"}


def test_one_message_summarises_many_accounts() -> None:
    text = message([event(n) for n in range(312)])
    assert text.title == "[FIRING:312] IntegrationFailing (4 accounts)"
    assert text.text.startswith(
        "312 shopify integrations in 4 accounts failing since 10:02 UTC, mostly "
        "`ConnectTimeout` to *.myshopify.com."
    )
    assert text.text.count("\n- ") == 10
    assert text.text.endswith("…and 302 more")
    assert "Shop 0" in text.html
    assert "Shop 11" not in text.html


def population(total: int) -> Any:
    return lambda integration_type: total if integration_type == "shopify" else 0


def test_most_of_a_type_failing_together_is_a_platform_incident_and_holds_follow_ups() -> None:
    desk = IncidentDesk()
    [(events, note)] = desk.screen("route 1", [event(n) for n in range(30)], population(40))
    assert len(events) == 30
    assert note is not None
    assert "platform-side incident: 30 of 40 shopify" in note

    # escalations and causes of its shops are held; another type is not
    follow_ups = [event(n, kind="escalated") for n in range(30)] + [
        event(n, kind="cause") for n in range(5)
    ]
    other = event(99, integration_type="woocommerce", kind="escalated")
    assert desk.screen("route 1", [*follow_ups, other], population(40)) == [([other], None)]

    # half recovered is not over yet: nothing is sent
    assert (
        desk.screen(
            "route 1",
            [event(n, kind="resolved", status="resolved") for n in range(15)],
            population(40),
        )
        == []
    )
    # more than half: one message says it is over, with every recovery it held; one more
    # carries what the 14 shops still failing missed while it lasted: their escalations
    [(events, note), (missed, none)] = desk.screen(
        "route 1", [event(15, kind="resolved", status="resolved")], population(40)
    )
    assert [e["integration_id"] for e in events] == list(range(16))
    assert note is not None
    assert "16 of 30 integrations recovered; 14 still failing" in note
    assert [(e["integration_id"], e["kind"]) for e in missed] == [
        (n, "escalated") for n in range(16, 30)
    ]
    assert none is None
    # the shops that outlasted it are on their own again
    late = event(20, kind="escalated")
    assert desk.screen("route 1", [late], population(40)) == [([late], None)]


def test_few_or_a_minority_failing_is_no_platform_incident() -> None:
    desk = IncidentDesk()
    [(_, note)] = desk.screen("route 1", [event(n) for n in range(9)], population(10))
    assert note is None  # fewer than 10
    [(_, note)] = desk.screen("route 2", [event(n) for n in range(20)], population(40))
    assert note is None  # exactly half is not more than half
    assert desk.incidents == {}


def test_incidents_are_per_route() -> None:
    desk = IncidentDesk()
    desk.screen("route 1", [event(n) for n in range(30)], population(40))
    escalation = event(1, kind="escalated")
    assert desk.screen("route 2", [escalation], population(40)) == [([escalation], None)]


def test_a_shop_still_failing_gets_what_it_missed_once_merged() -> None:
    """Held follow-ups are one per shop at its newest; an escalation stays an escalation (a
    critical route must hear it), with the cause that came after it."""
    desk = IncidentDesk()
    desk.screen("route 1", [event(n) for n in range(12)], population(12))
    escalated = {**event(11, kind="escalated"), "severity": "critical"}
    cause = {**event(11, kind="cause"), "severity": "critical", "cause": {"exception": "SSL"}}
    repeat = event(10, kind="repeat")
    assert desk.screen("route 1", [escalated, repeat], population(12)) == []
    assert desk.screen("route 1", [cause], population(12)) == []
    recoveries = [event(n, kind="resolved", status="resolved") for n in range(7)]
    [(over, note), (missed, _)] = desk.screen("route 1", recoveries, population(12))
    assert note is not None
    assert [e["integration_id"] for e in over] == list(range(7))
    by_id = {e["integration_id"]: e for e in missed}
    assert sorted(by_id) == [10, 11]
    assert (by_id[11]["kind"], by_id[11]["severity"]) == ("escalated", "critical")
    assert by_id[11]["cause"] == {"exception": "SSL"}
    assert by_id[10]["kind"] == "repeat"
    assert desk.incidents == {}


def test_a_member_that_fails_again_is_not_counted_as_recovered() -> None:
    desk = IncidentDesk()
    desk.screen("route 1", [event(n) for n in range(10)], population(10))
    desk.screen(
        "route 1", [event(n, kind="resolved", status="resolved") for n in range(5)], population(10)
    )
    again = event(0)  # a new episode: passes at once, and is a member failing again
    assert desk.screen("route 1", [again], population(10)) == [([again], None)]
    assert (
        desk.screen("route 1", [event(5, kind="resolved", status="resolved")], population(10)) == []
    )
    [(over, _)] = desk.screen(
        "route 1", [event(6, kind="resolved", status="resolved")], population(10)
    )
    assert sorted(e["integration_id"] for e in over) == [1, 2, 3, 4, 5, 6]


def test_the_incidents_are_state_that_a_new_desk_takes_over() -> None:
    desk = IncidentDesk()
    desk.screen("route 1", [event(n) for n in range(10)], population(10))
    desk.screen("route 2", [event(n) for n in range(10)], population(10))
    desk.screen("route 1", [event(3, kind="escalated")], population(10))
    saved = json.loads(json.dumps(desk.state()))  # through the state file's format

    restarted = IncidentDesk()
    ended = restarted.restore([*saved, {"route": "broken"}], keep=lambda key: key == "route 1")
    assert [i.integration_type for i in ended] == ["shopify"]  # route 2 changed meanwhile
    assert list(restarted.incidents) == [("route 1", ("integration_type", "shopify"))]
    recoveries = [event(n, kind="resolved", status="resolved") for n in range(6)]
    [(_, note)] = restarted.screen("route 1", recoveries, population(10))
    assert note is not None  # over; shop 3 recovered, so its held escalation is not sent
    restarted.restore(saved, keep=lambda key: True)
    groups = restarted.screen(
        "route 1",
        [event(n, kind="resolved", status="resolved") for n in range(4, 10)],
        population(10),
    )
    assert [(e["integration_id"], e["kind"]) for e in groups[1][0]] == [(3, "escalated")]


def shop_event(n: int, issuer: str, alert: str = "IntegrationShopUnreachable") -> dict[str, Any]:
    return {
        **event(n, integration_type=("shopify", "woocommerce", "magento")[n % 3], alert=alert),
        "certificate_issuer": issuer,
        "probe_result": "untrusted",
    }


def by_issuer(issuers: dict[str, int]) -> Any:
    return lambda issuer: issuers.get(issuer, 0)


def test_many_shops_of_one_ca_failing_together_is_one_incident_of_that_ca() -> None:
    """A CA outage: shops of every type, their certificates from one CA, fail their probe (or
    expire) together: one incident, whatever their platform."""
    desk = IncidentDesk()
    shops = [shop_event(n, "ACME CA") for n in range(12)]
    shops += [shop_event(n, "ACME CA", "IntegrationShopCertificateExpiring") for n in range(12, 15)]
    other = shop_event(99, "Other CA")
    [(events, note)] = desk.screen(
        "route 1", [*shops, other], population(0), by_issuer({"ACME CA": 20, "Other CA": 50})
    )
    assert len(events) == 16
    assert note is not None
    assert "certificate authority ACME CA: 15 of 20 shops" in note
    repeats = [{**e, "kind": "repeat"} for e in shops]
    other_repeat = {**other, "kind": "repeat"}
    assert desk.screen("route 1", [*repeats, other_repeat], population(0)) == [
        ([other_repeat], None)
    ]
    recovered = [{**e, "kind": "resolved", "status": "resolved"} for e in shops[:8]]
    [(events, note), (missed, _)] = desk.screen("route 1", recovered, population(0))
    assert note is not None
    assert "incident of the certificate authority ACME CA is over: 8 of 15" in note
    # the shops that outlast it get what they missed: their held repeats
    assert sorted(e["integration_id"] for e in missed) == [e["integration_id"] for e in shops[8:]]
    assert {e["kind"] for e in missed} == {"repeat"}


def test_a_few_shops_of_a_ca_or_a_minority_of_them_is_no_incident() -> None:
    desk = IncidentDesk()
    [(_, note)] = desk.screen(
        "route 1",
        [shop_event(n, "ACME CA") for n in range(12)],
        population(0),
        by_issuer({"ACME CA": 100}),
    )
    assert note is None
    shops = [{**shop_event(n, "ACME CA"), "certificate_issuer": None} for n in range(12)]
    [(_, note)] = desk.screen("route 2", shops, population(0), by_issuer({"ACME CA": 12}))
    assert note is None  # no certificate read: nothing to group by
    assert desk.incidents == {}
