"""What README.md and docs/*.md state about the code is the code's: every path and link, alert,
environment variable, metric and label, log event, command and flag they name exists, and the
numbers they state (defaults, thresholds, limits, counts) are read from the code here."""

from __future__ import annotations

import importlib
import re
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from monitor import cli
from monitor.alerting.rules import ALERTS, AlertKey, fingerprint
from monitor.settings import (
    CONFIG_FILE_ENV,
    ENV_VARS,
    AccountSettings,
    AlertingSettings,
    AlertmanagerSettings,
    BadgeSettings,
    ChecksSettings,
    Defaults,
    HistorySettings,
    MaintenanceSettings,
    MatchSettings,
    ProbeSettings,
    ReceiverSettings,
    RouteSettings,
    Settings,
    WebhookSettings,
)
from tests.docs_pages import ROOT, inline_code, page_name, pages, prose
from tests.test_docs import exported_metrics

PAGES = {page_name(path): path for path in pages()}
TEXT = {name: path.read_text(encoding="utf-8") for name, path in PAGES.items()}
SOURCE = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "monitor").rglob("*.py"))
SHIPPED_RULES = yaml.safe_load((ROOT / "deploy/prometheus/rules.yml").read_text())
SHIPPED_ALERTS = [
    rule["alert"] for group in SHIPPED_RULES["groups"] for rule in group["rules"] if "alert" in rule
]


def everywhere() -> Iterator[tuple[str, str]]:
    yield from TEXT.items()


# -- paths and links -----------------------------------------------------------------------------

_PATH = re.compile(
    r"(?<![\w/.~$-])((?:monitor|tests|deploy|config|docs|bench|\.ci)/[\w./-]*[\w/]"
    r"|Makefile|Dockerfile|pyproject\.toml)(?:::(\w+))?"
)


def test_every_path_the_docs_name_exists() -> None:
    missing = []
    for page, text in everywhere():
        for path, test_name in _PATH.findall(text):
            target = ROOT / path
            if not target.exists():
                missing.append(f"{page}: {path}")
            elif test_name and not re.search(
                rf"^\s*(?:async )?def {test_name}\(", target.read_text(), re.M
            ):
                missing.append(f"{page}: {path}::{test_name}")
    assert not missing, missing


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*$", prose(path), re.M)}


def test_every_link_and_anchor_resolves() -> None:
    broken = []
    for page, path in PAGES.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", prose(path)):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{page}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{page}: {target} (no such heading)")
    assert not broken, broken


# -- alerts ----------------------------------------------------------------------------------


def test_every_alert_the_docs_name_exists() -> None:
    """The shipped rules' alerts, the daemon's, and the critical twin it sends Alertmanager."""
    sinks = (ROOT / "monitor/notify/sinks.py").read_text()
    known = set(SHIPPED_ALERTS) | set(ALERTS) | set(re.findall(r'"(Integration\w+)"', sinks))
    unknown = {
        f"{page}: {name}"
        for page, text in everywhere()
        for name in re.findall(r"\b(?:Sendcloud|Integration)[A-Z][A-Za-z]+\b", text)
        if name not in known
    }
    assert not unknown, sorted(unknown)


def test_the_operations_page_lists_every_shipped_rule() -> None:
    [row] = [
        line
        for line in TEXT["docs/operations.md"].splitlines()
        if line.startswith("| `deploy/prometheus/rules.yml`")
    ]
    listed: list[str] = []
    for name in re.findall(r"`(…?\w+)`", row.split("|")[2]):
        if name.startswith("…"):  # the previous name's prefix, e.g. …FetchStale
            prefix = re.match(r"[A-Z][a-z]+[A-Z][a-z]+", listed[-1])
            assert prefix is not None
            name = prefix[0] + name[1:]
        listed.append(name)
    assert sorted(listed) == sorted(set(SHIPPED_ALERTS))  # a name with two severities: once


NUMBER_WORDS = re.findall(
    r"\w+",
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty",
)


def test_the_number_of_shipped_alerts() -> None:
    [count] = re.findall(r"ships (\w+) alerts", TEXT["docs/metrics.md"])
    assert NUMBER_WORDS.index(count) == len(SHIPPED_ALERTS)


def test_every_alert_has_a_runbook_section_and_an_alerts_entry() -> None:
    runbook = anchors(PAGES["docs/runbook.md"])
    for name in [*SHIPPED_ALERTS, *ALERTS]:
        assert name.lower() in runbook, name
    for name in ALERTS:
        assert f"| `{name}` |" in TEXT["docs/alerts.md"], name


# -- environment variables, commands and flags ----------------------------------------------------


