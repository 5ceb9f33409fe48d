"""What may be printed of a configuration: validation errors without secrets or the input of
a whole block, and the whole effective configuration with every secret masked.

Both are driven by the settings model itself: a field typed ``SecretStr`` is a secret, and
the dump walks every field of every model, so a new option appears without code here.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from monitor.config_errors import MASK, describe
from monitor.logs import SecretScrubber
from monitor.notify.receivers import secret_parts
from monitor.settings.models import ReceiverSettings, Settings
from monitor.settings.sources import ENV_BY_PATH


def secret_fields(model: type[BaseModel]) -> frozenset[str]:
    """The names of the fields typed as secrets, in ``model`` and every model under it."""
    found: set[str] = set()
    seen: set[type[BaseModel]] = set()

    def walk(cls: type[BaseModel]) -> None:
        if cls in seen:
            return
        seen.add(cls)
        for name, field in cls.model_fields.items():
            for kind in _leaf_types(field.annotation):
                if isinstance(kind, type) and issubclass(kind, SecretStr):
                    found.add(name)
                elif isinstance(kind, type) and issubclass(kind, BaseModel):
                    walk(kind)

    walk(model)
    return frozenset(found)


def _leaf_types(annotation: Any) -> list[Any]:
    """The types inside ``X | None``, ``list[X]``, ``dict[K, X]``, ``Literal`` aside."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return [annotation]
    if origin is typing.Literal:
        return []
    if origin in (typing.Union, types.UnionType, list, tuple, dict, typing.Annotated):
        args = typing.get_args(annotation)
        if origin is typing.Annotated:
            args = args[:1]
        return [leaf for arg in args for leaf in _leaf_types(arg)]
    return [annotation]


SECRET_FIELDS = secret_fields(Settings)


def format_validation_error(
    exc: ValidationError, environ: Mapping[str, str] | None = None, source: Path | None = None
) -> str:
    """One line per problem: the file and key it is at, or the environment variable when
    one set it; never a secret field's value."""
    return describe(
        exc,
        env_by_path=ENV_BY_PATH,
        secret_fields=SECRET_FIELDS,
        environ=environ,
        source=str(source) if source is not None else None,
    )


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The whole effective configuration (defaults applied, see ``Settings.effective``),
    every field of the model, each secret masked by its type: for ``validate-config``."""
    return _dump(settings.effective())


def shown_secret(secret: SecretStr, *, is_receiver: bool = False) -> str:
    """A secret as it may be shown: a URL keeps its scheme, host and ordinary path with
    every secret part masked (which service it is, where it goes); anything else is masked.
    ``is_receiver``: an Apprise URL (Apprise's plugin says which parts are private)."""
    value = secret.get_secret_value()
    if not value:
        return ""
    if "://" not in value:
        return MASK
    parts = secret_parts(value, apprise=is_receiver)
    return SecretScrubber(p for p in parts if p != value).scrub(value)


def _dump(model: BaseModel) -> dict[str, Any]:
    receiver = isinstance(model, ReceiverSettings)
    return {
        (field.alias or name): _value(getattr(model, name), receiver)
        for name, field in type(model).model_fields.items()
    }


def _value(value: Any, receiver: bool = False) -> Any:
    if isinstance(value, SecretStr):
        return shown_secret(value, is_receiver=receiver)
    if isinstance(value, BaseModel):
        return _dump(value)
    if isinstance(value, Mapping):
        return {_key(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _key(key: Any) -> Any:
    return key if isinstance(key, str | int) else str(key)
