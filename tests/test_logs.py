"""Log lines: JSON shape, secret scrubbing, redaction, tracebacks without locals."""

from __future__ import annotations

import base64
import logging

import structlog

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


def test_url_userinfo_never_reaches_a_log_line(captured_logs: LogCapture) -> None:
    structlog.get_logger("t").warning(
        "fetch_failed", url="https://admin:hunter22@shop.example.com/api", note="see http://u@h/x"
    )
    [line] = captured_logs.lines()
    assert line["url"] == "https://shop.example.com/api"
    assert line["note"] == "see http://h/x"
