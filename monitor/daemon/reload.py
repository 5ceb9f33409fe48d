"""Reload: re-reading the configuration, what a reload cannot change (a restart applies it),
which accounts it adds, changes and removes, and the reply of POST /-/reload.

Applying a reload is the daemon's: each part takes its share (``lifecycle``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pydantic import SecretStr

from monitor import logs
from monitor.config_errors import ConfigError
from monitor.settings import AccountConfig, Outbound, Settings, parse_listen_address

#: What a reload cannot apply. A reload that changes one is refused, naming it, and the running
#: configuration stays; docs/operations.md lists the same (a test keeps both equal).
RESTART_SETTINGS = (
    "listen_address",
    "shard",
    "log_format",
    "log_level",
    "alerting.state_file",
    "history.path",
)
#: Re-reads the configuration for a reload; raises ConfigError.
Loader = Callable[[], tuple[Settings, list[AccountConfig]]]


def check_restart_settings(started: Mapping[str, object] | None, settings: Settings) -> None:
    """A ConfigError naming each setting of RESTART_SETTINGS the new configuration changes:
    the reload is refused as a whole rather than keep them silently. ``started``: the values as
    the daemon started (None: nothing to compare, e.g. the demo)."""
    if started is None:
        return
    new = restart_values(settings)
    changed = [
        f"{name} ({_shown(started[name])} -> {_shown(new[name])})"
        for name in RESTART_SETTINGS
        if new[name] != started[name]
    ]
    if changed:
        raise ConfigError(
            f"{', '.join(changed)}: a reload cannot change "
            f"{'this setting' if len(changed) == 1 else 'these settings'}, a restart applies "
            "it; nothing was reloaded and the running configuration stays"
        )


@dataclass(frozen=True)
class Reread:
    """A configuration re-read for a reload, validated as a whole."""

    settings: Settings
    accounts: list[AccountConfig]
    outbound: Outbound
    badge_secret: SecretStr | None


def reread(loader: Loader, started: Mapping[str, object] | None) -> Reread:
    """Re-read the YAML file, the environment and secret files, and validate the whole;
    raises ConfigError (what a reload cannot change too: ``check_restart_settings``)."""
    settings, accounts = loader()
    outbound = settings.alerting.resolved_outbound()
    badge_secret = settings.badges.resolved_secret()
    logs.scrubber.add(settings.secrets())  # new secrets are scrubbed from now on
    check_restart_settings(started, settings)
    return Reread(settings, accounts, outbound, badge_secret)


@dataclass(frozen=True)
class AccountChanges:
    """What a reload does to the accounts polled now, by name."""

    removed: list[str]
    changed: list[str]
    added: list[str]

    def summary(self) -> dict[str, list[str]]:
        """As the reply and the ``config_reloaded`` line give them."""
        return {"added": self.added, "removed": self.removed, "changed": self.changed}


def account_changes(
    running: Mapping[str, AccountConfig], accounts: Sequence[AccountConfig]
) -> AccountChanges:
    """``running``: each account polled now, as configured; ``accounts``: the new
    configuration's. An account whose configuration differs is changed (restarted)."""
    new = {a.name: a for a in accounts}
    removed = [n for n in running if n not in new]
    changed = [n for n in running if n in new and running[n] != new[n]]
    added = [n for n in new if n not in running]
    return AccountChanges(removed, changed, added)


#: How the reload answer names each part of the configuration.
_PARTS = {
    "accounts": "accounts",
    "webhooks": "webhooks",
    "receivers": "receivers",
    "alertmanager": "Alertmanager",
    "routes": "routes",
    "maintenance": "maintenance windows",
    "alerting": "alerting settings",
    "history": "history",
}


def reload_reply(
    accounts: Mapping[str, list[str]], alerting: Mapping[str, Mapping[str, list[str]]]
) -> str:
    """The answer of POST /-/reload: what changed, one line per part of the configuration
    (accounts, webhooks, receivers, the Alertmanager, routes, maintenance windows, the other
    alerting settings), or that nothing did."""
    lines = []
    for part, changes in {"accounts": accounts, **alerting}.items():
        said = [f"{verb} {', '.join(names)}" for verb, names in changes.items() if names]
        if said:
            lines.append(f"{_PARTS.get(part, part)}: {'; '.join(said)}")
    return "\n".join(lines) or "nothing changed"


def restart_values(settings: Settings) -> dict[str, object]:
    """The values of RESTART_SETTINGS in ``settings``, as the daemon uses them (the address
    parsed, the history file resolved beside the state file)."""
    try:
        listen: object = parse_listen_address(settings.listen_address)
    except ValueError:
        listen = settings.listen_address
    values: dict[str, object] = {
        "listen_address": listen,
        "shard": settings.shard,
        "log_format": settings.log_format,
        "log_level": settings.log_level,
        "alerting.state_file": settings.alerting.state_file,
        "history.path": settings.history.resolved_path(settings.alerting.state_file),
    }
    assert tuple(values) == RESTART_SETTINGS
    return values


def _shown(value: object) -> str:
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        return ":".join(str(part) for part in value)
    return str(value)