def test_every_environment_variable_the_docs_name_is_read() -> None:
    read = set(ENV_VARS) | {CONFIG_FILE_ENV}
    read |= set(re.findall(r'"((?:MONITOR|SENDCLOUD)_[A-Z0-9_]+)"', SOURCE))
    named = {
        f"{page}: {name}"
        for page, text in everywhere()
        for name in re.findall(r"\b(?:MONITOR|SENDCLOUD)_[A-Z][A-Z0-9_]*\b", text)
        if name not in read
    }
    assert not named, sorted(named)


PARSER = cli._parser()
SUBCOMMANDS: dict[str, Any] = next(
    action.choices
    for action in PARSER._actions
    if isinstance(getattr(action, "choices", None), dict)
)


def options(command: str | None) -> set[str]:
    parser = PARSER if command is None else SUBCOMMANDS[command]
    return {flag for action in parser._actions for flag in action.option_strings}


def test_the_command_table_lists_every_command() -> None:
    table = TEXT["docs/configuration.md"].split("## Commands", 1)[1].split("\n\n", 2)[1]
    listed = set()
    for row in table.splitlines()[2:]:
        for span in re.findall(r"`([^`]+)`", row.split(" | ")[0]):
            words = span.split()
            word = words[1] if words[0] == "integration-monitor" else words[0]
            if not word.startswith("-"):
                listed.add(word)
    assert listed == set(SUBCOMMANDS)


def test_the_commands_that_read_the_configuration() -> None:
    sentence = re.search(
        r"Every command that reads the configuration — (.*?) — reads it",
        TEXT["docs/configuration.md"],
        re.S,
    )
    assert sentence is not None
    assert re.findall(r"`([\w-]+)`", sentence[1]) == list(cli.CONFIGURED)


def test_every_command_and_flag_the_docs_show_exists() -> None:
    """Inline ``integration-monitor ...`` spans (fenced commands are run by test_docs_run)."""
    wrong = []
    for page, path in PAGES.items():
        for span in inline_code(path):
            if not span.startswith("integration-monitor"):
                continue
            words = span.split()
            command = words[1] if len(words) > 1 and not words[1].startswith("-") else None
            if command is not None and command not in SUBCOMMANDS:
                wrong.append(f"{page}: {span} (no command {command})")
                continue
            known = options(command) | options(None)
            for flag in re.findall(r"(?<![\w-])(--[a-z][\w.-]*)", span):
                if flag not in known:
                    wrong.append(f"{page}: {span} ({flag})")
    assert not wrong, wrong


# -- metrics, labels and log events -------------------------------------------------------------


def test_every_metric_and_label_the_docs_name_exists() -> None:
    """A name with labels (``x{a,b}``) is an exported series with those labels; a name without
    is an exported series or a name the code uses (a log event, a label, a field)."""
    labels: dict[str, set[str]] = {}
    for family in exported_metrics():
        labels.setdefault(family.name, set())
        for sample in family.samples:
            labels.setdefault(sample.name, set()).update(sample.labels)
            labels[family.name].update(sample.labels)
    # series the scrape above has no sample of: the labels the metrics table gives them
    for name, documented in re.findall(r"^\| `(\w+)\{([\w,]+)\}`", TEXT["docs/metrics.md"], re.M):
        if (name in labels and not labels[name]) or name not in labels:
            family = re.sub(r"_total$", "", name)
            if family in labels and not labels[family]:
                labels[name] = labels[family] = set(documented.split(","))
    wrong = set()
    for page, path in PAGES.items():
        for span in inline_code(path):
            found = re.fullmatch(r"((?:integration|sendcloud)_[a-z_]+)(?:\{([^}]*)\})?.*", span)
            if found is None:
                continue
            name, selector = found[1], found[2]
            if selector is not None:
                named = {part.split("=")[0].strip() for part in selector.split(",") if part}
                if name not in labels or not named <= labels[name] | {"account"}:
                    wrong.add(f"{page}: {span}")
            elif name not in labels and not re.search(rf"\b{name}\b", SOURCE):
                wrong.add(f"{page}: {span}")
    assert not wrong, sorted(wrong)


def test_every_documented_log_event_is_logged() -> None:
    table = TEXT["docs/metrics.md"].split("| Event | Level | When | Fields |", 1)[1]
    table = table.split("\n\n", 1)[0]
    events = {
        event
        for row in table.splitlines()[2:]
        for event in re.findall(r"`(\w+)`", row.split(" | ")[0])
    }
    assert events
    silent = sorted(e for e in events if f'"{e}"' not in SOURCE)
    assert not silent, silent


