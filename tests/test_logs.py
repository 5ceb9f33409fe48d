"""Log lines: JSON shape, secret scrubbing, redaction, tracebacks without locals."""

from __future__ import annotations

import base64
import io
import json
import logging

import structlog

from monitor import logs
from tests.conftest import LogCapture

SECRET = "demo-secret-key"


def test_json_shape(captured_logs: LogCapture) -> None:
    structlog.get_logger("t").info("something_happened", integration_id=3)
    [line] = captured_logs.lines()
    assert line["event"] == "something_happened"
    assert line["level"] == "info"
    assert line["timestamp"].endswith("Z")
    assert line["integration_id"] == 3


def test_known_secrets_are_scrubbed_anywhere(captured_logs: LogCapture) -> None:
    basic = base64.b64encode(b"demo-public-key:demo-secret-key").decode()
    log = structlog.get_logger("t")
    log.warning("oops", detail=f"the key was {SECRET}", header=f"Basic {basic}")
    logging.getLogger("httpx").warning("GET https://x/?a=%s", SECRET)  # stdlib logs too
    assert SECRET not in captured_logs.text
    assert basic not in captured_logs.text
    assert len(captured_logs.lines()) == 2


def test_secret_looking_keys_and_url_queries_are_redacted(captured_logs: LogCapture) -> None:
    structlog.get_logger("t").info(
        "request",
        authorization="Bearer abc123",
        api_token="t0k3n",
        url="https://shop.example.com/orders.json?token=hunter2",
    )
    [line] = captured_logs.lines()
    assert line["authorization"] == "********"
    assert line["api_token"] == "********"
    assert "hunter2" not in captured_logs.text
    assert line["url"].startswith("https://shop.example.com/orders.json?")


def test_tracebacks_carry_no_local_variables(captured_logs: LogCapture) -> None:
    def fail(password: str) -> None:
        token = "local-token-value"
        raise RuntimeError("boom " + str(len(token + password)))

    try:
        fail("local-password-value")
    except RuntimeError:
        structlog.get_logger("t").exception("crashed")
    [line] = captured_logs.lines()
    assert "RuntimeError" in captured_logs.text
    assert "local-token-value" not in captured_logs.text
    assert "local-password-value" not in captured_logs.text
    assert line["level"] == "error"


def test_library_info_logs_are_quiet(captured_logs: LogCapture) -> None:
    logging.getLogger("httpx").info("HTTP Request: GET https://panel/api?x=1")
    logging.getLogger("apscheduler.executors.default").info("Running job")
    assert captured_logs.lines() == []


def test_a_url_password_never_reaches_a_log_line_but_its_user_does(
    captured_logs: LogCapture,
) -> None:
    structlog.get_logger("t").warning(
        "fetch_failed", url="https://admin:hunter22@shop.example.com/api", note="see http://u@h/x"
    )
    [line] = captured_logs.lines()
    assert line["url"] == "https://admin:********@shop.example.com/api"
    assert line["note"] == "see http://u@h/x"


def test_urls_of_any_scheme_lose_passwords_query_values_and_token_paths(
    captured_logs: LogCapture,
) -> None:
    structlog.get_logger("t").warning(
        "delivery_failed",
        mail="mailtos://monitor:pw@smtp.example.com?to=alerts@example.com",
        hook="json://hooks.example.com/ops/abc123TOKENxyz?token=t0k",
        bot="tgram://AAbbCCddEEffGGhh1234/12345",
        repo="https://ghp0123456789abcdefXYZ@github.com/org/repo",
    )
    [line] = captured_logs.lines()
    assert line["mail"] == "mailtos://monitor:********@smtp.example.com?to=********"
    assert line["hook"] == "json://hooks.example.com/ops/********?token=********"
    assert line["bot"] == "tgram://********/12345"
    assert line["repo"] == "https://********@github.com/org/repo"


def test_hosts_with_a_port_or_an_address_are_never_masked(captured_logs: LogCapture) -> None:
    """Masking never changes what is not a secret: a shop on localhost:PORT, an IPv4 or IPv6
    address with its port, read as they are."""
    structlog.get_logger("t").info(
        "integration_appeared",
        shop="http://localhost:40123/3",
        ip="https://127.0.0.1:8443/",
        v6="https://[::1]:8443/shop",
    )
    [line] = captured_logs.lines()
    assert line["shop"] == "http://localhost:40123/3"
    assert line["ip"] == "https://127.0.0.1:8443/"
    assert line["v6"] == "https://[::1]:8443/shop"


ORDINARY_USERS = ("monitor", "info", "admin", "alerts")
#: Secrets that are parts of the words every line is made of.
WORDLIKE_SECRETS = ("even", "form", "port", "level", "logger", "timestamp", "pw")


def test_secrets_inside_words_and_user_names_change_nothing_else() -> None:
    """Whatever the secrets, keys and the fields that name a line stay intact, and a secret
    is masked only where it stands as a word of its own, whatever its length."""
    stream = io.StringIO()
    logs.configure("json", stream=stream, secrets=WORDLIKE_SECRETS)
    try:
        log = structlog.get_logger("monitor.daemon")
        for user in ORDINARY_USERS:
            log.info("monitor_started", receiver=f"mailtos://{user}:even@mx.example")
        log.warning("report_formatted", text="information: the event format is portable")
        log.warning("auth_failed", detail="the password was pw and level", format="json")
        logging.getLogger("apprise").warning("login as info with even failed")
    finally:
        logs.configure("json")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == [
        *["monitor_started"] * len(ORDINARY_USERS),
        "report_formatted",
        "auth_failed",
        "login as info with ******** failed",  # a library's message is text: masked as text
    ]
    assert [line["logger"] for line in lines] == ["monitor.daemon"] * 6 + ["apprise"]
    assert [line["level"] for line in lines] == ["info"] * 4 + ["warning"] * 3
    known = {"event", "logger", "level", "timestamp", "receiver", "text", "detail", "format"}
    assert all(set(line) <= known for line in lines)
    assert [line["receiver"] for line in lines[:4]] == [
        f"mailtos://{user}:********@mx.example" for user in ORDINARY_USERS
    ]
    assert lines[4]["text"] == "information: the event format is portable"
    assert lines[5]["detail"] == "the password was ******** and ********"
    assert lines[5]["format"] == "json"


def test_secrets_added_later_are_masked_from_then_on(captured_logs: LogCapture) -> None:
    log = structlog.get_logger("t")
    log.info("before", value="rotated-key-1")
    logs.scrubber.add(["rotated-key-1"])
    log.info("after", value="rotated-key-1", word="rotated-key-10")
    before, after = captured_logs.lines()
    assert before["value"] == "rotated-key-1"
    assert after["value"] == "********"
    assert after["word"] == "rotated-key-10"  # another value that merely begins like it
