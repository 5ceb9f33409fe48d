"""The ``integration-monitor`` command: run, check, demo, validate-config, report, notify-test,
routes, mute, unmute, mutes, simulator."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import getpass
import json
import logging
import os
import signal
import socket
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

import structlog
import yaml
from pydantic import SecretStr

from monitor import __version__, logs
from monitor.checks import Assessor
from monitor.config_errors import ConfigError
from monitor.daemon import Daemon, HistoryInUse, Loader, open_pollers, receivers
from monitor.exporter.metrics import Metrics
from monitor.exporter.status import Row, Status, duration, summary_counts
from monitor.exporter.status import build as build_status
from monitor.exporter.webconfig import WebConfig, load_web_config
from monitor.health import State, utcnow
from monitor.history import HistoryError, HistoryStore, MuteStore
from monitor.history.report import FORMATS, UnknownAccount
from monitor.history.report import build as build_report
from monitor.history.report import render as render_report
from monitor.notify.messages import trial_message
from monitor.notify.quiet import Mute, parse_duration
from monitor.notify.routes import parse_labels
from monitor.sendcloud import SendcloudClient
from monitor.settings import (
    AccountConfig,
    AlertingSettings,
    Defaults,
    HistorySettings,
    ProbeSettings,
    ReceiverConfig,
    Settings,
    config_file_from,
    load_settings,
    masked_dump,
    parse_listen_address,
    read_settings,
)
from monitor.store import AccountSnapshot, Store
from monitor.survey import findings_once

EXIT_OK, EXIT_STALE, EXIT_FAILING, EXIT_UNREADABLE = 0, 1, 2, 3
EXIT_CONFIG = 2
EXIT_RUNTIME = 1
#: Where ``demo`` listens unless told otherwise.
DEMO_LISTEN = "127.0.0.1:9877"

log = structlog.get_logger(__name__)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, extra = parser.parse_known_args(argv)
    if (
        extra
        and getattr(args, "labels", None) is not None
        and not any(e.startswith("-") for e in extra)
    ):
        # ``routes test --config F a=b``: argparse leaves positionals after an option unread
        args.labels += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
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

    shard_help = (
        "i/n: poll only the accounts whose name hashes to i of n replicas "
        "(or MONITOR_SHARD; ordinal/n takes i from a StatefulSet pod name)"
    )
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
        command(name, help_text, handler)
    notify_test = command(
        "notify-test",
        "send a clearly marked test message through every receiver (or one); exit 0 only if "
        "all succeeded",
        _notify_test,
    )
    notify_test.add_argument("--receiver", metavar="NAME", help="only this receiver")
    routes = command(
        "routes",
        "show the route tree, or test which receivers an alert with these labels reaches",
        _routes,
    )
    routes.add_argument("action", choices=("show", "test"))
    routes.add_argument(
        "labels",
        nargs="*",
        metavar="LABEL=VALUE",
        help="e.g. alert=IntegrationFailing account=acme-nl",
    )
    history_help = (
        "the history file the daemon writes (default: the configuration's history.path, or "
        "history.db beside alerting.state_file; MONITOR_HISTORY_FILE, MONITOR_STATE_FILE)"
    )
    mute = command(
        "mute",
        "hold the notifications of an account, one of its integrations or a type of them "
        "(the running daemon applies it within a second)",
        _mute,
    )
    mute.add_argument("--account", required=True, help="the account's name")
    which = mute.add_mutually_exclusive_group()
    which.add_argument("--integration", type=int, metavar="ID", help="only this integration")
    which.add_argument("--type", metavar="TYPE", help="only integrations of this type")
    mute.add_argument(
        "--for", dest="duration", required=True, metavar="DURATION", help="e.g. 30m, 2h, 1d"
    )
    mute.add_argument("--reason", required=True, help="why: shown on the status page")
    mute.add_argument(
        "--force",
        action="store_true",
        help="write the mute even though another shard polls the account",
    )
    unmute = command("unmute", "end a mute now (by its ID, or every mute of an account)", _unmute)
    unmute.add_argument("id", nargs="?", help="the mute's ID (from `mutes`)")
    unmute.add_argument("--account", help="every active mute of this account")
    mutes = command("mutes", "list the mutes in force", _mutes)
    mutes.add_argument("--output", choices=("table", "json"), default="table")
    for sub in (mute, unmute, mutes):
        sub.add_argument("--history", metavar="PATH", help=history_help)
    check = commands.choices["check"]
    check.add_argument(
        "--output",
        choices=("table", "json", "nagios"),
        default="table",
        help="table for people (colours on a terminal unless NO_COLOR is set), json for "
        "scripts, nagios for one status line with performance data",
    )
    check.add_argument(
        "--only-problems", action="store_true", help="leave healthy integrations out"
    )
    commands.choices["run"].add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="PATH",
        help="TLS and basic auth for the HTTP endpoints, in the Prometheus exporter-toolkit "
        "format (or MONITOR_WEB_CONFIG_FILE)",
    )
    demo = command("demo", "run the daemon against the built-in Sendcloud simulator", _demo)
    demo.add_argument(
        "--listen",
        help=f"metrics address, host:port (or MONITOR_LISTEN_ADDRESS; default {DEMO_LISTEN})",
    )
    demo.add_argument("--interval", type=float, default=5.0, help="poll interval in seconds")
    report = command(
        "report",
        "an account's availability and incidents over a month or a window, from the history "
        "file (also while the daemon runs)",
        _report,
    )
    report.add_argument("--account", required=True, help="the account's name")
    report.add_argument("--month", metavar="YYYY-MM", help="a calendar month (UTC)")
    report.add_argument("--from", dest="since", metavar="TIME", help="RFC 3339 start")
    report.add_argument("--to", dest="until", metavar="TIME", help="RFC 3339 end (default: now)")
    report.add_argument("--format", choices=FORMATS, default="md", help="default: md")
    report.add_argument("--history", metavar="PATH", help=history_help)
    sim = command("simulator", "serve the Sendcloud API simulator with the demo data", _simulator)
    sim.add_argument("--listen", default="127.0.0.1:8080", help="address (host:port)")
    # every command that reads the configuration reads it as ``run`` does: the same file,
    # the same environment (a mute or a report goes to the history file the daemon writes)
    for name in CONFIGURED:
        commands.choices[name].add_argument(
            "--config", metavar="PATH", help="YAML configuration file (or MONITOR_CONFIG_FILE)"
        )
    for name in ("run", "check", "validate-config", "mute"):
        commands.choices[name].add_argument("--shard", metavar="I/N", help=shard_help)
    return parser


#: The commands that read the configuration (all but ``demo`` and ``simulator``).
CONFIGURED = (
    "run",
    "check",
    "validate-config",
    "notify-test",
    "routes",
    "mute",
    "unmute",
    "mutes",
    "report",
)


def _history_path(
    args: argparse.Namespace, settings: Settings, *, before_first_start: bool = False
) -> Path:
    """The history file the daemon with this configuration writes: --history, else the
    configuration's (and environment's) ``history.path``, else history.db beside
    ``alerting.state_file``. It must exist: a mistyped path never becomes a new, empty file
    that no daemon reads. ``before_first_start`` (a mute made before the daemon first ran
    with this configuration): the configuration's file may be made, in its directory if that
    exists — never a path given by hand."""
    if args.history:
        path: Path | None = Path(args.history)
        origin = "--history"
    else:
        path = settings.history.resolved_path(settings.alerting.state_file)
        origin = "history.path (or history.db beside alerting.state_file)"
    if path is None:
        raise ConfigError(
            "no history file: give --history PATH, or the configuration the daemon runs with "
            "(--config, MONITOR_CONFIG_FILE; history.path or alerting.state_file, "
            "MONITOR_HISTORY_FILE or MONITOR_STATE_FILE)"
        )
    if before_first_start and not args.history and path.parent.is_dir():
        return path  # the daemon's own file, made now in the directory it will use
    if not path.is_file():
        raise ConfigError(
            f"no history file {path} (from {origin}): the daemon creates it when it starts "
            "with this configuration; check the path and --config"
        )
    return path


def _report(args: argparse.Namespace) -> int:
    path = _history_path(args, _read(args))
    now = utcnow()
    since, until = _report_window(args, now)
    try:
        document = build_report(HistoryStore(path), args.account, since, until, now)
    except UnknownAccount as exc:  # a typo, not an empty report
        print(f"integration-monitor: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except HistoryError as exc:
        print(f"integration-monitor: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    sys.stdout.write(render_report(document, args.format))
    return EXIT_OK


def _report_window(args: argparse.Namespace, now: datetime) -> tuple[datetime, datetime]:
    """--month YYYY-MM, or --from/--to; a clear ConfigError for anything else."""
    if args.month:
        if args.since or args.until:
            raise ConfigError("give either --month or --from/--to, not both")
        try:
            first = datetime.strptime(args.month, "%Y-%m").replace(tzinfo=UTC)
        except ValueError:
            raise ConfigError(
                f"--month must be YYYY-MM, e.g. 2026-11 (got {args.month!r})"
            ) from None
        following = (first + timedelta(days=32)).replace(day=1)
        return first, following
    if not args.since:
        raise ConfigError("give --month YYYY-MM or --from TIME [--to TIME]")
    bounds = []
    for name, value in (("--from", args.since), ("--to", args.until)):
        if value is None:
            bounds.append(now)
            continue
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ConfigError(f"{name} must be an RFC 3339 time (got {value!r})") from None
        if parsed.tzinfo is None:
            raise ConfigError(f"{name} needs an offset, e.g. Z or +01:00 (got {value!r})")
        bounds.append(parsed)
    if bounds[0] >= bounds[1]:
        raise ConfigError("--from must be before --to")
    return bounds[0], bounds[1]


def _load(args: argparse.Namespace) -> tuple[Settings, list[AccountConfig]]:
    """The configuration as ``run`` reads it, resolved: credentials needed, files read."""
    environ = _environ(args)
    return load_settings(config_file_from(args.config, environ), environ)


def _read(args: argparse.Namespace) -> Settings:
    """The same configuration, validated but not resolved: for the commands that need no
    API credentials (``routes``, ``mute``, ``report``, ...)."""
    environ = _environ(args)
    return read_settings(config_file_from(args.config, environ), environ)


def _environ(args: argparse.Namespace) -> dict[str, str]:
    environ = dict(os.environ)
    if getattr(args, "shard", None):
        environ["MONITOR_SHARD"] = args.shard
    shard = environ.get("MONITOR_SHARD", "")
    if shard.startswith("ordinal/"):  # a StatefulSet pod: its ordinal is its shard
        environ["MONITOR_SHARD"] = f"{_ordinal(socket.gethostname())}/{shard.split('/', 1)[1]}"
    return environ


def _ordinal(hostname: str) -> str:
    """The ordinal of a StatefulSet pod name (``monitor-2`` is 2)."""
    suffix = hostname.rsplit("-", 1)[-1]
    if not suffix.isdigit():
        raise ConfigError(
            f"MONITOR_SHARD=ordinal/n needs a StatefulSet pod name ending in -N, not {hostname!r}"
        )
    return suffix


def _run(args: argparse.Namespace) -> int:
    settings, accounts = _load(args)
    web = _web_config(args)
    logs.configure(
        settings.log_format, level=_level(settings.log_level), secrets=settings.secrets()
    )
    listen = parse_listen_address(settings.listen_address)
    return _serve(
        accounts,
        listen,
        settings.alerting,
        web,
        loader=lambda: _load(args),
        shard=settings.shard,
        history=settings.history,
        badge_secret=settings.badges.resolved_secret(),
        settings=settings,
        probes=settings.probes,
    )


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
    *,
    loader: Loader | None = None,
    shard: str | None = None,
    history: HistorySettings | None = None,
    badge_secret: SecretStr | None = None,
    settings: Settings | None = None,
    probes: ProbeSettings | None = None,
) -> int:
    try:
        daemon = Daemon(
            accounts,
            listen,
            alerting=alerting,
            web_config=web,
            loader=loader,
            shard=shard,
            history=history,
            badge_secret=badge_secret,
            settings=settings,
            probes=probes,
        )
    except OSError as exc:
        log.error("cannot_listen", address=f"{listen[0]}:{listen[1]}", error=exc.strerror)
        return EXIT_RUNTIME
    settle_garbage_collector()
    try:
        asyncio.run(_until_signal(daemon))
    except HistoryInUse:  # said in one error line; nothing started
        return EXIT_RUNTIME
    return EXIT_OK


def settle_garbage_collector() -> None:
    """Before the daemon runs: what exists now (modules, classes, the configuration) lives as
    long as the process, so it moves out of the cyclic collector's way (``gc.freeze``): full
    collections no longer walk every object imported at start (at 500 accounts, 0.30 -> 0.10 s
    of full collections in the first 150 s). Cyclic garbage is still collected."""
    gc.collect()
    gc.freeze()


async def _until_signal(daemon: Daemon) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, _stopper(stop, signum))
    reloads: set[asyncio.Task[tuple[bool, str]]] = set()

    def reload() -> None:
        log.info("reload_requested", signal="SIGHUP")
        task = asyncio.ensure_future(daemon.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, reload)
    await daemon.run(stop)


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def handler() -> None:
        log.info("shutdown_requested", signal=signal.Signals(signum).name)
        stop.set()

    return handler


def _demo(args: argparse.Namespace) -> int:
    # the simulator is only for these two commands: the daemon never loads it
    from monitor.simulator import DEMO_PUBLIC_KEY, DEMO_SECRET_KEY, Simulator, demo_integrations
    from monitor.simulator.shops import ShopServer, demo_certificates

    logs.configure(
        os.environ.get("MONITOR_LOG_FORMAT") or None,
        level=_level(os.environ.get("MONITOR_LOG_LEVEL") or "info"),
    )
    address = args.listen or os.environ.get("MONITOR_LISTEN_ADDRESS") or DEMO_LISTEN
    listen = parse_listen_address(address)
    # MONITOR_STATE_FILE keeps the demo's open alerts, its history (beside it) and its shop's
    # certificates in that directory (the container image sets it: a read-only root needs
    # nothing else); MONITOR_HISTORY_FILE names the history; with neither, a temporary
    # directory holds them
    state_file = os.environ.get("MONITOR_STATE_FILE") or None
    named = os.environ.get("MONITOR_HISTORY_FILE") or None
    alerting = AlertingSettings(state_file=Path(state_file) if state_file else None)
    with contextlib.ExitStack() as stack:
        history: HistorySettings | None = HistorySettings(path=Path(named) if named else None)
        work = Path(state_file).parent if state_file else _demo_scratch(stack)
        if not state_file and not named:
            history = HistorySettings(path=work / "history.db") if work is not None else None
        # a shop on loopback whose certificate (from a CA of the demo's own) expires in 4 days
        probes = ProbeSettings(enabled=False)
        shop_url = None
        if work is not None:
            certificates = demo_certificates(work / "demo-shop-tls", days_left=4)
            shop = ShopServer("tls", certificates.server_context()).start()
            stack.callback(shop.stop)
            shop_url = shop.url
            # the demo's shop is on loopback, its CA the demo's own
            probes = ProbeSettings(allow_private_addresses=True, ca_file=certificates.ca_file)
        integrations = (
            demo_integrations(utcnow(), shop_url) if shop_url else demo_integrations(utcnow())
        )
        sim = stack.enter_context(Simulator(integrations))
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
            metrics=f"http://{address.replace('0.0.0.0', 'localhost')}/metrics",
            state_file=state_file,
            history_file=str(history.resolved_path(alerting.state_file)) if history else None,
            expiring_shop=shop_url,
        )
        return _serve([account], listen, alerting, history=history, probes=probes)


def _demo_scratch(stack: contextlib.ExitStack) -> Path | None:
    """A temporary directory for the demo's history and its shop's certificates (removed when
    it stops), or none when none can be made (a read-only root without a writable /tmp): said
    in one line, naming what to set; the demo then runs without a history and without its
    expiring shop."""
    try:
        directory = stack.enter_context(
            tempfile.TemporaryDirectory(prefix="integration-monitor-demo-")
        )
    except OSError as exc:
        log.warning(
            "demo_without_history",
            reason=f"no writable temporary directory ({exc.strerror or exc})",
            hint="set MONITOR_STATE_FILE to a file in a writable directory (the open alerts, "
            "the history and the demo shop's certificates are kept there) or TMPDIR to a "
            "writable directory",
        )
        return None
    return Path(directory)


def _simulator(args: argparse.Namespace) -> int:
    from monitor.simulator import DEMO_PUBLIC_KEY, Simulator, demo_integrations

    logs.configure(None)
    host, port = parse_listen_address(args.listen)
    try:
        sim = Simulator(demo_integrations(utcnow()), host=host, port=port)
    except OSError as exc:  # one line, as ``run`` says it: the port is taken, or not ours
        log.error("cannot_listen", address=args.listen, error=exc.strerror or str(exc))
        return EXIT_RUNTIME
    # what to point SENDCLOUD_API_URL and SENDCLOUD_OAUTH2_TOKEN_URL at (a field named like a
    # credential, "token_url", would be masked)
    log.info("simulator_started", url=sim.url, oauth2_url=sim.token_url, public_key=DEMO_PUBLIC_KEY)
    # SIGTERM (``kill``, a container stop) ends it as Ctrl-C does: exit 0
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        sim.serve_forever()
    finally:
        sim.stop()
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    settings, _ = _load(args)
    settings.alerting.resolved_outbound()  # their URL files readable, their URLs usable
    print(yaml.safe_dump(masked_dump(settings), sort_keys=False, allow_unicode=True), end="")
    if settings.alerting.receivers:  # the route tree, as comments: the output stays YAML
        print(
            "".join(f"# {line}\n" for line in settings.alerting.route_tree().render().splitlines()),
            end="",
        )
    return EXIT_OK


def _mute(args: argparse.Namespace) -> int:
    settings = _read(args)
    problem = settings.mute_problem(args.account, args.integration, force=args.force)
    if problem is not None:
        raise ConfigError(f"refusing the mute: {problem}")
    store = MuteStore(_history_path(args, settings, before_first_start=True))
    now = utcnow()
    try:
        until = now + parse_duration(args.duration)
        mute = store.add(
            account=args.account,
            integration_id=args.integration,
            integration_type=args.type,
            until=until,
            reason=args.reason,
            author=_who(),
            now=now,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    except HistoryError as exc:
        print(f"integration-monitor: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    _audit("mute_created", mute.to_json())
    print(f"{mute.id}: {_mute_line(mute)}")
    return EXIT_OK


def _unmute(args: argparse.Namespace) -> int:
    store = MuteStore(_history_path(args, _read(args)))
    now = utcnow()
    try:
        if args.id:
            removed = [m for m in [store.remove(args.id, now)] if m is not None]
        elif args.account:
            removed = [
                m
                for m in store.active(now)
                if m.account == args.account and store.remove(m.id, now) is not None
            ]
        else:
            raise ConfigError("give a mute ID or --account NAME")
    except HistoryError as exc:
        print(f"integration-monitor: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if not removed:
        print("integration-monitor: no such active mute", file=sys.stderr)
        return EXIT_RUNTIME
    for mute in removed:
        _audit("mute_removed", mute.to_json())
        print(f"{mute.id}: ended ({_mute_line(mute)})")
    return EXIT_OK


def _mutes(args: argparse.Namespace) -> int:
    try:
        active = MuteStore(_history_path(args, _read(args))).active(utcnow())
    except HistoryError as exc:
        print(f"integration-monitor: {exc}", file=sys.stderr)
        return EXIT_RUNTIME
    if args.output == "json":
        print(json.dumps({"mutes": [m.to_json() for m in active]}, indent=1))
    else:
        for mute in active:
            print(f"{mute.id}: {_mute_line(mute)}")
    return EXIT_OK


def _mute_line(mute: Mute) -> str:
    what = mute.account
    if mute.integration_id is not None:
        what += f" integration {mute.integration_id}"
    if mute.integration_type is not None:
        what += f" {mute.integration_type} integrations"
    until = mute.until.isoformat(timespec="minutes").replace("+00:00", "Z")
    return f"{what} muted by {mute.author} until {until}: {mute.reason}"


def _who() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def _audit(event: str, fields: Mapping[str, object]) -> None:
    """One JSON audit line on stderr (who changed which mute), as the daemon's log does."""
    print(json.dumps({"event": event, "user": _who(), "via": "cli", **fields}), file=sys.stderr)