# -- defaults -----------------------------------------------------------------------------------

MODELS: dict[str, type[BaseModel]] = {
    "": AlertingSettings,
    "webhooks[].": WebhookSettings,
    "alertmanager.": AlertmanagerSettings,
    "receivers[].": ReceiverSettings,
    "routes[].": RouteSettings,
    "routes[].match.": MatchSettings,
    "maintenance[].": MaintenanceSettings,
    "history.": HistorySettings,
    "badges.": BadgeSettings,
    "probes.": ProbeSettings,
    "checks.": ChecksSettings,
    "defaults.": Defaults,
}
#: Every model whose fields a page may name on their own (``group_wait_seconds``).
ALL_MODELS = (
    Settings,
    Defaults,
    AccountSettings,
    AlertingSettings,
    WebhookSettings,
    AlertmanagerSettings,
    ReceiverSettings,
    HistorySettings,
    BadgeSettings,
    ChecksSettings,
    ProbeSettings,
)
UNITS = {
    "": 1.0,
    "s": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "min": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
    "polls": 1.0,
}


def quantity(text: str) -> float:
    """``15 minutes`` in seconds, ``an hour``, ``two hours and a quarter``, ``2 000``, ``5``."""
    text = text.strip()
    quarter = text.endswith(" and a quarter")
    text = text.removesuffix(" and a quarter")
    found = re.fullmatch(r"(\d[\d ]*(?:\.\d+)?|[a-z]+)\s*([a-zA-Z]*)", text)
    assert found is not None, text
    number, unit = found[1], found[2]
    if number in UNITS and not unit:  # "every minute"
        number, unit = "1", number
    value = (
        float(number.replace(" ", ""))
        if number[0].isdigit()
        else {"a": 1, "an": 1}.get(number) or float(NUMBER_WORDS.index(number))
    )
    if unit in ("KiB", "MB", "MiB"):
        return value * {"KiB": 1024, "MB": 1024**2, "MiB": 1024**2}[unit]
    scale = UNITS[unit]
    return (value + (0.25 if quarter else 0)) * scale


def default_of(model: type[BaseModel], name: str) -> Any:
    info: FieldInfo = model.model_fields[name]
    if info.default_factory is not None:
        return info.default_factory()  # type: ignore[call-arg]
    return info.default


def named_field(model: type[BaseModel], name: str) -> str | None:
    """The field a key of the YAML names (its alias, e.g. ``continue``, or its name)."""
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias):
            return field_name
    return None


def field_named(dotted: str) -> tuple[type[BaseModel], str] | None:
    """``receivers[].timeout_seconds`` or a name one model has (None: several, or none)."""
    for prefix in sorted(MODELS, key=len, reverse=True):
        if prefix and dotted.startswith(prefix):
            found = named_field(MODELS[prefix], dotted[len(prefix) :])
            if found is not None:
                return MODELS[prefix], found
    # an account's unset value (None) is the `defaults` one: that one is the default
    owners = [
        m for m in ALL_MODELS if dotted in m.model_fields and default_of(m, dotted) is not None
    ]
    if not owners or len({repr(default_of(m, dotted)) for m in owners}) > 1:
        return None
    return owners[0], dotted


def in_unit(name: str, value: float, unit: str) -> float:
    """A quantity as the field counts it: a duration (in seconds) in days for a ``_days``
    field; a plain number as it is."""
    return value / 86400.0 if unit and name.endswith("_days") else value


_OPTION_THEN_VALUE = re.compile(
    r"`([a-z_]+(?:\[\]\.|\.)?[a-z_]*)`,?\s+(?:\(|(?=\d))(\d[\d ]*(?:\.\d+)?)\s*"
    r"(s|min|minutes|h|hours|d|days|polls)?(?=[;,)])"
)
_VALUE_THEN_OPTION = re.compile(
    r"(\d[\d ]*(?:\.\d+)?)\s*(s|min|minutes|h|hours|d|days|polls)?\s+\(`([a-z_]+)`\)"
)


def stated_defaults() -> Iterator[tuple[str, str, float, str]]:
    """(page, option, value, unit) for every "`option` (N unit)", "`option`, N unit" and
    "N unit (`option`)" in the prose."""
    for page, path in PAGES.items():
        text = prose(path).replace("\n", " ")
        for name, number, unit in _OPTION_THEN_VALUE.findall(text):
            yield page, name, quantity(f"{number} {unit}"), unit
        for number, unit, name in _VALUE_THEN_OPTION.findall(text):
            yield page, name, quantity(f"{number} {unit}"), unit


