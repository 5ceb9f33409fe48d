"""Receivers through Apprise: e-mail, Teams, Discord, Telegram, PagerDuty, Opsgenie, ntfy,
Mattermost and the rest of Apprise's services, each named by one Apprise URL.

The URL is a secret (it carries tokens, passwords, webhook paths): it is never logged, never in
an error, a metric or a page — only the receiver's name is. Apprise is imported on first use
(about half a second with its plugins), so a daemon without receivers never pays for it.
Apprise's ``notify`` blocks (its plugins use ``requests``): each receiver sends from a thread of
its own, so the event loop never waits and one slow service delays no other. That thread is a
daemon thread: a send blocked at shutdown (an SMTP server that never greets, a long timeout) is
abandoned with the process, never waited for (the delivery counts it as dropped).
"""

from __future__ import annotations

import asyncio
import logging
import queue
import re
import threading
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from monitor.logs import looks_like_token
from monitor.notify.delivery import Delivery, DeliveryObserver, DepthObserver, Undeliverable
from monitor.notify.messages import Message

#: Loggers that write tokens, passwords and URL paths at DEBUG: pinned to WARNING whatever the
#: daemon's level (``requests``' urllib3 logs ``POST /<path-with-token>``).
QUIET_LOGGERS = ("apprise", "urllib3", "requests", "requests_oauthlib")


def pin_loggers() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def _apprise() -> Any:
    """Apprise, imported and its plugins loaded on first use (once per process)."""
    with warnings.catch_warnings():  # Apprise's plugins import imghdr (deprecated in 3.11)
        warnings.simplefilter("ignore", DeprecationWarning)
        import apprise
        from apprise.apprise import N_MGR

        N_MGR.load_modules()  # type: ignore[no-untyped-call]  # now, in one thread, rather than on the first add() anywhere
    pin_loggers()  # after the import: nothing of Apprise's may lower them again
    return apprise