def _notify_test(args: argparse.Namespace) -> int:
    settings = _read(args)  # the receivers only: no API credentials needed
    logs.configure(settings.log_format, stream=sys.stderr, secrets=settings.outbound_secrets())
    configs = settings.alerting.resolved_receivers()
    if args.receiver is not None:
        configs = [r for r in configs if r.name == args.receiver]
    if not configs:
        known = ", ".join(r.name for r in settings.alerting.receivers) or "none"
        raise ConfigError(
            f"no receiver to test{f' named {args.receiver!r}' if args.receiver else ''} "
            f"(alerting.receivers defines: {known})"
        )
    results = asyncio.run(_send_trials(configs))
    for name, reason in results.items():
        print(f"{name}: ok" if reason is None else f"{name}: failed: {reason}")
    return EXIT_OK if all(r is None for r in results.values()) else EXIT_RUNTIME


async def _send_trials(configs: Sequence[ReceiverConfig]) -> dict[str, str | None]:
    metrics = Metrics(Store([]), [])
    found = receivers(configs, metrics)
    at = utcnow().isoformat(timespec="seconds").replace("+00:00", "Z")
    try:
        reasons = await asyncio.gather(
            *(r.send_now(trial_message(name, at)) for name, r in found.items())
        )
    finally:
        await asyncio.gather(*(r.aclose() for r in found.values()))
    return dict(zip(found, reasons, strict=True))


