"""Apprise receivers against real servers on loopback: an SMTP server (aiosmtpd), JSON and ntfy
receivers over HTTP; the CLI's notify-test, routes and validate-config. The URL is a secret
everywhere, also at debug level."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import logging
import socket
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from monitor import logs
from monitor.notify.dispatch import Router
from monitor.notify.messages import trial_message
from monitor.notify.receivers import AppriseReceiver, secret_parts
from monitor.notify.routes import Matchers, RouteTree
from tests.conftest import LogCapture, free_port
from tests.daemon_process import run_once
from tests.notify.test_grouping import event
from tests.receivers import Receiver, running

SMTP_PASSWORD = "smtp-pa55word-never-shown"
TOKEN = "tok-3f9a7c1e5b"


class Mailbox:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.logins: list[tuple[str, str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"

    def authenticate(
        self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password.decode() == SMTP_PASSWORD)


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()  # aiosmtpd cannot bind port 0 itself
    controller = Controller(
        box,
        hostname="127.0.0.1",
        port=port,
        authenticator=box.authenticate,
        auth_require_tls=False,
    )
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


def mail_url(port: int) -> str:
    return (
        f"mailto://monitor:{SMTP_PASSWORD}@127.0.0.1:{port}?mode=insecure"
        "&from=monitor@example.org&to=oncall@example.org"
    )


def observed() -> tuple[list[tuple[str, str]], Any, Any]:
    outcomes: list[tuple[str, str]] = []
    return outcomes, lambda sink, outcome: outcomes.append((sink, outcome)), lambda s, d: None


async def wait_until(condition: Any) -> None:
    """Within 10 s."""
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("timed out")


async def test_email_one_message_per_group_with_both_parts_and_no_secret(
    smtp: tuple[Mailbox, int],
) -> None:
    box, port = smtp
    outcomes, observe, depth = observed()
    mail = AppriseReceiver("oncall-mail", mail_url(port), observe=observe, depth=depth)
    router = Router(
        RouteTree.of([], ["oncall-mail"]), {"oncall-mail": mail}, group_wait_seconds=0.3
    )
    # three accounts' evaluations within group_wait: one message
    for account in ("acme-nl", "acme-be", "beta"):
        router.submit(account, [event(n, account=account) for n in range(1, 5)], [])
    await wait_until(lambda: box.messages)
    await asyncio.sleep(0.5)
    await router.aclose()

    [message] = box.messages
    assert box.logins == [("monitor", SMTP_PASSWORD)]  # it did log in with the secret
    assert message["Subject"] == "[FIRING:12] IntegrationFailing (3 accounts)"
    assert message["To"] == "oncall@example.org"
    assert box.envelopes[0].rcpt_tos == ["oncall@example.org"]
    assert message.get_content_type() == "multipart/alternative"
    plain = message.get_body(("plain",))
    rich = message.get_body(("html",))
    assert plain is not None
    assert rich is not None
    for part in (plain.get_content(), rich.get_content()):
        assert "12 shopify integrations in 3 accounts failing since 10:02 UTC" in part
        assert "Shop 1" in part
        assert "acme-be" in part
        assert "ConnectTimeout" in part  # the cause
        assert SMTP_PASSWORD not in part
    assert SMTP_PASSWORD not in box.envelopes[0].content.decode()
    assert outcomes == [("receiver:oncall-mail", "success")]


async def test_json_and_ntfy_receivers_on_loopback() -> None:
    with running(Receiver()) as hook, running(Receiver()) as ntfy:
        port = hook.server.server_address[1]
        ntfy_port = ntfy.server.server_address[1]
        outcomes, observe, depth = observed()
        found = {
            "hook": AppriseReceiver(
                "hook", f"json://127.0.0.1:{port}/{TOKEN}", observe=observe, depth=depth
            ),
            "ntfy": AppriseReceiver(
                "ntfy", f"ntfy://127.0.0.1:{ntfy_port}/oncall-topic", observe=observe, depth=depth
            ),
        }
        routes = RouteTree.of([(Matchers(account="acme-*"), ["hook"], False)], ["ntfy"])
        router = Router(routes, found, group_wait_seconds=0.2)
        router.submit("acme-nl", [event(1, account="acme-nl")], [])
        router.submit("beta", [event(2, account="beta"), event(3, account="beta")], [])
        await wait_until(lambda: hook.bodies and ntfy.bodies)
        await router.aclose()
    [to_acme] = hook.bodies
    assert to_acme["title"] == "[FIRING:1] IntegrationFailing (acme-nl)"
    assert "Shop 1" in to_acme["message"]
    assert "<" not in to_acme["message"]
    [to_rest] = ntfy.bodies
    assert to_rest["topic"] == "oncall-topic"
    assert "Shop 2" in to_rest["message"]
    assert "Shop 3" in to_rest["message"]
    assert "Shop 1" not in to_rest["message"]
    assert sorted(outcomes) == [("receiver:hook", "success"), ("receiver:ntfy", "success")]


async def test_apprise_and_urllib3_never_log_the_url_even_at_debug() -> None:
    capture = LogCapture()
    # no scrubbing configured: the pinned loggers alone must keep the secrets out
    logs.configure("json", level=logging.DEBUG, stream=capture.stream, secrets=())
    try:
        with running(Receiver(statuses=[500, 500])) as hook:
            port = hook.server.server_address[1]
            url = f"json://user:{SMTP_PASSWORD}@127.0.0.1:{port}/{TOKEN}"
            _outcomes, observe, depth = observed()
            receiver = AppriseReceiver(
                "hook", url, observe=observe, depth=depth, max_attempts=2, backoff_seconds=0.01
            )
            reason = await receiver.send_now(trial_message("hook", "now"))
            assert await receiver.send_now(trial_message("hook", "now")) is None
            await receiver.aclose()
        assert logging.getLogger("apprise").getEffectiveLevel() == logging.WARNING
        assert logging.getLogger("urllib3").getEffectiveLevel() == logging.WARNING
        assert hook.attempts == 3
    finally:
        logs.configure("json")
    assert reason is not None
    assert "500" in reason
    for secret in (TOKEN, SMTP_PASSWORD, url):
        assert secret not in capture.text
        assert secret not in reason
    failed = list(capture.events("alert_delivery_failed"))
    assert [e["sink"] for e in failed] == ["receiver:hook"]


def test_secret_parts_cover_password_path_and_query() -> None:
    parts = secret_parts(f"tgram://123456789:ABCdefGHIjkl@/chat?token={TOKEN}&x=1")
    assert TOKEN in parts
    assert any("ABCdefGHIjkl" in p for p in parts)
    mail = secret_parts(mail_url(25))
    assert SMTP_PASSWORD in mail


# -- the CLI ------------------------------------------------------------------------------------


def config(tmp_path: Path, **alerting: Any) -> Path:
    path = tmp_path / "monitor.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "sendcloud": {
                    "public_key": "pk",
                    "secret_key": "sk",
                    "integration_ids": "all",
                },
                "alerting": alerting,
            }
        )
    )
    return path


def test_notify_test_reports_each_receiver_without_its_url(
    tmp_path: Path, smtp: tuple[Mailbox, int]
) -> None:
    box, port = smtp
    dead = free_port()
    (tmp_path / "mail-url").write_text(mail_url(port) + "\n")
    path = config(
        tmp_path,
        receivers=[
            {"name": "oncall-mail", "url_file": str(tmp_path / "mail-url")},
            {"name": "gone", "url": f"json://127.0.0.1:{dead}/{TOKEN}", "max_attempts": 1},
        ],
    )
    result = run_once(["notify-test", "--config", str(path)], {})
    assert result.returncode == 1, result.stderr
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines())
    assert lines["oncall-mail"] == "ok"
    assert lines["gone"].startswith("failed: FAILURE: A Connection error occurred")
    for secret in (TOKEN, SMTP_PASSWORD, str(dead) + "/"):
        assert secret not in result.stdout + result.stderr
    [message] = box.messages
    assert str(message["Subject"]).startswith("[TEST] sendcloud-integration-monitor")

    only = run_once(["notify-test", "--config", str(path), "--receiver", "oncall-mail"], {})
    assert (only.returncode, only.stdout) == (0, "oncall-mail: ok\n")
    unknown = run_once(["notify-test", "--config", str(path), "--receiver", "nobody"], {})
    assert unknown.returncode == 2
    assert "oncall-mail, gone" in unknown.stderr


def test_routes_test_prints_the_receivers_as_amtool_does(tmp_path: Path) -> None:
    receivers = [
        {"name": name, "url": f"json://127.0.0.1:9/{TOKEN}"}
        for name in ("acme-teams", "pagerduty", "ops-mail")
    ]
    path = config(
        tmp_path,
        receivers=receivers,
        routes=[
            {"match": {"account": "acme-*"}, "receivers": ["acme-teams"], "continue": True},
            {"match": {"severity": "critical"}, "receivers": ["pagerduty"]},
        ],
        default_receivers=["ops-mail"],
    )
    args = ["routes", "--config", str(path), "test"]
    critical = run_once(
        [*args, "alert=IntegrationFailing", "account=acme-nl", "severity=critical"], {}
    )
    assert critical.stdout == "acme-teams,pagerduty\n", critical.stderr
    assert run_once([*args, "account=beta"], {}).stdout == "ops-mail\n"
    bad = run_once([*args, "colour=red"], {})
    assert bad.returncode == 2
    assert "label=value" in bad.stderr

    shown = run_once(["validate-config", "--config", str(path)], {})
    assert shown.returncode == 0, shown.stderr
    assert TOKEN not in shown.stdout
    dump = yaml.safe_load(shown.stdout)  # the tree is in comments: still YAML
    # which service and where, never the token
    assert [r["url"] for r in dump["alerting"]["receivers"]] == ["json://127.0.0.1:9/********"] * 3
    assert "#   route 1: account=acme-* (continue) -> acme-teams" in shown.stdout


@pytest.mark.parametrize(
    ("receivers", "routes", "expected"),
    [
        ([{"name": "x", "url": f"nope://{TOKEN}@host"}], [], "receiver 'x': Apprise cannot use"),
        ([{"name": "x", "url": f"{TOKEN}"}], [], "receiver 'x': the url must look like"),
        ([{"name": "x"}], [], "receiver 'x': set url or url_file"),
        (
            [{"name": "x", "url": f"json://127.0.0.1/{TOKEN}"}],
            [{"receivers": ["y"]}],
            "route 1: y",
        ),
    ],
)
def test_bad_receivers_are_refused_without_showing_the_url(
    tmp_path: Path, receivers: list[Any], routes: list[Any], expected: str
) -> None:
    path = config(tmp_path, receivers=receivers, routes=routes)
    for command in ("validate-config", "run", "notify-test"):
        result = run_once([command, "--config", str(path)], {})
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert expected in result.stderr
        assert TOKEN not in result.stdout + result.stderr


def test_config_errors_name_the_receiver_not_its_value(tmp_path: Path) -> None:
    path = config(tmp_path, receivers=[{"name": "x", "url": f"json://h/{TOKEN}", "colour": 1}])
    result = run_once(["validate-config", "--config", str(path)], {})
    assert result.returncode == 2
    assert "colour" in result.stderr
    assert TOKEN not in result.stderr
    parsed = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert all(TOKEN not in json.dumps(x) for x in parsed)


async def test_a_thousand_shops_in_five_accounts_failing_at_once_are_one_email(
    smtp: tuple[Mailbox, int],
) -> None:
    box, port = smtp
    _, observe, depth = observed()
    mail = AppriseReceiver("oncall-mail", mail_url(port), observe=observe, depth=depth)
    router = Router(
        RouteTree.of([], ["oncall-mail"]),
        {"oncall-mail": mail},
        group_wait_seconds=0.5,
        fleet=lambda: [(f"account-{n % 5}", n, "shopify", None) for n in range(1200)],
    )
    for account in range(5):
        router.submit(
            f"account-{account}",
            [event(n, account=f"account-{account}") for n in range(account, 1000, 5)],
            [],
        )
    await wait_until(lambda: box.messages)
    await asyncio.sleep(1)
    await router.aclose()
    [message] = box.messages
    assert message["Subject"] == "[FIRING:1000] IntegrationFailing (5 accounts)"
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "1000 shopify integrations in 5 accounts failing since 10:02 UTC" in text
    assert "Likely a platform-side incident: 1000 of 1200 shopify" in text
    assert "…and 990 more" in text


async def test_a_receiver_that_never_answers_fails_its_attempt_in_time_and_holds_no_exit(
    captured_logs: LogCapture,
) -> None:
    """A json:// service that accepts and never answers, with a read timeout far beyond the
    receiver's: the attempt fails after the receiver's timeout; the send still blocked runs in a
    daemon thread (an exiting process does not wait for it, tests/system/test_lifecycle.py),
    not in a pool the interpreter joins at exit; a message queued behind it fails after its own
    timeout, not after the blocked send."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(server.accept()[0]), daemon=True).start()
    try:
        outcomes, observe, depth = observed()
        url = f"json://127.0.0.1:{server.getsockname()[1]}/alerts?rto=60"
        receiver = AppriseReceiver(
            "hook", url, timeout_seconds=0.5, max_attempts=1, observe=observe, depth=depth
        )
        reason = await receiver.send_now(trial_message("hook", "now"))
        assert reason == "no answer within 0.5 s"
        assert accepted  # it did reach the service
        blocked = [t for t in threading.enumerate() if t.name == "receiver hook"]
        assert [t.daemon for t in blocked] == [True]
        receiver.put(trial_message("hook", "later"))  # behind the blocked send: its own timeout
        await wait_until(lambda: outcomes)
        await receiver.aclose()
    finally:
        server.close()
        for connection in accepted:
            connection.close()
    assert outcomes == [("receiver:hook", "failed")]
    reasons = [e["reason"] for e in captured_logs.events("alert_delivery_failed")]
    assert reasons == ["no answer within 0.5 s"] * 2


async def test_a_ca_outage_is_one_incident_in_one_email(smtp: tuple[Mailbox, int]) -> None:
    """Shops of every platform, their certificates from one CA, fail their probes together:
    one message that says it is likely that CA's incident (the route's fleet gives the
    population of its certificates)."""
    from tests.notify.test_grouping import shop_event

    box, port = smtp
    _, observe, depth = observed()
    mail = AppriseReceiver("oncall-mail", mail_url(port), observe=observe, depth=depth)
    fleet = [
        (f"account-{n % 4}", n, "shopify", "ACME CA" if n < 30 else "Other CA") for n in range(100)
    ]
    router = Router(
        RouteTree.of([], ["oncall-mail"]),
        {"oncall-mail": mail},
        group_wait_seconds=0.5,
        fleet=lambda: fleet,
    )
    for n in range(20):
        router.submit(f"account-{n % 4}", [shop_event(n, "ACME CA")], [])
    await wait_until(lambda: box.messages)
    await asyncio.sleep(1)
    await router.aclose()
    [message] = box.messages
    assert message["Subject"] == "[FIRING:20] IntegrationShopUnreachable (4 accounts)"
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    assert "Likely an incident of the certificate authority ACME CA: 20 of 30 shops" in text
