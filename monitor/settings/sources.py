"""Where configuration comes from: the documented environment variables (``ENV_VARS``) and
the YAML file; pydantic-settings reads them through :class:`EnvSource`, :class:`FileSource`
and the load context."""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

ENV_VARS: dict[str, tuple[str, ...]] = {
    "SENDCLOUD_API_URL": ("sendcloud", "api_url"),
    "SENDCLOUD_PUBLIC_KEY": ("sendcloud", "public_key"),
    "SENDCLOUD_SECRET_KEY": ("sendcloud", "secret_key"),
    "SENDCLOUD_SECRET_KEY_FILE": ("sendcloud", "secret_key_file"),
    "SENDCLOUD_AUTH": ("sendcloud", "auth"),
    "SENDCLOUD_OAUTH2_TOKEN_URL": ("sendcloud", "oauth2_token_url"),
    "MONITOR_INTEGRATION_IDS": ("sendcloud", "integration_ids"),
    "MONITOR_POLL_INTERVAL_SECONDS": ("defaults", "poll_interval_seconds"),
    "MONITOR_STALE_AFTER_SECONDS": ("defaults", "stale_after_seconds"),
    "MONITOR_LISTEN_ADDRESS": ("listen_address",),
    "MONITOR_LOG_FORMAT": ("log_format",),
    "MONITOR_LOG_LEVEL": ("log_level",),
    "MONITOR_STATE_FILE": ("alerting", "state_file"),
    "MONITOR_HISTORY_FILE": ("history", "path"),
    "MONITOR_SHARD": ("shard",),
    "MONITOR_BUDGET_SHARE": ("defaults", "budget_share"),
    "MONITOR_BADGE_SECRET": ("badges", "secret"),
    "MONITOR_BADGE_SECRET_FILE": ("badges", "secret_file"),
    "MONITOR_PROBES_ENABLED": ("probes", "enabled"),
}
CONFIG_FILE_ENV = "MONITOR_CONFIG_FILE"
ENV_BY_PATH = {path: name for name, path in ENV_VARS.items()}


class EnvSource(PydanticBaseSettingsSource):
    """Reads exactly the documented variables of ``ENV_VARS`` into their nested places."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ builds the whole mapping

    def __call__(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, path in ENV_VARS.items():
            value = self._environ.get(name)
            if value is None or value == "":
                continue
            node = data
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = value
        return data


class FileSource(PydanticBaseSettingsSource):
    """The YAML file's mapping, as read (once) by ``read_settings``."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # unused: __call__ returns the whole mapping

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


@dataclass(frozen=True)
class LoadContext:
    """What one load_settings call reads (pydantic-settings picks sources per class)."""

    environ: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    #: the file's mapping, parsed once (its syntax errors are reported before validation)
    file_data: Mapping[str, Any] = field(default_factory=dict)


load_context: contextvars.ContextVar[LoadContext | None] = contextvars.ContextVar(
    "settings_load_context", default=None
)
