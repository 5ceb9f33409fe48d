"""Bad configuration, whichever layer reads it: one error type with a message for the
operator, and one way to describe pydantic's validation errors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

MASK = "********"


class ConfigError(Exception):
    """An invalid configuration; the message is meant for the operator, as is."""


def describe(
    exc: ValidationError,
    *,
    env_by_path: Mapping[tuple[str, ...], str] | None = None,
    secret_fields: frozenset[str] = frozenset(),
) -> str:
    """One line per problem: where (and which environment variable sets it), what was given
    (unless secret) and what is expected."""
    lines = [f"invalid configuration ({exc.error_count()} problem(s)):"]
    for error in exc.errors(include_url=False):
        loc = tuple(str(part) for part in error["loc"])
        where = _dotted(loc)
        env = (env_by_path or {}).get(loc[:2]) or (env_by_path or {}).get(loc[:1])
        if env:
            where += f" (environment variable {env})"
        given = ""
        value = error.get("input")
        if (
            error["type"] not in ("missing", "extra_forbidden")
            and not secret_fields & set(loc)
            # a model-level error's input is the whole block (keys, URLs, secrets): never shown
            and not isinstance(value, Mapping)
        ):
            given = f" got {masked(value, secret_fields)!r}:"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {where}: unknown key (check its spelling and indentation)")
        else:
            lines.append(f"  {where}:{given} {error['msg']}")
    return "\n".join(lines)


def masked(value: Any, secret_fields: frozenset[str]) -> Any:
    """``value`` with every secret field masked, at any depth."""
    if isinstance(value, Mapping):
        return {
            k: MASK if str(k) in secret_fields else masked(v, secret_fields)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [masked(item, secret_fields) for item in value]
    return value


def _dotted(loc: tuple[str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "(top level)"
