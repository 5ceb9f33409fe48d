"""Loading: the file named by ``--config`` or MONITOR_CONFIG_FILE, read with the environment,
validated and resolved, or one readable :class:`ConfigError` that says where the bad value
came from (the file and key, or the environment variable) and never quotes a secret."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from monitor.config_errors import ConfigError, yaml_problem
from monitor.settings.masking import format_validation_error
from monitor.settings.models import Settings
from monitor.settings.resolved import AccountConfig
from monitor.settings.sources import CONFIG_FILE_ENV, LoadContext, load_context


def config_file_from(cli_value: str | None, environ: Mapping[str, str]) -> Path | None:
    """The YAML file named by ``--config`` or MONITOR_CONFIG_FILE; it must exist."""
    named = cli_value or environ.get(CONFIG_FILE_ENV) or None
    if named is None:
        return None
    path = Path(named)
    if not path.is_file():
        raise ConfigError(f"configuration file {named} does not exist or is not a file")
    return path


def load_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> tuple[Settings, list[AccountConfig]]:
    """Load, validate and resolve the configuration, or raise one readable ConfigError."""
    settings = read_settings(config_file, environ)
    return settings, settings.resolved_accounts()


def read_settings(
    config_file: Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """The configuration validated but not resolved: no credential is needed and no secret
    file is read (``routes``, ``mute``, ``report`` work where the keys are not set)."""
    environ = os.environ if environ is None else environ
    data = read_yaml(config_file) if config_file is not None else {}
    token = load_context.set(LoadContext(environ, config_file, data))
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, environ, config_file)) from None
    finally:
        load_context.reset(token)


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping; a syntax error names the file, line and column and the
    kind of error, never the text of the line (it may hold a secret)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            "cannot read configuration file " + yaml_problem(str(path), exc)
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {path}: the top level must be a mapping of keys "
            "(listen_address:, defaults:, accounts:, ...)"
        )
    return data
