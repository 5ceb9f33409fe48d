"""Structured logging: structlog JSON lines (or a console view on a TTY), secrets scrubbed.

Library logs (httpx, APScheduler) are routed through the same processors, so every line on
stdout has the same shape. Two layers keep secrets out: keys that look secret are masked, and
the rendered line is scrubbed of every configured secret value (and its Basic-auth encoding),
whichever field or traceback it turned up in.
"""

from __future__ import annotations

import base64
import logging
import re
import sys
from collections.abc import Iterable
from typing import TextIO

import stamina
import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

MASK = "********"
_SECRET_KEY = re.compile(r"authorization|token|secret|password|passwd|api_key|cookie", re.I)
_URL_QUERY = re.compile(r"(https?://[^\s?#\"']+)\?[^\s#\"']*")
_URL_USERINFO = re.compile(r"(?i)(https?://)[^/\s@\"']+@")


def redact_keys(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    """Mask values whose key names a credential; drop userinfo and query strings from URLs."""
    for key, value in list(event_dict.items()):
        if _SECRET_KEY.search(key):
            event_dict[key] = MASK
        elif isinstance(value, str) and "://" in value:
            value = _URL_USERINFO.sub(r"\1", value)
            event_dict[key] = _URL_QUERY.sub(r"\1?" + MASK, value)
    return event_dict


class SecretScrubber:
    """Replaces known secret values anywhere in a rendered line."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if len(s) >= 4}
        pairs = list(values)
        for public in pairs:  # the Basic credential of every pair, as it travels on the wire
            for secret in pairs:
                if public != secret:
                    values.add(base64.b64encode(f"{public}:{secret}".encode()).decode())
        self.secrets = sorted(values | set(self.secrets), key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def wrap(self, renderer: Processor) -> Processor:
        """A renderer whose output is scrubbed: the last step before a line is written."""

        def render(logger: WrappedLogger, name: str, event_dict: EventDict) -> str:
            line = renderer(logger, name, event_dict)
            text = line.decode() if isinstance(line, bytes | bytearray) else str(line)
            return self.scrub(text)

        return render


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
    renderer: list[Processor]
    if log_format == "console":
        renderer = [scrubber.wrap(structlog.dev.ConsoleRenderer(colors=stream.isatty()))]
    else:
        renderer = [
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            scrubber.wrap(structlog.processors.JSONRenderer()),
        ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *renderer,
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
