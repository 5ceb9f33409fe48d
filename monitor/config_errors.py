"""Bad configuration, whichever layer reads it: one error type with a message for the
operator, and one way to describe pydantic's validation errors and YAML syntax errors —
saying where (the file and key, or the environment variable that set it), never echoing a
value that may be a secret."""

from __future__ import annotations

import re
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
    environ: Mapping[str, str] | None = None,
    source: str | None = None,
) -> str:
    """One line per problem: where (the file's key, or the environment variable when one is
    set for it), what was given (unless secret) and what is expected.

    ``environ`` is the environment the values were read from: a variable is named only when
    it is set there (without ``environ``, wherever one could set the field). ``source`` names
    the file the other values came from.
    """
    errors = _merged_unions(exc.errors(include_url=False))
    lines = [f"invalid configuration ({len(errors)} problem(s)):"]
    for error in errors:
        loc = tuple(str(part) for part in error["loc"])
        where = _dotted(loc)
        env = (env_by_path or {}).get(loc[:2]) or (env_by_path or {}).get(loc[:1])
        if env and (environ is None or environ.get(env)):
            where += f" (environment variable {env})"
        elif source is not None:
            where = f"{source}: {where}"
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
            lines.append(f"  {where}:{given} {_message(error)}")
    return "\n".join(lines)


#: pydantic's names of the members of a union, which it puts into an error's location
#: (``literal['all']``, ``list[constrained-int]``, ``function-after[...]``, ``int``).
_UNION_TAG = re.compile(r"[a-z-]+\[.*\]|str|int|float|bool|none|constrained-[a-z]+")


def _merged_unions(errors: list[Any]) -> list[Any]:
    """The errors with pydantic's union member tags out of their locations, and the errors of
    one field that accepts several forms merged into one line (\"A; or b\")."""
    merged: dict[tuple[Any, ...], Any] = {}
    for error in errors:
        loc = tuple(error["loc"])
        tag = next(
            (i for i, p in enumerate(loc) if isinstance(p, str) and _UNION_TAG.fullmatch(p)), None
        )
        if tag is not None:  # what follows the tag is inside one form: the field is the place
            loc = loc[:tag]
        found = merged.get(loc)
        if found is None:
            merged[loc] = {**error, "loc": loc}
        elif error["msg"] not in found["msg"]:
            found["msg"] += f"; or {error['msg'][:1].lower()}{error['msg'][1:]}"
    return list(merged.values())


def _message(error: Any) -> str:
    """pydantic's message, without the prefix it adds to a validator's own words."""
    return str(error["msg"]).removeprefix("Value error, ")


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


def yaml_problem(source: str, exc: BaseException) -> str:
    """Why a YAML file could not be read: the file, line and column and the kind of error —
    never the text of the line, which PyYAML quotes and which may hold a secret key, a
    password or a webhook URL (a rotated one, not yet known to the log scrubber)."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    where = source
    if mark is not None:
        where += f", line {mark.line + 1}, column {mark.column + 1}"
    if isinstance(exc, UnicodeDecodeError):
        return f"{where}: not UTF-8 text (byte {exc.start + 1})"
    if isinstance(exc, OSError):
        return f"{where}: {exc.strerror or type(exc).__name__}"
    position = getattr(exc, "position", None)  # a ReaderError: an unprintable character
    if mark is None and isinstance(position, int):
        return f"{where}, character {position + 1}: a character YAML does not allow"
    kind = _unquoted(getattr(exc, "problem", None) or "") or "not valid YAML"
    context = _unquoted(getattr(exc, "context", None) or "")
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and context_mark is not mark:
        kind += f" ({context} at line {context_mark.line + 1}, column {context_mark.column + 1})"
    elif context:
        kind += f" ({context})"
    return f"{where}: YAML syntax error: {kind}"


def _unquoted(text: str) -> str:
    """PyYAML's wording with what it quotes from the document (an alias, a tag, a value)
    left out; a single character (``'\\t'``) and token names (``'<scalar>'``) stay."""

    def keep(match: re.Match[str]) -> str:
        inner = match.group(0)[1:-1]
        if len(inner) <= 2 or re.fullmatch(r"<[a-z ]+>", inner):
            return match.group(0)
        return "'…'"

    return re.sub(r"'[^']*'|\"[^\"]*\"", keep, text)


def _dotted(loc: tuple[str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "(top level)"
