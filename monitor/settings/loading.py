"""Loading: the file named by ``--config`` or MONITOR_CONFIG_FILE, read with the environment,
validated and resolved, or one readable :class:`ConfigError`."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import yaml
from pydantic import ValidationError

from monitor.config_errors import ConfigError
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
    if config_file is not None:
        _check_yaml_shape(config_file)
    token = load_context.set(LoadContext(os.environ if environ is None else environ, config_file))
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None
    except (OSError, ValueError, yaml.YAMLError) as exc:  # a file that changed under us
        raise ConfigError(f"cannot read configuration file {config_file}: {exc}") from None
    finally:
        load_context.reset(token)
    return settings, settings.resolved_accounts()


def _check_yaml_shape(path: Path) -> None:
    """YAML syntax and a mapping at the top, checked first for a clearer message."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(
            f"configuration file {path}: the top level must be a mapping of keys "
            "(listen_address:, defaults:, accounts:, ...)"
        )
