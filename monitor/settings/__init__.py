"""Configuration: a YAML file overridden by environment variables, validated by pydantic.

The YAML file may describe several Sendcloud accounts. The documented environment variables
(``ENV_VARS``) fill the single-account ``sendcloud:`` block and the global ``defaults:``, so a
container can be configured with environment variables alone. Everything that reaches the rest
of the daemon is the resolved, frozen :class:`AccountConfig` — no optional fields to re-check.

- ``models``: the configuration as written (pydantic models, strict);
- ``sources``: the environment variables and the YAML file as pydantic-settings sources;
- ``resolved``: :class:`AccountConfig`, :class:`Outbound` (webhooks, receivers): defaults
  applied, files read;
- ``addresses``: loopback and the https rule, listen addresses, shards;
- ``loading``: :func:`load_settings` and the file named by ``--config``;
- ``masking``: validation errors and the effective configuration, without secrets.

May import ``monitor.sendcloud``, ``monitor.health``, ``monitor.alerting``, ``monitor.notify``,
``monitor.checks`` and the base modules.
"""

from monitor.settings.addresses import (
    is_loopback,
    parse_listen_address,
    parse_shard,
    require_https,
    shard_of,
)
from monitor.settings.loading import config_file_from, load_settings, read_settings
from monitor.settings.masking import (
    SECRET_FIELDS,
    format_validation_error,
    masked_dump,
    shown_secret,
)
from monitor.settings.models import (
    DEFAULT_API_URL,
    DEFAULT_LISTEN_ADDRESS,
    AccountSettings,
    AlertingSettings,
    AlertmanagerSettings,
    BadgeSettings,
    ChecksSettings,
    Defaults,
    HistorySettings,
    IntegrationOverride,
    MaintenanceSettings,
    MatchSettings,
    ProbeSettings,
    ReceiverSettings,
    RouteSettings,
    Settings,
    TimeRangeSettings,
    WebhookSettings,
    alerting_changes,
    mute_target_problem,
)
from monitor.settings.resolved import AccountConfig, Outbound, ReceiverConfig, WebhookConfig
from monitor.settings.sources import CONFIG_FILE_ENV, ENV_VARS

__all__ = [
    "CONFIG_FILE_ENV",
    "DEFAULT_API_URL",
    "DEFAULT_LISTEN_ADDRESS",
    "ENV_VARS",
    "SECRET_FIELDS",
    "AccountConfig",
    "AccountSettings",
    "AlertingSettings",
    "AlertmanagerSettings",
    "BadgeSettings",
    "ChecksSettings",
    "Defaults",
    "HistorySettings",
    "IntegrationOverride",
    "MaintenanceSettings",
    "MatchSettings",
    "Outbound",
    "ProbeSettings",
    "ReceiverConfig",
    "ReceiverSettings",
    "RouteSettings",
    "Settings",
    "TimeRangeSettings",
    "WebhookConfig",
    "WebhookSettings",
    "alerting_changes",
    "config_file_from",
    "format_validation_error",
    "is_loopback",
    "load_settings",
    "masked_dump",
    "mute_target_problem",
    "parse_listen_address",
    "parse_shard",
    "read_settings",
    "require_https",
    "shard_of",
    "shown_secret",
]
