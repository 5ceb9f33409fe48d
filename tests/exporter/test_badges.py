"""Badges: flat SVG that parses, says its state in words (for screen readers too), escapes what
it shows and refuses bad windows."""

from __future__ import annotations

from datetime import timedelta
from xml.etree import ElementTree

import pytest

from monitor.exporter.badges import COLOURS, route, state_badge, uptime_badge

SVG = "{http://www.w3.org/2000/svg}"


def texts(svg: str) -> tuple[str, list[str], set[str]]:
    root = ElementTree.fromstring(svg)  # noqa: S314 (our own output)
    label = root.attrib["aria-label"]
    shown = [t.text or "" for t in root.iter(f"{SVG}text")]
    fills = {r.attrib.get("fill", "") for r in root.iter(f"{SVG}rect")}
    return label, shown, fills


@pytest.mark.parametrize("state", list(COLOURS))
def test_a_state_badge_says_and_shows_the_state(state: str) -> None:
    label, shown, fills = texts(state_badge(state))
    assert shown == ["sendcloud sync", state.replace("_", " ")]
    assert label == f"sendcloud sync: {state.replace('_', ' ')}"
    assert COLOURS[state] in fills
    assert "href" not in state_badge(state)  # no external asset, no link, no font file


@pytest.mark.parametrize(
    ("ratio", "text", "colour"),
    [(1.0, "100.00%", "healthy"), (0.97, "97.00%", "stale"), (0.5, "50.00%", "failing")],
)
def test_an_uptime_badge_bands_its_colour(ratio: float, text: str, colour: str) -> None:
    _, shown, fills = texts(uptime_badge("30d", ratio))
    assert shown == ["uptime 30d", text]
    assert COLOURS[colour] in fills
    assert texts(uptime_badge("7d", None))[1] == ["uptime 7d", "unknown"]


def test_routes_and_their_refusals() -> None:
    windows: list[timedelta] = []

    def state_of(account: str, integration_id: int) -> str | None:
        return "failing" if (account, integration_id) == ("acme", 7) else None

    def uptime_of(account: str, integration_id: int, span: timedelta) -> float | None:
        windows.append(span)
        return 0.993

    code, svg = route("/badge/acme/7.svg", {}, state_of, uptime_of)
    assert (code, texts(svg)[1][1]) == (200, "failing")
    code, svg = route("/badge/acme/7/uptime.svg", {"window": ["7d"]}, state_of, uptime_of)
    assert (code, texts(svg)[1]) == (200, ["uptime 7d", "99.30%"])
    assert windows == [timedelta(days=7)]
    assert route("/badge/acme/8.svg", {}, state_of, uptime_of)[0] == 404
    for window in ("forever", "0d", "9999d", "-1d"):
        assert (
            route("/badge/acme/7/uptime.svg", {"window": [window]}, state_of, uptime_of)[0] == 400
        )
    code, svg = route("/badge/<script>/7.svg", {}, state_of, uptime_of)
    assert code == 404
    assert "<script>" not in svg
    ElementTree.fromstring(svg)  # noqa: S314 (still well-formed)
