"""Routes, pure: first match wins unless ``continue``, the default takes the rest."""

from __future__ import annotations

import pytest

from monitor.notify.routes import Matchers, RouteTree, parse_labels


def tree() -> RouteTree:
    return RouteTree.of(
        [
            (Matchers(account="acme-*"), ["acme-teams"], True),
            (Matchers(severity="critical"), ["pagerduty"], False),
            (
                Matchers(integration_type="shop*", alert="IntegrationFailing"),
                ["shopify-desk"],
                False,
            ),
        ],
        ["ops-mail"],
    )


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        # continue: acme's channel, then evaluation goes on to the critical route
        ({"account": "acme-nl", "severity": "critical"}, ["acme-teams", "pagerduty"]),
        # continue, and nothing else matches: only acme's channel (not the default)
        ({"account": "acme-nl", "severity": "warning"}, ["acme-teams"]),
        # the first match stops: critical shopify goes to pagerduty only
        (
            {"account": "beta", "severity": "critical", "integration_type": "shopify"},
            ["pagerduty"],
        ),
        (
            {"account": "beta", "alert": "IntegrationFailing", "integration_type": "shopify"},
            ["shopify-desk"],
        ),
        # the glob is on the whole value, case-sensitive
        ({"account": "xacme-nl"}, ["ops-mail"]),
        ({"account": "ACME-nl"}, ["ops-mail"]),
        (
            {"account": "beta", "alert": "IntegrationFetchStale", "integration_type": "shopify"},
            ["ops-mail"],
        ),
    ],
)
def test_routes_match_in_order(labels: dict[str, object], receivers: list[str]) -> None:
    assert tree().receivers_for(labels) == receivers


def test_an_integration_id_matches_exactly() -> None:
    routes = RouteTree.of([(Matchers(integration_id=12), ["one-shop"], False)], [])
    assert routes.receivers_for({"integration_id": 12}) == ["one-shop"]
    assert routes.receivers_for({"integration_id": 120}) == []
    assert routes.receivers_for({"integration_id": None}) == []


def test_a_receiver_reached_by_two_routes_hears_it_once() -> None:
    routes = RouteTree.of(
        [(Matchers(account="a*"), ["mail"], True), (Matchers(), ["mail", "chat"], False)], []
    )
    assert routes.receivers_for({"account": "acme"}) == ["mail", "chat"]


def test_the_tree_prints_each_route_with_its_matchers() -> None:
    lines = tree().render().splitlines()
    assert lines[0] == "routes:"
    assert lines[1] == "  route 1: account=acme-* (continue) -> acme-teams"
    assert lines[3].startswith("  route 3: alert=IntegrationFailing, integration_type=shop*")
    assert lines[-1] == "  default: everything else -> ops-mail"


def test_scope_ignores_alert_and_severity() -> None:
    matchers = Matchers(account="acme-*", alert="IntegrationFailing", severity="critical")
    assert matchers.in_scope("acme-nl", 1, "shopify")
    assert not matchers.in_scope("beta", 1, "shopify")


def test_the_default_route_speaks_of_what_no_route_takes_whole() -> None:
    routes = tree()
    # acme's route continues and the critical one takes only some alerts: still the default's
    assert routes.in_scope(routes.default, "acme-nl", 1, "woocommerce")
    taken = RouteTree.of([(Matchers(account="acme-*"), ["acme"], False)], ["rest"])
    assert not taken.in_scope(taken.default, "acme-nl", 1, "shopify")
    assert taken.in_scope(taken.default, "beta", 1, "shopify")
    assert taken.in_scope(taken.routes[0], "acme-nl", 1, "shopify")


def test_labels_from_the_command_line() -> None:
    assert parse_labels(["alert=IntegrationFailing", "integration_id=7"]) == {
        "alert": "IntegrationFailing",
        "integration_id": 7,
    }
    for bad in (["alert"], ["colour=red"], ["integration_id=seven"]):
        with pytest.raises(ValueError, match=r"integration_id|label=value"):
            parse_labels(bad)
    # values an alert event never carries: a typo would otherwise "reach" the default route
    for bad, expected in (
        (["severity=crit"], "severity is warning or critical"),
        (["alert=IntegrationFail"], "alert is one of IntegrationFailing"),
        (["integration_id=-3"], "positive"),
    ):
        with pytest.raises(ValueError, match=expected):
            parse_labels(bad)