def test_defaults_stated_beside_an_option_are_its_defaults() -> None:
    wrong, checked = [], 0
    for page, name, value, unit in stated_defaults():
        found = field_named(name)
        if found is None:
            continue
        model, field_name = found
        default = default_of(model, field_name)
        checked += 1
        if not isinstance(default, int | float) or in_unit(field_name, value, unit) != default:
            wrong.append(f"{page}: `{name}` {value} (the code: {default!r})")
    assert not wrong, wrong
    assert checked >= 15  # the pattern still finds the docs' defaults


def table_rows(text: str, header: str) -> list[list[str]]:
    """The rows of every table of ``text`` under ``header``."""
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]]
        for after in text.split(header)[1:]
        for row in after.split("\n\n", 1)[0].strip().splitlines()[1:]
    ]


#: Table cells that describe a default in words, and what each means in the model.
PROSE_DEFAULTS: dict[str, Callable[[Any, FieldInfo], bool]] = {
    # unset, or a field of a block that is itself optional (alertmanager.url)
    "none": lambda default, info: default in (None, [], ()) or info.is_required(),
    "—": lambda default, info: default is None,
    # required, or one of a pair of which one is (url, url_file)
    "required": lambda default, info: info.is_required() or default is None,
    "everything": lambda default, info: default is None or default == MatchSettings(),
    "all receivers without routes; none with routes": lambda default, info: default is None,
    "system trust store": lambda default, info: default is None,
}


def same_default(cell: str, default: Any, info: FieldInfo) -> bool:
    if cell in PROSE_DEFAULTS:
        return PROSE_DEFAULTS[cell](default, info)
    value = cell.strip("`")
    if isinstance(default, bool):
        return value == str(default).lower()
    if isinstance(default, int | float):
        return float(value) == default
    if isinstance(default, list | tuple):  # `[a, b]`
        return [v.strip() for v in value.strip("[]").split(",") if v.strip()] == list(default)
    return value == str(default)


def test_the_alerting_options_table_has_the_models_defaults() -> None:
    wrong, checked = [], 0
    for cells in table_rows(TEXT["docs/alerts.md"], "| Option | Default | |"):
        for name in re.findall(r"`([^`]+)`", cells[0]):
            found = field_named(name) if "." in name or "[" in name else (AlertingSettings, name)
            assert found is not None, name
            model, field_name = found
            info = model.model_fields[field_name]
            checked += 1
            if not same_default(cells[1], default_of(model, field_name), info):
                wrong.append(f"{name}: {cells[1]} (the code: {default_of(model, field_name)!r})")
    assert not wrong, wrong
    assert checked >= 40


def settings_field(path: tuple[str, ...]) -> tuple[type[BaseModel], str]:
    model: type[BaseModel] = Settings
    for key in path[:-1]:
        annotation = model.model_fields[key].annotation
        candidates = [annotation, *typing.get_args(annotation)]
        model = next(c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel))
    return model, path[-1]


#: Variables whose documented default is worked out at start, and the check of what it says.
DERIVED_DEFAULTS: dict[str, Callable[[], bool]] = {
    # "`json` (`console` on a TTY)": the model leaves it unset; logs.configure decides
    "MONITOR_LOG_FORMAT": lambda: (
        default_of(Settings, "log_format") is None
        and "isatty" in (ROOT / "monitor/logs.py").read_text()
    ),
    # "`history.db` beside the state file"
    "MONITOR_HISTORY_FILE": lambda: (
        HistorySettings().resolved_path(Path("s/alerts.json")) == Path("s/history.db")
    ),
}


def test_the_environment_table_has_the_models_defaults_and_ranges() -> None:
    rows = table_rows(TEXT["docs/configuration.md"], "| Environment variable | Default | Meaning |")
    wrong = []
    for name, default_cell, meaning in rows:
        variable = name.strip("`")
        if variable in DERIVED_DEFAULTS:
            assert DERIVED_DEFAULTS[variable](), variable
            continue
        if variable == CONFIG_FILE_ENV or variable not in ENV_VARS:
            assert default_cell == "—", variable
            continue
        model, field_name = settings_field(ENV_VARS[variable])
        info = model.model_fields[field_name]
        if not same_default(default_cell, default_of(model, field_name), info):
            wrong.append(
                f"{variable}: {default_cell} (the code: {default_of(model, field_name)!r})"
            )
        bounds = re.search(r"\((\d+)\N{EN DASH}(\d+)\)", meaning)
        if bounds:
            limits = {type(m).__name__: m for m in info.metadata}
            low, high = getattr(limits.get("Ge"), "ge", None), getattr(limits.get("Le"), "le", None)
            if (float(bounds[1]), float(bounds[2])) != (low, high):
                wrong.append(f"{variable}: {bounds[0]} (the code: {low} to {high})")
    assert not wrong, wrong
    assert {row[0].strip("`") for row in rows} >= set(ENV_VARS)


