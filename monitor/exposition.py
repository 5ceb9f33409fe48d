"""``/metrics`` rendered mostly once per poll: scrapes that cost almost nothing.

Everything about an integration is fixed between two polls except the elapsed-time gauges of
integrations that are readable (frozen ones are fixed too). So the text of every other series
is rendered once per account snapshot — and deflate-compressed once — and a scrape only formats
the elapsed seconds, then joins the parts. For gzip the cached part ends with a full flush, so
the freshly compressed rest can follow it in the same deflate stream: one ordinary gzip member
(every client reads it), with the CRC carried on from the cached part.

The output has the same families, samples and values as prometheus-client's own rendering of
:class:`~monitor.metrics.IntegrationCollector` (tested), in the text format 0.0.4, which every
Prometheus accepts; OpenMetrics is not offered.
"""

from __future__ import annotations

import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString as _go_float

from monitor.metrics import (
    ELAPSED,
    FAMILIES,
    INFO,
    account_samples,
    elapsed_samples,
    info_labels,
    integration_samples,
)
from monitor.state import AccountSnapshot, Status, Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class _Rendered:
    """One account snapshot's fixed text per family, and what a scrape must compute."""

    snapshot: AccountSnapshot
    lines: Mapping[str, str]  # family -> its lines for this account (elapsed: frozen ones only)
    live: tuple[tuple[str, Any], ...]  # (label text, observation) whose elapsed values move


@dataclass(frozen=True)
class _Static:
    key: tuple[int, ...]
    text: bytes
    deflated: bytes  # raw deflate, ended by a full flush (no final block)
    crc: int


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no mtime, unknown OS


def gzip_member(static: _Static, live: bytes) -> bytes:
    """``static.text + live`` as one gzip member, compressing only ``live`` now."""
    tail = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = tail.compress(live) + tail.flush()
    crc = zlib.crc32(live, static.crc)
    size = (len(static.text) + len(live)) & 0xFFFFFFFF
    return _GZIP_HEADER + static.deflated + deflated + struct.pack("<II", crc, size)


class Exposition:
    """The WSGI ``/metrics`` endpoint: self-metrics from ``registry`` plus the integrations."""

    def __init__(self, store: Store, registry: CollectorRegistry, clock: Callable[[], datetime]):
        self._store = store
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Rendered] = {}
        self._static: _Static | None = None

    def render(self) -> tuple[bytes, bytes]:
        """(fixed part, part computed now), both text."""
        static, live = self._parts()
        return static.text, live

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        static, live = self._parts()
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            body = gzip_member(static, live)
            headers.append(("Content-Encoding", "gzip"))
        else:
            body = static.text + live
        headers.append(("Content-Length", str(len(body))))
        start_response("200 OK", headers)
        return [body]

    def _parts(self) -> tuple[_Static, bytes]:
        now = self._clock()
        snapshots = self._store.snapshots()
        rendered = [self._account(account, snapshot) for account, snapshot in snapshots.items()]
        static = self._static_part(rendered)
        live = "".join(_elapsed_family(name, rendered, now) for name in _ELAPSED_ORDER)
        return static, generate_latest(self._registry) + live.encode()

    def _account(self, account: str, snapshot: AccountSnapshot) -> _Rendered:
        with self._lock:
            cached = self._accounts.get(account)
        if cached is not None and cached.snapshot is snapshot:
            return cached
        rendered = _render_account(account, snapshot)
        with self._lock:
            self._accounts = {
                **{k: v for k, v in self._accounts.items() if k in self._store.snapshots()},
                account: rendered,
            }
        return rendered

    def _static_part(self, rendered: list[_Rendered]) -> _Static:
        key = tuple(id(r.snapshot) for r in rendered)
        with self._lock:
            static = self._static
        if static is not None and static.key == key:
            return static
        text = "".join(
            _header(family.name, family.help)
            + "".join(r.lines.get(family.name, "") for r in rendered)
            for family in FAMILIES
            if family.name not in ELAPSED
        ).encode()
        head = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        deflated = head.compress(text) + head.flush(zlib.Z_FULL_FLUSH)
        static = _Static(key, text, deflated, zlib.crc32(text))
        with self._lock:
            self._static = static
        return static


_ELAPSED_ORDER = tuple(f.name for f in FAMILIES if f.name in ELAPSED)
_HELP = {f.name: f.help for f in FAMILIES}


def _render_account(account: str, snapshot: AccountSnapshot) -> _Rendered:
    """The fixed lines of one account's snapshot, per family."""
    lines: dict[str, list[str]] = {f.name: [] for f in FAMILIES}
    account_label = f'account="{_escape(account)}"'
    for name, value in account_samples(snapshot):
        lines[name].append(f"{name}{{{account_label}}} {_number(value)}\n")
    live: list[tuple[str, Any]] = []
    for observation in snapshot.integrations.values():
        labels = f'{account_label},integration_id="{observation.integration_id}"'
        for name, value in integration_samples(observation):
            lines[name].append(f"{name}{{{labels}}} {_number(value)}\n")
        info = info_labels(observation)
        if info is not None:
            extra = "".join(f',{k}="{_escape(v)}"' for k, v in info.items())
            lines[INFO].append(f"{INFO}{{{labels}{extra}}} 1.0\n")
        if not observation.has_values:
            continue
        if observation.status is Status.OK:
            live.append((labels, observation))
        else:  # frozen at its last read: rendered once, like everything else
            assert observation.health is not None
            for name, value in elapsed_samples(observation, observation.health.read_at):
                lines[name].append(f"{name}{{{labels}}} {_number(value)}\n")
    return _Rendered(snapshot, {k: "".join(v) for k, v in lines.items()}, tuple(live))


def _elapsed_family(name: str, rendered: Iterable[_Rendered], now: datetime) -> str:
    return _header(name, _HELP[name]) + "".join(_elapsed_lines(name, rendered, now))


def _elapsed_lines(name: str, rendered: Iterable[_Rendered], now: datetime) -> Iterator[str]:
    for r in rendered:
        yield r.lines.get(name, "")
        for labels, observation in r.live:
            for sample, value in elapsed_samples(observation, now):
                if sample == name:
                    yield f"{name}{{{labels}}} {_number(value)}\n"


def _number(value: float) -> str:
    """A value exactly as prometheus-client writes it."""
    return str(_go_float(value))  # type: ignore[no-untyped-call]


def _header(name: str, help_text: str) -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} gauge\n"


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