def _routes(args: argparse.Namespace) -> int:
    settings = _read(args)  # routes and receivers' names: no credentials, no secret files
    tree = settings.alerting.route_tree()
    if args.action == "show":
        print(tree.render())
        return EXIT_OK
    try:
        labels = parse_labels(args.labels)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(",".join(tree.receivers_for(labels)) or "(nobody)")
    for route in tree.routes_for(labels):
        print(f"# {route.key}: {route.matchers.describe()}", file=sys.stderr)
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    settings, accounts = _load(args)
    logs.configure(settings.log_format, stream=sys.stderr, secrets=settings.secrets())
    snapshots = asyncio.run(_poll_once(accounts, settings.probes))
    status = build_status(
        snapshots, utcnow(), certificate_warning_days=settings.probes.certificate_warning_days
    )
    print(render_check(status, args.output, only_problems=args.only_problems, color=_color()))
    return check_exit_code(status)


def _color() -> bool:
    """Colours for people at a terminal, never for pipes, and never with NO_COLOR set."""
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


async def _poll_once(
    accounts: list[AccountConfig], probes: ProbeSettings | None = None
) -> Mapping[str, AccountSnapshot]:
    """One poll of each account, its configuration checks, and (probes on) one probe of each
    shop and one read of each status mapping."""
    probes = probes or ProbeSettings()
    configs = {a.name: a for a in accounts}
    assessor = Assessor(
        ignored=lambda account, integration_id: configs[account].ignored(integration_id),
        mapping_types=frozenset(probes.status_mapping_types),
    )
    store = Store([a.name for a in accounts], assess=assessor)
    metrics = Metrics(store, [a.name for a in accounts])
    async with open_pollers(accounts, store, metrics) as pollers:
        await asyncio.gather(*(p.poll() for p in pollers))
        if probes.enabled:
            clients = {
                p.account.name: (p.account, cast(SendcloudClient, p.client)) for p in pollers
            }
            await findings_once(store, assessor, clients, probes, utcnow)
    return store.snapshots()


