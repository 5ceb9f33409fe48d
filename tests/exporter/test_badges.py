"""Badges: flat SVG that parses, says its state in words (for screen readers too), escapes what
it shows and refuses bad windows."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from xml.etree import ElementTree

import bcrypt
import httpx
import pytest
from pydantic import SecretStr

from monitor.config_errors import ConfigError
from monitor.exporter.badges import COLOURS, badge_key, route, state_badge, uptime_badge
from monitor.settings import BadgeSettings
from monitor.simulator import SimIntegration, Simulator
from tests.conftest import free_port
from tests.daemon_process import DaemonProcess, monitor_env, run_once

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


class Embed(HTMLParser):
    """The embed code of the account page's badges (the text of its <pre> blocks)."""

    def __init__(self) -> None:
        super().__init__()
        self.codes: list[str] = []
        self._in = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "pre":
            self._in = True
            self.codes.append("")

    def handle_endtag(self, tag: str) -> None:
        self._in = self._in and tag != "pre"

    def handle_data(self, data: str) -> None:
        if self._in:
            self.codes[-1] += data


def embedded(page: str, integration_id: int = 1) -> dict[str, str]:
    """The badge URLs of one integration in an account page's embed code (state, uptime)."""
    parser = Embed()
    parser.feed(page)
    [code] = [c for c in parser.codes if f"/{integration_id}.svg" in c]
    sources = re.findall(r'src="([^"]+)"', code)
    return {"state": sources[0], "uptime": sources[1].replace("&amp;", "&")}


@pytest.mark.timeout(90)
def test_badges_embed_without_credentials_while_everything_else_needs_them(
    tmp_path: Path,
) -> None:
    """A merchant's page cannot send credentials. With basic auth on, the account page gives
    the HTML of badges under the account's key (from the configured secret, read from a file);
    anyone can load those and nothing else; a new secret (a reload) revokes the old URLs; the
    secret is never printed."""
    secret, rotated = "badge-secret-" + "s3cr3t" * 4, "badge-secret-" + "r0tat3d" * 4
    secret_file = tmp_path / "badge_secret"
    secret_file.write_text(secret + "\n")
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(rounds=4)).decode()
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users: {{ops: '{hashed}'}}\n")
    now = datetime.now(UTC)
    shops = [
        SimIntegration(1, "failing", "Broken shop", started_failing_at=now - timedelta(hours=2)),
        SimIntegration(2, "healthy", "Fine shop"),
    ]
    with Simulator(shops) as sim:
        port = free_port()
        env = monitor_env(
            sim,
            port,
            MONITOR_WEB_CONFIG_FILE=str(web),
            MONITOR_BADGE_SECRET_FILE=str(secret_file),
            MONITOR_HISTORY_FILE=str(tmp_path / "history.db"),
        )
        daemon = DaemonProcess(["run"], env, port)
        ops = ("ops", "pw")
        try:
            daemon.wait_for(lambda: daemon.get("/healthz").status_code == 200, 15, "/healthz")
            daemon.wait_for(
                lambda: httpx.get(daemon.base + "/readyz", timeout=5).status_code == 200,
                15,
                "ready",
            )
            assert httpx.get(daemon.base + "/accounts/default", timeout=5).status_code == 401
            page = httpx.get(daemon.base + "/accounts/default", auth=ops, timeout=5).text
            urls = embedded(page)
            assert urls["state"].startswith(f"http://127.0.0.1:{port}/public/badge/")
            assert "default" not in urls["state"]  # the key, never the account's name
            state = httpx.get(urls["state"], timeout=5)  # no credentials
            uptime = httpx.get(urls["uptime"], timeout=5)
            key = urls["state"].split("/")[-2]
            refused = {
                "plain badge": httpx.get(daemon.base + "/badge/default/1.svg", timeout=5),
                "metrics": httpx.get(daemon.base + "/metrics", timeout=5),
                "other id": httpx.get(f"{daemon.base}/public/badge/{key}/99.svg", timeout=5),
                "wrong key": httpx.get(f"{daemon.base}/public/badge/{'0' * 32}/1.svg", timeout=5),
                "dot dot": httpx.get(f"{daemon.base}/public/badge/{key}/../../metrics", timeout=5),
                "no badge": httpx.get(f"{daemon.base}/public/badge/{key}/1.svg.json", timeout=5),
                "listing": httpx.get(f"{daemon.base}/public/badge/{key}/", timeout=5),
            }
            # the secret is rotated: a reload revokes every URL made from the old one
            secret_file.write_text(rotated)
            reloaded = httpx.post(daemon.base + "/-/reload", auth=ops, timeout=10)
            old = httpx.get(urls["state"], timeout=5)
            fresh = embedded(httpx.get(daemon.base + "/accounts/default", auth=ops, timeout=5).text)
            new = httpx.get(fresh["state"], timeout=5)
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
        dumped = run_once(["validate-config"], env)
    assert state.status_code == 200
    assert state.headers["content-type"] == "image/svg+xml"
    assert texts(state.text)[1] == ["sendcloud sync", "failing"]
    assert uptime.status_code == 200
    assert texts(uptime.text)[1][0] == "uptime 30d"
    assert refused["plain badge"].status_code == 401
    assert refused["metrics"].status_code == 401
    for name in ("other id", "wrong key"):  # the same answer: nothing about what exists
        assert refused[name].status_code == 404, name
        assert texts(refused[name].text)[1] == ["sendcloud sync", "no such badge"]
    assert refused["no badge"].status_code == 404
    assert refused["dot dot"].status_code == 401  # /public/metrics: protected like the rest
    assert refused["listing"].status_code == 404
    assert reloaded.status_code == 200, reloaded.text
    assert old.status_code == 404
    assert new.status_code == 200
    assert fresh["state"] != urls["state"]
    assert dumped.returncode == 0, dumped.stderr
    for value in (secret, rotated):
        assert value not in daemon.output
        assert value not in dumped.stdout + dumped.stderr


@pytest.mark.timeout(60)
def test_without_basic_auth_the_embed_code_is_the_plain_badge(tmp_path: Path) -> None:
    with Simulator([SimIntegration(1, "healthy", "Fine shop")]) as sim:
        port = free_port()
        daemon = DaemonProcess(["run"], monitor_env(sim, port), port)
        try:
            daemon.wait_ready()
            urls = embedded(daemon.get("/accounts/default").text)
            state = httpx.get(urls["state"], timeout=5)
            public = daemon.get("/public/badge/" + "0" * 32 + "/1.svg")
            assert daemon.terminate()[0] == 0
        finally:
            daemon.kill()
    assert urls["state"] == f"http://127.0.0.1:{port}/badge/default/1.svg"  # as before
    assert (state.status_code, texts(state.text)[1][1]) == (200, "healthy")
    assert public.status_code == 404  # no secret: no keyed URL


def test_a_badge_key_is_the_accounts_own_and_the_secrets() -> None:
    keys = {badge_key(s, a) for s in ("one-secret-0123456", "two-secret-0123456") for a in "ab"}
    assert len(keys) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", key) for key in keys)
    assert badge_key("one-secret-0123456", "a") == badge_key("one-secret-0123456", "a")


def test_a_short_badge_secret_is_refused_without_echoing_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as refused:
        BadgeSettings(secret=SecretStr("short-one")).resolved_secret()
    assert "16 characters" in str(refused.value)
    assert "short-one" not in str(refused.value)
    both = BadgeSettings(secret=SecretStr("x" * 20), secret_file=tmp_path / "f")
    with pytest.raises(ConfigError, match="not both"):
        both.resolved_secret()