# -- numbers stated in prose ----------------------------------------------------------------------


def const(module: str, name: str) -> Callable[[], float]:
    return lambda: float(getattr(importlib.import_module(module), name))


def model_default(model: type[BaseModel], name: str) -> Callable[[], float]:
    return lambda: float(default_of(model, name))


def alerting(name: str) -> Callable[[], float]:
    return model_default(AlertingSettings, name)


def parser_default(command: str, dest: str) -> Callable[[], float | str]:
    return lambda: next(a.default for a in SUBCOMMANDS[command]._actions if a.dest == dest)


@dataclass(frozen=True)
class Claim:
    """A phrase of a page stating a number the code decides: ``pattern``'s groups are the
    quantities (durations in seconds), ``values`` what the code says of each."""

    page: str
    pattern: str
    values: tuple[Callable[[], Any], ...]


def _sum(*parts: Callable[[], float]) -> Callable[[], float]:
    return lambda: sum(part() for part in parts)


def _shortest_badge_secret() -> float:
    """The shortest badge secret the configuration takes."""
    from monitor.config_errors import ConfigError

    for length in range(1, 65):
        try:
            BadgeSettings(secret="s" * length).resolved_secret()
        except ConfigError:
            continue
        return float(length)
    raise AssertionError("no badge secret is long enough")


def _rule_number(alert: str, pattern: str) -> Callable[[], float]:
    """A number in a shipped rule's expression."""

    def number() -> float:
        [expr] = [
            rule["expr"]
            for group in SHIPPED_RULES["groups"]
            for rule in group["rules"]
            if rule.get("alert") == alert
        ]
        found = re.search(pattern, expr)
        assert found is not None, (alert, pattern)
        return float(found[1])

    return number


def _in_source(path: str, pattern: str) -> Callable[[], float]:
    """A number written into the code (a literal with no name of its own)."""

    def number() -> float:
        found = re.search(pattern, (ROOT / path).read_text(), re.S)
        assert found is not None, (path, pattern)
        return float(found[1])

    return number


def _parameter(module: str, cls: str, name: str) -> Any:
    """The default of a constructor parameter."""
    import inspect

    target = getattr(importlib.import_module(module), cls)
    return inspect.signature(target).parameters[name].default


def _demo_scenarios(scenario: str) -> Callable[[], float]:
    def count() -> float:
        from monitor.health import utcnow
        from monitor.simulator import demo_integrations

        return float(sum(i.scenario == scenario for i in demo_integrations(utcnow())))

    return count