def check_exit_code(status: Status) -> int:
    """Nagios: failing or not found 2 (CRITICAL) beats unreadable 3 (UNKNOWN) beats stale, an
    expiring shop certificate or a failed configuration check 1 (WARNING) beats 0 (OK)."""
    states = {row.state for row in status.integrations}
    if states & {State.FAILING, State.NOT_FOUND}:
        return EXIT_FAILING
    unreadable = any(row.unreadable_since is not None for row in status.integrations)
    if State.UNKNOWN in states or unreadable or any(a.api_error for a in status.accounts):
        return EXIT_UNREADABLE
    warned = any(row.warned for row in status.integrations)
    return EXIT_STALE if State.STALE in states or warned else EXIT_OK


NAGIOS_STATES = {
    EXIT_OK: "OK",
    EXIT_STALE: "WARNING",
    EXIT_FAILING: "CRITICAL",
    EXIT_UNREADABLE: "UNKNOWN",
}
_COLORS = {"failing": "31", "not_found": "35", "stale": "33", "unknown": "90", "healthy": "32"}


def render_check(status: Status, output: str, *, only_problems: bool, color: bool) -> str:
    """``check``'s output: a table (people), JSON (scripts) or one Nagios line."""
    rows = [r for r in status.integrations if r.problem or not only_problems]
    if output == "json":
        document = status.to_json()
        document["integrations"] = [
            i for i in document["integrations"] if i["state"] != "healthy" or not only_problems
        ]
        document["exit_code"] = check_exit_code(status)
        return json.dumps(document, indent=2)
    if output == "nagios":
        return nagios_line(status)
    return format_table(status, rows, color=color)


