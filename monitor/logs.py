"""Structured logging: structlog JSON lines (or a console view on a TTY), secrets masked.

Library logs (httpx, APScheduler) are routed through the same processors, so every line on
stdout has the same shape. What is masked, and only that:

- the value of a field whose *name* says credential (``authorization``, ``token``, ...);
- in any URL of any scheme: the password of its userinfo (the user name stays, unless it looks
  like a token), every query value (the keys stay) and path segments that look like tokens;
- every configured secret value (keys, passwords, tokens, webhook URLs, the Basic credential of
  a key pair) wherever it stands as a whole word in a value: never inside a longer word, so a
  password ``even`` leaves ``event`` alone, and a secret of any length is masked.

Keys are never changed, and neither are the fields that name a line (``event``, ``logger``,
``level``, ``timestamp``) — except that a library's ``event`` is its free-text message, which
is masked like any value.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any, TextIO
from urllib.parse import quote, unquote

import stamina
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "********"
_SECRET_KEY = re.compile(r"authorization|token|secret|password|passwd|api_key|cookie", re.I)
#: The fields that name a line: the code writes them, never a secret.
STRUCTURAL_FIELDS = frozenset({"event", "logger", "level", "timestamp"})
#: A URL of any scheme (``https://``, ``mailtos://``, ``tgram://``), up to a space or a quote.
_URL = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*)://([^\s\"'<>]+)")
_WORD = "A-Za-z0-9_"


def looks_like_token(text: str) -> bool:
    """Whether a user name, path segment or host reads as a credential rather than a word:
    long, or a mix of letters and digits (``T1JJ3T3L2``, ``abc123TOKENxyz``), never an
    ordinary name such as ``monitor``, ``info``, ``alerts`` or ``ops-team``."""
    text = unquote(text)
    if len(text) >= 20:
        return True
    return len(text) >= 8 and any(c.isdigit() for c in text) and any(c.isalpha() for c in text)


def mask_url(url: str) -> str:
    """``url`` with its secret parts masked: the userinfo password (the user too when it looks
    like a token), every query value and fragment, and path segments that look like tokens.
    The scheme, host, port and ordinary path stay readable."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, hash_, _fragment = rest.partition("#")
    rest, qmark, query = rest.partition("?")
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if at:
        user, colon, _password = userinfo.partition(":")
        if looks_like_token(user):
            user = MASK
        userinfo = user + (colon and ":" + MASK)
    # tokens as hosts (discord://webhook_id/token): never a name with a dot or a port
    # (localhost:8443, shop.example.com) or an IPv6 address
    if looks_like_token(host) and not any(c in host for c in ".:["):
        host = MASK
    path = "/".join(MASK if looks_like_token(s) else s for s in path.split("/"))
    query = "&".join(
        (name + "=" + MASK) if eq else MASK
        for name, eq, _value in (part.partition("=") for part in query.split("&") if part)
    )
    return (
        f"{scheme}://{userinfo}{at}{host}{slash}{path}"
        + (qmark and "?" + query)
        + (hash_ and "#" + MASK)
    )


def basic_credential(user: str, password: str) -> str:
    """The Basic-auth encoding of a key pair, as it travels on the wire (a secret too)."""
    return base64.b64encode(f"{user}:{password}".encode()).decode()


class SecretScrubber:
    """Masks known secret values and the secret parts of URLs in the values of a line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._order: list[tuple[str, re.Pattern[str]]] = []
        self.add(secrets)

    @property
    def secrets(self) -> list[str]:
        return [secret for secret, _ in self._order]

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values from now on too (a reload adds the new ones)."""
        for secret in secrets:
            if not secret:
                continue
            for form in {secret, quote(secret, safe=""), unquote(secret)}:
                if form and form not in self._patterns:
                    self._patterns[form] = _whole_word(form)
        self._order = sorted(self._patterns.items(), key=lambda item: len(item[0]), reverse=True)

    def scrub(self, text: str) -> str:
        """``text`` with the secret parts of its URLs and every known secret masked."""
        if "://" in text:
            text = _URL.sub(lambda m: mask_url(m.group(0)), text)
        for secret, pattern in self._order:
            if secret in text:  # cheap: most values hold no secret at all
                text = pattern.sub(MASK, text)
        return text

    def scrub_value(self, value: Any) -> Any:
        """Every string in ``value``, at any depth, scrubbed; keys and other types as they are."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {key: self.scrub_value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.scrub_value(item) for item in value)
        return value

    def processor(self, _: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
        """The values of a line, scrubbed (run after exceptions are rendered to data)."""
        foreign = event_dict.get("_from_structlog") is False  # a library's free-text message
        for key, value in list(event_dict.items()):
            if key.startswith("_") or (
                key in STRUCTURAL_FIELDS and not (foreign and key == "event")
            ):
                continue
            event_dict[key] = self.scrub_value(value)
        return event_dict


def _whole_word(secret: str) -> re.Pattern[str]:
    """``secret`` where it is not part of a longer word (a boundary is needed only on a side
    where the secret itself begins or ends with a word character)."""
    before = f"(?<![{_WORD}])" if re.match(f"[{_WORD}]", secret[0]) else ""
    after = f"(?![{_WORD}])" if re.match(f"[{_WORD}]", secret[-1]) else ""
    return re.compile(before + re.escape(secret) + after)


def redact_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask the values of fields whose name says credential."""
    for key in list(event_dict):
        if key not in STRUCTURAL_FIELDS and not key.startswith("_") and _SECRET_KEY.search(key):
            event_dict[key] = MASK
    return event_dict


scrubber = SecretScrubber(())


def configure(
    log_format: str | None = None,
    *,
    level: int = logging.INFO,
    stream: TextIO | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """Set up structlog and stdlib logging. ``log_format`` None: JSON unless stdout is a TTY."""
    stream = stream or sys.stdout
    scrubber.add(secrets)
    if log_format is None:
        log_format = "console" if stream.isatty() else "json"
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_keys,
    ]
    # exceptions become data first, so that their text is scrubbed like every other value
    exceptions: Processor
    renderer: Processor
    if log_format == "console":
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
    else:
        exceptions = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False)
        )
        renderer = structlog.processors.JSONRenderer()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            exceptions,
            scrubber.processor,  # before the meta keys go: it tells a library's message apart
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    noisy_loggers = (
        "asyncio",
        "httpx",
        "httpcore",
        "apscheduler.executors",
        "apscheduler.scheduler",
        "tzlocal",  # APScheduler's time zone lookup, at debug level
    )
    for noisy in noisy_loggers:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    # stamina would log each retry as a warning and count it in prometheus-client's global
    # registry; a retry is routine (the outcome is what counts), so it is a debug line here
    stamina.instrumentation.set_on_retry_hooks([log_retry])


def log_retry(details: stamina.instrumentation.RetryDetails) -> None:
    """One debug line per retry: which attempt, how long it waits, and why (an error's
    reason or type, never its message, which may carry a URL)."""
    cause = details.caused_by
    structlog.get_logger(__name__).debug(
        "retry_scheduled",
        attempt=details.retry_num,
        wait_seconds=round(details.wait_for, 3),
        error=getattr(cause, "reason", type(cause).__name__),
    )