CLAIMS = (
    Claim(
        "README.md",
        r"a simulated Sendcloud API with a healthy, (two) failing, a stale, a never-fetched, a "
        r"flapping and a deleted integration",
        (_demo_scenarios("failing"),),
    ),
    Claim("README.md", r"polls it every (\d+) seconds", (parser_default("demo", "interval"),)),
    Claim(
        "README.md", r"<http://localhost:(\d+)/>", (lambda: float(cli.DEMO_LISTEN.split(":")[1]),)
    ),
    Claim(
        "README.md",
        r"once it has been failing for (\d+ minutes).*?turns critical after (an hour).*?"
        r"not been fetched for (two hours and a quarter)",
        (
            alerting("failing_for_seconds"),
            alerting("failing_critical_after_seconds"),
            _sum(model_default(Defaults, "stale_after_seconds"), alerting("stale_for_seconds")),
        ),
    ),
    Claim(
        "README.md",
        r"for (\d+) days by default",
        (model_default(HistorySettings, "retention_days"),),
    ),
    Claim("README.md", r"arrive within (\d+ s) are one message", (alerting("group_wait_seconds"),)),
    Claim(
        "README.md",
        r"\((\d+) logs in (\d+ minutes)",
        (alerting("errors_rising_count"), alerting("errors_rising_window_seconds")),
    ),
    Claim(
        "README.md",
        r"\((\d+) GET a minute by",
        (model_default(Defaults, "max_requests_per_minute"),),
    ),
    Claim(
        "README.md",
        r"SIGTERM stops it\s+within (\d+ s)",
        (const("monitor.daemon", "SHUTDOWN_SECONDS"),),
    ),
    Claim(
        "README.md", r"a (\d+)-day strip", (const("monitor.history.availability", "STRIP_DAYS"),)
    ),
    Claim(
        "docs/runbook.md",
        r"for more than (\d+ minutes)\s+\(`integration_failing_seconds > (\d+)`",
        (alerting("failing_for_seconds"), alerting("failing_for_seconds")),
    ),
    Claim(
        "docs/runbook.md",
        r"## SendcloudIntegrationFailingCritical\s+The same, for more than (an hour)",
        (alerting("failing_critical_after_seconds"),),
    ),
    Claim(
        "docs/runbook.md",
        r"for more than (\d+ minutes) past the stale threshold\s+"
        r"\(`integration_fetch_stale_threshold_seconds`, default (\d+ hours)\)",
        (alerting("stale_for_seconds"), model_default(Defaults, "stale_after_seconds")),
    ),
    Claim(
        "docs/runbook.md",
        r"at least (\d+) exception logs for the shop within (\d+ minutes)",
        (alerting("errors_rising_count"), alerting("errors_rising_window_seconds")),
    ),
    Claim(
        "docs/runbook.md",
        r"`failing_for_seconds` \((\d+ minutes)\), escalates to critical after (an hour)",
        (alerting("failing_for_seconds"), alerting("failing_critical_after_seconds")),
    ),
    Claim(
        "docs/runbook.md",
        r"(\d+) in (\d+ minutes) by default",
        (alerting("errors_rising_count"), alerting("errors_rising_window_seconds")),
    ),
    Claim(
        "docs/runbook.md", r"answers 404 on (two) polls in a row", (alerting("not_found_polls"),)
    ),
    Claim(
        "docs/runbook.md",
        r"could not read an account at all for (five minutes)",
        (alerting("unreachable_for_seconds"),),
    ),
    Claim(
        "docs/runbook.md",
        r"exceeds (\d+) GET requests a minute",
        (lambda: float(Defaults.model_fields["max_requests_per_minute"].metadata[1].le),),
    ),
    Claim(
        "docs/metrics.md",
        r"each connection gets (\d+ s) for its TLS",
        (const("monitor.exporter.server", "CONNECTION_TIMEOUT_SECONDS"),),
    ),
    Claim(
        "docs/metrics.md",
        r"at most (\d+) connections are served at once",
        (const("monitor.exporter.server", "MAX_CONNECTIONS"),),
    ),
    Claim(
        "docs/metrics.md",
        r"It shows the first (\d[\d ]*) rows",
        (const("monitor.exporter.status", "PAGE_ROWS"),),
    ),
    Claim(
        "docs/metrics.md",
        r"the account's first (\d+) types",
        (const("monitor.sendcloud.stream", "TOP_TYPES"),),
    ),
    Claim(
        "docs/metrics.md",
        r"after its (\d+(?:\.\d+)? s) drain",
        (const("monitor.notify.delivery", "DRAIN_SECONDS"),),
    ),
    Claim(
        "docs/operations.md",
        r"SIGTERM or SIGINT ends the daemon within (\d+ s)",
        (const("monitor.daemon", "SHUTDOWN_SECONDS"),),
    ),
    Claim(
        "docs/operations.md",
        r"queued deliveries get (\d+(?:\.\d+)? s) to go out",
        (const("monitor.notify.delivery", "DRAIN_SECONDS"),),
    ),
    Claim(
        "docs/operations.md",
        r"waits up to (\d+ s) \(a restart",
        (const("monitor.daemon", "HISTORY_CLAIM_SECONDS"),),
    ),
    Claim(
        "docs/operations.md",
        r"one connection pool \((\d+) sockets at most\)",
        (const("monitor.daemon", "SHARED_POOL_CONNECTIONS"),),
    ),
    Claim(
        "docs/operations.md",
        r"first polls start at most (\d+) a\s+second and all within (a minute)",
        (
            const("monitor.schedule", "FIRST_POLLS_PER_SECOND"),
            const("monitor.schedule", "FIRST_POLLS_WINDOW_SECONDS"),
        ),
    ),
    Claim(
        "docs/alerts.md",
        r"for a group of more than (\d+), one `incident` line",
        (const("monitor.notify.sinks", "INCIDENT_THRESHOLD"),),
    ),
    Claim(
        "docs/alerts.md",
        r"Lookups run in the background, at most (\d+) at a time over all accounts",
        (const("monitor.alerting.service", "CAUSE_CONCURRENCY"),),
    ),
    Claim(
        "docs/alerts.md",
        r"They expire by themselves \(at\s+most (\d+) days\)",
        (const("monitor.history.mutes", "MAX_MUTE_DAYS"),),
    ),
    Claim(
        "docs/alerts.md",
        r"then the first (\d+) shops with account",
        (const("monitor.notify.messages", "LISTED_SHOPS"),),
    ),
    Claim(
        "docs/alerts.md",
        r"and at least (\d+) — of one integration type",
        (const("monitor.notify.grouping", "PLATFORM_MINIMUM"),),
    ),
    Claim(
        "docs/alerts.md",
        r"the message, redacted, at most (\d+) characters",
        (const("monitor.alerting.cause", "MAX_MESSAGE"),),
    ),
    Claim(
        "docs/configuration.md",
        r"`--listen`, else `MONITOR_LISTEN_ADDRESS`, else `(127\.0\.0\.1:\d+)`",
        (lambda: cli.DEMO_LISTEN,),
    ),
    Claim(
        "docs/configuration.md",
        r"serve the simulator alone \(`--listen`, default `(127\.0\.0\.1:\d+)`\)",
        (parser_default("simulator", "listen"),),
    ),
    Claim(
        "docs/configuration.md",
        r"at most (\d+) days\) with a `--reason`",
        (const("monitor.history.mutes", "MAX_MUTE_DAYS"),),
    ),
    Claim(
        "docs/configuration.md",
        r"scope `(\w+)` \(`oauth2_scope`\)\. The token is cached, refreshed (a minute) before",
        (
            lambda: default_of(AccountSettings, "oauth2_scope"),
            const("monitor.sendcloud.oauth", "REFRESH_MARGIN_SECONDS"),
        ),
    ),
    Claim(
        "docs/metrics.md",
        r"\((\d+ KiB) a line, (\d+) headers\)",
        (const("http.client", "_MAXLINE"), const("http.client", "_MAXHEADERS")),
    ),
    Claim(
        "docs/runbook.md",
        r"a body over (\d+ MB)",
        (const("monitor.sendcloud.client", "MAX_BODY_BYTES"),),
    ),
    Claim(
        "docs/architecture.md",
        r"\((\d+) integrations a page",
        (const("monitor.sendcloud.client", "MAX_PAGE_SIZE"),),
    ),
    Claim(
        "docs/architecture.md",
        r"one by one \(at most (\d+) at a time\)",
        (model_default(Defaults, "max_concurrency"),),
    ),
    Claim(
        "docs/architecture.md",
        r"capped at (\d+ s); jittered",
        (const("monitor.sendcloud.client", "MAX_RETRY_AFTER"),),
    ),
    Claim(
        "docs/architecture.md",
        r"\(at most (\d+ s) apart\), at most (\d+) attempts and never past (\d+ %) of the poll",
        (
            const("monitor.sendcloud.client", "MAX_BACKOFF_SECONDS"),
            lambda: float(
                _parameter("monitor.sendcloud.client", "SendcloudClient", "max_attempts")
            ),
            lambda: f"{importlib.import_module('monitor.poller').CYCLE_DEADLINE_SHARE:.0%}".replace(
                "%", " %"
            ),
        ),
    ),
    Claim(
        "docs/architecture.md",
        r"[Aa] list walk stops after (\d[\d ]*) pages",
        (const("monitor.sendcloud.client", "MAX_LIST_PAGES"),),
    ),
    Claim(
        "docs/alerts.md",
        r"\((\d+) a page, newest first",
        (const("monitor.sendcloud.stream", "PAGE_SIZE"),),
    ),
    Claim(
        "docs/alerts.md",
        r"the summary, then the first (\w+) events",
        (const("monitor.notify.messages", "SLACK_SHOPS"),),
    ),
    Claim(
        "docs/alerts.md",
        r"a drain on shutdown \((\d+(?:\.\d+)? s);",
        (const("monitor.notify.delivery", "DRAIN_SECONDS"),),
    ),
    Claim(
        "docs/history.md",
        r"default: the last (\d+) days; at most (\d+) days",
        (
            lambda: float(importlib.import_module("monitor.history.documents").DEFAULT_WINDOW.days),
            lambda: float(importlib.import_module("monitor.history.documents").MAX_WINDOW.days),
        ),
    ),
    Claim(
        "docs/operations.md",
        r"polls in flight get (\d+(?:\.\d+)? s) to finish",
        (const("monitor.daemon", "POLL_GRACE_SECONDS"),),
    ),
    Claim(
        "docs/runbook.md",
        r"successful poll of an account for (three) poll intervals",
        (_rule_number("SendcloudMonitorPollsFailing", r"> (\d+) \* integration_monitor_poll"),),
    ),
    Claim(
        "docs/runbook.md",
        r"More than (\d+) % of the monitor's requests",
        (lambda: 100 * _rule_number("SendcloudAPIErrors", r"> (0\.\d+)\s*$")(),),
    ),
    Claim(
        "docs/configuration.md",
        r"without credentials \(at least (\d+) characters",
        (_shortest_badge_secret,),
    ),
    Claim(
        "docs/history.md",
        r"at least (\d+) characters\) and each badge",
        (_shortest_badge_secret,),
    ),
    Claim(
        "docs/history.md",
        r"under the secret \((\d+) bits\)",
        (
            lambda: (
                4.0
                * len(importlib.import_module("monitor.exporter.badges").badge_key("s" * 16, "a"))
            ),
        ),
    ),
    Claim(
        "docs/metrics.md",
        r"`30d`, … up to (\d+) days\)",
        (lambda: float(importlib.import_module("monitor.exporter.badges").MAX_WINDOW.days),),
    ),
    Claim(
        "docs/alerts.md",
        r"`endsAt` is now \+ (\d+) \N{MULTIPLICATION SIGN} max\(resend interval, longest",
        (_in_source("monitor/notify/sinks.py", r"horizon = (\d+) \* max\("),),
    ),
    Claim(
        "docs/alerts.md",
        r"a webhook's `queue_size`, (\d+) by default; Alertmanager's is (\d+)\)",
        (
            model_default(WebhookSettings, "queue_size"),
            _in_source("monitor/notify/sinks.py", r"queue_size=(\d+),"),
        ),
    ),
    Claim(
        "docs/metrics.md",
        r"below (\d+) px the type, last read and, below (\d+) px, the 30-day strip give way",
        (
            _in_source("monitor/exporter/status.py", r"@media \(max-width:(\d+)px\)\{body"),
            _in_source("monitor/exporter/status.py", r"@media \(max-width:(\d+)px\)\{\.strip"),
        ),
    ),
    Claim(
        "docs/architecture.md",
        r"a burst of one second's worth, at most (\d+) requests",
        (_in_source("monitor/sendcloud/budget.py", r"min\((\d+(?:\.\d+)?), self\._rate\)"),),
    ),
    Claim(
        "docs/operations.md",
        r"request budget \((\d+) a minute, a burst of (\d+)\)",
        (
            model_default(Defaults, "max_requests_per_minute"),
            _in_source("monitor/sendcloud/budget.py", r"min\((\d+(?:\.\d+)?), self\._rate\)"),
        ),
    ),
    Claim(
        "docs/metrics.md",
        r"refreshes every (\d+ s), works without JavaScript",
        (_in_source("monitor/exporter/status.py", r"http-equiv='refresh' content='(\d+)'"),),
    ),
    Claim(
        "docs/metrics.md",
        r"green from (\d+) %, amber from (\d+) %, red below",
        (
            lambda: 100 * _in_source("monitor/exporter/badges.py", r"ratio >= (0\.\d+)\n")(),
            lambda: (
                100
                * _in_source(
                    "monitor/exporter/badges.py", r"ratio >= 0\.\d+\n.*?ratio >= (0\.\d+)"
                )()
            ),
        ),
    ),
    Claim(
        "docs/alerts.md",
        r"a log may arrive up to (\d+ minutes) late",
        (lambda: importlib.import_module("monitor.sendcloud.stream").LATE_GRACE.total_seconds(),),
    ),
    Claim(
        "docs/alerts.md",
        r"\| `fingerprint` \| (\d+) hex digits \|",
        (lambda: float(len(fingerprint(AlertKey("IntegrationFailing", "acme-nl", 1)))),),
    ),
    Claim(
        "docs/operations.md",
        r"Each resends its active alerts every (minute)",
        (const("monitor.notify.sinks", "RESEND_INTERVAL_SECONDS"),),
    ),
)


def _value(text: str) -> float | str:
    try:
        return quantity(text)
    except (AssertionError, KeyError, ValueError):
        return text


@pytest.mark.parametrize("claim", CLAIMS, ids=lambda c: f"{c.page}:{c.pattern[:40]}")
def test_numbers_stated_in_prose_are_the_codes(claim: Claim) -> None:
    text = " ".join(prose(PAGES[claim.page]).split())
    found = re.search(claim.pattern, text)
    assert found is not None, f"{claim.page} no longer says this: update the claim"
    stated = found.groups()
    assert len(stated) == len(claim.values)
    for said, value in zip(stated, claim.values, strict=True):
        expected = value()
        got = _value(said)
        if isinstance(expected, str):
            assert said == expected, (said, expected)
        else:
            assert got == pytest.approx(float(expected)), (said, expected)