def nagios_line(status: Status) -> str:
    """``SENDCLOUD CRITICAL - 2 failing, 1 stale ... | failing=2;;;0 ...`` (perfdata after |)."""
    code = check_exit_code(status)
    counts = summary_counts(status.integrations)
    text = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in counts.items() if n)
    errors = [f"{a.name}: {a.api_error}" for a in status.accounts if a.api_error]
    if errors:
        text += ("; " if text else "") + "API unreadable (" + ", ".join(errors) + ")"
    expiring = sum(row.certificate_expiring for row in status.integrations)
    misconfigured = sum(bool(row.failed_checks) for row in status.integrations)
    for count, what in ((expiring, "certificate expiring"), (misconfigured, "misconfigured")):
        if count:
            text += ("; " if text else "") + f"{count} {what}"
    longest = max((r.failing_seconds or 0.0 for r in status.integrations), default=0.0)
    perfdata = [f"{state}={n};;;0" for state, n in counts.items()]
    perfdata.append(f"longest_failing={longest:.0f}s;;;0")
    return f"SENDCLOUD {NAGIOS_STATES[code]} - {text or 'no integrations'} | " + " ".join(perfdata)


def format_table(status: Status, rows: list[Row], *, color: bool = False) -> str:
    header = ("ACCOUNT", "ID", "SHOP", "TYPE", "STATUS", "FAILING FOR", "LAST FETCHED")
    now = datetime.fromisoformat(status.generated_at.replace("Z", "+00:00"))
    table: list[tuple[str, ...]] = [header]
    for row in rows:
        fetched = "never"
        if row.last_fetched_at is not None:
            moment = datetime.fromisoformat(row.last_fetched_at.replace("Z", "+00:00"))
            fetched = duration(max(0.0, (now - moment).total_seconds())) + " ago"
        table.append(
            (
                row.account,
                str(row.integration_id),
                _clip(row.shop_name, 40),
                row.integration_type or "",
                row.state + (" (unreadable)" if row.unreadable_since is not None else ""),
                duration(row.failing_seconds),
                fetched,
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for line in table:
        cells = [cell.ljust(w) for cell, w in zip(line, widths, strict=True)]
        state = line[4].split(" ")[0]
        if color and line is not header and state in _COLORS:
            cells[4] = f"\033[{_COLORS[state]}m{cells[4]}\033[0m"
        lines.append("  ".join(cells).rstrip())
    notes = [
        f"account {a.name}: the Sendcloud API could not be read ({a.api_error})"
        for a in status.accounts
        if a.api_error
    ]
    notes += [  # what makes a row a WARNING besides being stale: in words
        f"{row.account} #{row.integration_id}: {text}"
        for row in rows
        if row.warned
        for text in row.findings
    ]
    return "\n".join(lines + notes)


def _clip(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"