def url_problem(url: str) -> str | None:
    """Why Apprise cannot use ``url`` (naming its scheme at most, never the URL), or None."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        return "the url must look like scheme://…, an Apprise URL (e.g. mailto://, ntfy://)"
    apprise = _apprise()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        found = apprise.Apprise.instantiate(url, asset=_asset(apprise), suppress_exceptions=True)
    if found is None:
        return f"Apprise cannot use this {scheme}:// url (unknown service or missing parts)"
    return None


def secret_parts(url: str, *, apprise: bool = True) -> tuple[str, ...]:
    """The url and each of its parts that is a secret: what log scrubbing and failure reasons
    must never show. The password; the parts Apprise's own plugin keeps private (tokens, keys,
    webhook IDs, a user that is really a key); path segments, query values and hosts that
    look like tokens. Never an ordinary user name, host or word on its own: masking them would
    mangle every line that contains them.

    ``apprise``: ask Apprise's plugin too — only for a URL Apprise accepted (a receiver's):
    Apprise logs any other URL it is given as unparseable, in clear."""
    parts = {url}
    rest = url.split("://", 1)[1] if "://" in url else url
    split = urlsplit("x://" + rest)
    if split.password:
        parts |= {split.password, unquote(split.password)}
    if split.username and looks_like_token(split.username):
        parts |= {split.username, unquote(split.username)}
    for segment in split.path.split("/"):
        if looks_like_token(segment):
            parts |= {segment, unquote(segment)}
    for name, value in parse_qsl(split.query):
        if value and (looks_like_token(value) or _SECRET_QUERY.search(name)):
            parts.add(value)
    host = split.hostname or ""
    if looks_like_token(host) and "." not in host:  # tokens as hosts: discord://id/token
        parts.add(host)
    if apprise:
        parts |= _private_parts(url)
    return tuple(sorted(parts, key=len, reverse=True))


#: Query parameters whose value is a credential, whatever it looks like.
_SECRET_QUERY = re.compile(r"token|key|pass|secret|auth|sig|code|session", re.I)
_DELIMITERS = re.compile(r"[/:@?&=#]")


def _private_parts(url: str) -> set[str]:
    """The parts of ``url`` that Apprise's plugin masks in its own private view of it (as
    written in ``url``: a default the plugin adds is no secret of ours)."""
    try:
        apprise = _apprise()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            plugin = apprise.Apprise.instantiate(url, suppress_exceptions=True)
        if plugin is None:
            return set()
        shown, private = plugin.url(privacy=False), plugin.url(privacy=True)
    except Exception:  # a plugin's bug: the structural parts still apply
        return set()
    plain, masked = _DELIMITERS.split(shown), _DELIMITERS.split(private)
    if len(plain) != len(masked):
        return set()
    written = {url, unquote(url)}
    found = set()
    for part, view in zip(plain, masked, strict=True):
        if part != view and part:
            for form in {part, unquote(part)}:
                if any(form in text for text in written):
                    found.add(form)
    return found


def _scrub(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, "***")
    return text


def _asset(apprise: Any) -> Any:
    """Apprise's settings. ``service_timeout=0``: Apprise sends in the calling thread (the
    receiver's daemon thread) instead of handing the send to its own pool, whose threads the
    interpreter joins at exit — a blocked send would hold a stopping daemon; the receiver's
    timeout is kept by the delivery instead."""
    return apprise.AppriseAsset(
        app_id="sendcloud-integration-monitor",
        app_desc="Sendcloud integration monitor",
        secure_logging=True,
        service_timeout=0,
    )


R = TypeVar("R")


class DaemonThreadExecutor(Executor):
    """One daemon thread running what is submitted, in order. ``ThreadPoolExecutor``'s threads
    are joined when the interpreter exits, so one blocked send held a stopping daemon for as long
    as Apprise's timeout (14.6 s for an SMTP server that never greets); this one's is not."""

    def __init__(self, name: str) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self._started = False
        self._closed = False
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit after shutdown")
            if not self._started:
                self._thread.start()
                self._started = True
            self._work.put((future, lambda: fn(*args, **kwargs)))
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:  # handed to the awaiting side, as the pool does
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if cancel_futures:
                while True:
                    try:
                        item = self._work.get_nowait()
                    except queue.Empty:
                        break
                    if item is not None:
                        item[0].cancel()
            self._work.put(None)
        if wait and self._started:
            self._thread.join()


class AppriseReceiver:
    """One named receiver: messages queue (bounded), are sent from the receiver's own thread
    with retries, and count in the delivery metrics as ``receiver:NAME``."""

    def __init__(
        self,
        name: str,
        url: str,
        *,
        timeout_seconds: float = 10.0,
        max_attempts: int = 3,
        queue_size: int = 100,
        observe: DeliveryObserver,
        depth: DepthObserver,
        backoff_seconds: float = 1.0,
    ) -> None:
        self.name = f"receiver:{name}"
        self.receiver = name
        self._url = url
        self._secrets = secret_parts(url)
        self._timeout = timeout_seconds
        self._client: Any = None
        self._thread = DaemonThreadExecutor(f"receiver {name}")
        self._delivery: Delivery[Message] = Delivery(
            self.name,
            self._send,
            max_attempts=max_attempts,
            queue_size=queue_size,
            observe=observe,
            depth=depth,
            backoff_seconds=backoff_seconds,
        )

    def put(self, message: Message) -> None:
        self._delivery.put(message)

    async def send_now(self, message: Message) -> str | None:
        """Send at once, with the receiver's retries: None, or why it failed (``notify-test``)."""
        return await self._delivery.attempt(message)

    async def _send(self, message: Message) -> None:
        """One attempt, bounded by the receiver's timeout here: a send still blocked then is
        left to its thread (its sockets' own timeouts end it) and the attempt fails."""
        loop = asyncio.get_running_loop()
        try:
            reason = await asyncio.wait_for(
                loop.run_in_executor(self._thread, self._notify, message), self._timeout
            )
        except TimeoutError:
            raise Undeliverable(f"no answer within {self._timeout:g} s", retryable=True) from None
        if reason is not None:
            raise Undeliverable(reason, retryable=True)

    def _notify(self, message: Message) -> str | None:
        """In the receiver's thread: one Apprise notification; None or why it failed."""
        try:
            apprise = _apprise()
            if self._client is None:
                client = apprise.Apprise(asset=_asset(apprise))
                if not client.add(self._url):
                    return "Apprise cannot use the url"
                self._client = client
            html = _wants_html(self._client[0])
            result = self._client.notify(
                body=message.html if html else message.text,
                title=message.title,
                body_format=apprise.NotifyFormat.HTML if html else apprise.NotifyFormat.TEXT,
                notify_type=message.kind,
            )
        except Exception as exc:  # a plugin's own bug must not end the receiver
            return f"{type(exc).__name__} in Apprise"
        if result:
            return None
        return _scrub(_why(result), self._secrets)

    async def aclose(self) -> None:
        await self._delivery.aclose()
        self._thread.shutdown(wait=False, cancel_futures=True)


def _wants_html(service: Any) -> bool:
    """Whether the service's own format is HTML (e-mail): then it gets the HTML body (and
    Apprise adds the plain-text part); every other service gets the plain text."""
    found = getattr(service, "notify_format", None)
    if isinstance(found, tuple | list):
        found = found[0] if found else None
    return getattr(found, "value", found) == "html"


def _why(result: Any) -> str:
    """The last warning Apprise logged for the failed service, else the status."""
    status = getattr(getattr(result, "status", None), "name", "FAILURE")
    for service in getattr(result, "results", ()):
        if getattr(getattr(service, "status", None), "name", "") == "SUCCESS":
            continue
        messages = [str(entry) for entry in service.logs()]
        if messages:
            last = messages[-1].split(" - ", 2)[-1].strip()  # "time - LEVEL - text"
            return f"{status}: {last[:300]}"
    return status
