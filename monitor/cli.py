"""The ``integration-monitor`` command: run, check, demo, validate-config, simulator."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import structlog
import yaml
from pydantic import SecretStr

from monitor import __version__, logs
from monitor.health import State, utcnow
from monitor.metrics import Metrics
from monitor.scheduler import Daemon, open_pollers
from monitor.settings import (
    AccountConfig,
    AlertingSettings,
    ConfigError,
    Defaults,
    Settings,
    config_file_from,
    load_settings,
    masked_dump,
    parse_listen_address,
)
from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator, demo_integrations
from monitor.state import AccountSnapshot, Observation, Store
from monitor.webconfig import WebConfig, load_web_config

EXIT_OK, EXIT_STALE, EXIT_FAILING, EXIT_UNREADABLE = 0, 1, 2, 3
EXIT_CONFIG = 2
EXIT_RUNTIME = 1

log = structlog.get_logger("monitor.cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_CONFIG
    # ``check`` speaks Nagios: a configuration it cannot use, or a run cut short, is UNKNOWN,
    # never OK; the other commands exit 2 for an invalid configuration.
    is_check = args.command == "check"
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"integration-monitor: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE if is_check else EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_UNREADABLE if is_check else EXIT_OK


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="integration-monitor",
        description="Monitor Sendcloud shop integrations and export their health to Prometheus.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    def command(name: str, help_text: str, handler: object) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    for name, help_text, handler in (
        ("run", "run the monitoring daemon", _run),
        (
            "check",
            "poll once, print a table; exit 0 healthy, 1 stale, 2 failing or not found, "
            "3 unknown (API unreadable, invalid configuration, interrupted)",
            _check,
        ),
        ("validate-config", "check the configuration and print it with secrets masked", _validate),
    ):
        command(name, help_text, handler).add_argument(
            "--config", metavar="PATH", help="YAML configuration file (or MONITOR_CONFIG_FILE)"
        )
    commands.choices["run"].add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic auth for the HTTP endpoints, in the Prometheus exporter-toolkit "
        "format (or MONITOR_WEB_CONFIG_FILE)",
    )
    demo = command("demo", "run the daemon against the built-in Sendcloud simulator", _demo)
    demo.add_argument("--listen", default="127.0.0.1:9877", help="metrics address (host:port)")
    demo.add_argument("--interval", type=float, default=5.0, help="poll interval in seconds")
    sim = command("simulator", "serve the Sendcloud API simulator with the demo data", _simulator)
    sim.add_argument("--listen", default="127.0.0.1:8080", help="address (host:port)")
    return parser


def _load(args: argparse.Namespace) -> tuple[Settings, list[AccountConfig]]:
    return load_settings(config_file_from(args.config, os.environ), os.environ)


def _run(args: argparse.Namespace) -> int:
    settings, accounts = _load(args)
    web = _web_config(args)
    logs.configure(
        settings.log_format, level=_level(settings.log_level), secrets=settings.secrets()
    )
    listen = parse_listen_address(settings.listen_address)
    return _serve(accounts, listen, settings.alerting, web)


def _web_config(args: argparse.Namespace) -> WebConfig | None:
    named = args.web_config_file or os.environ.get("MONITOR_WEB_CONFIG_FILE")
    return load_web_config(Path(named)) if named else None


def _level(name: str) -> int:
    return int(logging.getLevelNamesMapping()[name.upper()])


def _serve(
    accounts: list[AccountConfig],
    listen: tuple[str, int],
    alerting: AlertingSettings | None = None,
    web: WebConfig | None = None,
) -> int:
    try:
        daemon = Daemon(accounts, listen, alerting=alerting, web_config=web)
    except OSError as exc:
        log.error("cannot_listen", address=f"{listen[0]}:{listen[1]}", error=exc.strerror)
        return EXIT_RUNTIME
    asyncio.run(_until_signal(daemon))
    return EXIT_OK


async def _until_signal(daemon: Daemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    await daemon.run(stop)


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def handler() -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    return handler


def _demo(args: argparse.Namespace) -> int:
    logs.configure(
        os.environ.get("MONITOR_LOG_FORMAT") or None,
        level=_level(os.environ.get("MONITOR_LOG_LEVEL") or "info"),
    )
    listen = parse_listen_address(args.listen)
    integrations = demo_integrations(utcnow())
    with Simulator(integrations) as sim:
        defaults = Defaults()
        account = AccountConfig(
            name="demo",
            api_url=sim.url,
            public_key=SecretStr(DEMO_PUBLIC_KEY),
            secret_key=SecretStr(DEMO_SECRET_KEY),
            integration_ids=tuple(i.id for i in integrations),
            poll_interval_seconds=args.interval,
            stale_after_seconds=defaults.stale_after_seconds,
            max_concurrency=defaults.max_concurrency,
            request_timeout_seconds=defaults.request_timeout_seconds,
        )
        log.info(
            "demo_started",
            simulator=sim.url,
            metrics=f"http://{args.listen.replace('0.0.0.0', 'localhost')}/metrics",
        )
        return _serve([account], listen)


def _simulator(args: argparse.Namespace) -> int:
    logs.configure(None)
    host, port = parse_listen_address(args.listen)
    sim = Simulator(demo_integrations(utcnow()), host=host, port=port)
    log.info("simulator_started", url=sim.url, public_key=DEMO_PUBLIC_KEY)
    try:
        sim.serve_forever()
    finally:
        sim.stop()
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    settings, accounts = _load(args)
    print(yaml.safe_dump(masked_dump(settings, accounts), sort_keys=False), end="")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    settings, accounts = _load(args)
    logs.configure(settings.log_format, stream=sys.stderr, secrets=settings.secrets())
    snapshots = asyncio.run(_poll_once(accounts))
    print(format_table(snapshots, utcnow()))
    return check_exit_code(snapshots)


async def _poll_once(accounts: list[AccountConfig]) -> Mapping[str, AccountSnapshot]:
    store = Store([a.name for a in accounts])
    metrics = Metrics(store, [a.name for a in accounts])
    async with open_pollers(accounts, store, metrics) as pollers:
        await asyncio.gather(*(p.poll() for p in pollers))
    return store.snapshots()


def check_exit_code(snapshots: Mapping[str, AccountSnapshot]) -> int:
    """Nagios: failing or not found 2 (CRITICAL) beats unreadable 3 (UNKNOWN) beats stale 1
    (WARNING) beats 0 (OK)."""
    states = {o.state for s in snapshots.values() for o in s.integrations.values()}
    if states & {State.FAILING, State.NOT_FOUND}:
        return EXIT_FAILING
    if State.UNKNOWN in states or any(s.account_error for s in snapshots.values()):
        return EXIT_UNREADABLE
    return EXIT_STALE if State.STALE in states else EXIT_OK


def format_table(snapshots: Mapping[str, AccountSnapshot], now: datetime) -> str:
    header = ("ACCOUNT", "ID", "SHOP", "TYPE", "STATUS", "FAILING FOR", "LAST FETCHED")
    rows: list[tuple[str, ...]] = [header]
    notes: list[str] = []
    for account, snapshot in snapshots.items():
        if snapshot.account_error is not None:
            notes.append(
                f"account {account}: the Sendcloud API could not be read ({snapshot.account_error})"
            )
        for integration_id, observation in sorted(snapshot.integrations.items()):
            rows.append((account, str(integration_id), *status_columns(observation, now)))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join(lines + notes)


def status_columns(observation: Observation, now: datetime) -> tuple[str, ...]:
    """SHOP, TYPE, STATUS, FAILING FOR, LAST FETCHED of one integration."""
    record, health, at = observation.record, observation.health, observation.values_at(now)
    status = observation.state.value
    if record is None or health is None or at is None:
        return (_clip(record.shop_name if record else None, 40), "", status, "-", "-")
    failing_for = _ago(health.failing_seconds_at(at)) if health.failing else "-"
    fetched = "never"
    if record.last_fetched_at is not None:
        fetched = _ago(max(0.0, (now - record.last_fetched_at).total_seconds())) + " ago"
    return (_clip(record.shop_name, 40), record.type or "", status, failing_for, fetched)


def _ago(seconds: float) -> str:
    return str(timedelta(seconds=int(seconds)))


def _clip(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
