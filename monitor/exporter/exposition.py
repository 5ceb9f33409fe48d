"""``/metrics`` rendered mostly once per poll: scrapes that cost almost nothing.

Everything about an integration is fixed between two polls except the elapsed-time gauges of
integrations that are readable (frozen ones are fixed too). So the text of every other series
is rendered once per account snapshot and a scrape only formats the elapsed seconds.

The rendered text is kept only deflate-compressed (at 10 000 integrations 7 MB of text is well
under 1 MB), one :class:`Segment` per account and family. Each segment ends with a full flush,
so segments concatenate into one valid deflate stream and their CRCs combine: when one account
polls, the fixed part is re-assembled without compressing anything again. A gzip scrape sends
the fixed part as it is, followed by the freshly compressed elapsed gauges, as one ordinary gzip
member (every client reads it); a plain scrape inflates it on the way out.

The output has the same families, samples and values as prometheus-client's own rendering of
the same samples (a reference collector in the tests proves it), in the text format 0.0.4,
which every Prometheus accepts; OpenMetrics is not offered.
"""

from __future__ import annotations

import itertools
import struct
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.utils import floatToGoString as _go_float

from monitor.exporter.families import (
    ELAPSED,
    FAMILIES,
    INFO,
    account_samples,
    elapsed_samples,
    finding_samples,
    info_labels,
    integration_samples,
)
from monitor.store import AccountSnapshot, Observation, ReadOutcome, Store

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
StartResponse = Callable[..., Any]


@dataclass(frozen=True, slots=True)
class Segment:
    """Some exposition text, kept only compressed: a raw deflate stream of its own, ended by
    a full flush and so byte-aligned with no final block. Such streams can be concatenated
    and still form one valid stream, which is how the fixed part is assembled."""

    deflated: bytes
    crc: int  # CRC-32 of the text
    text_size: int  # length of the text (not of ``deflated``)

    @classmethod
    def of(cls, text: bytes) -> Segment:
        packer = Packer()
        packer.add(text)
        return packer.segment()


class Packer:
    """Builds a :class:`Segment` from text given piece by piece (never held whole)."""

    def __init__(self) -> None:
        self._packer = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
        self._parts: list[bytes] = []
        self._crc = 0
        self._size = 0

    def add(self, text: bytes) -> None:
        self._parts.append(self._packer.compress(text))
        self._crc = zlib.crc32(text, self._crc)
        self._size += len(text)

    def segment(self) -> Segment:
        self._parts.append(self._packer.flush(zlib.Z_FULL_FLUSH))
        return Segment(b"".join(self._parts), self._crc, self._size)


def joined(segments: Iterable[Segment]) -> Segment:
    """The segments one after the other, without decompressing them: deflate streams
    concatenate, and CRC-32 combines (see :func:`crc32_combine`)."""
    parts, crc, size = [], 0, 0
    for segment in segments:
        if segment.text_size:
            parts.append(segment.deflated)
            crc = crc32_combine(crc, segment.crc, segment.text_size)
            size += segment.text_size
    return Segment(b"".join(parts), crc, size)


_ZEROS = bytes(1 << 20)


def crc32_combine(crc_a: int, crc_b: int, size_b: int) -> int:
    """CRC-32 of ``a + b`` from the CRCs of ``a`` and ``b`` and the length of ``b``.

    CRC-32 is affine in its initial value: ``crc32(b, c) ^ crc32(b, 0)`` does not depend on
    ``b``, only on its length, so it equals the same expression for ``size_b`` zero bytes.
    """
    shifted, base = crc_a, 0
    remaining = size_b
    while remaining:
        view = memoryview(_ZEROS)[: min(remaining, len(_ZEROS))]
        shifted, base = zlib.crc32(view, shifted), zlib.crc32(view, base)
        remaining -= len(view)
    return crc_b ^ shifted ^ base


@dataclass(frozen=True)
class _Rendered:
    """One account snapshot's fixed text per family, and what a scrape must compute."""

    snapshot: AccountSnapshot
    fixed: Mapping[str, Segment]  # family -> its lines for this account (not the elapsed ones)
    frozen: Mapping[str, bytes]  # elapsed family -> lines of integrations frozen at a read
    account_label: str  # 'account="..."', escaped
    live: tuple[Observation, ...]  # integrations whose elapsed values move


@dataclass(frozen=True)
class FixedPart:
    """Every family but the elapsed ones, for the accounts' snapshots in ``key``."""

    key: tuple[int, ...]
    segment: Segment

    def text(self) -> bytes:
        return b"".join(inflated(self.segment.deflated))


_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # no name, no mtime, unknown OS


def gzip_member(fixed: Segment, live: bytes) -> bytes:
    """``fixed`` text + ``live`` as one gzip member, compressing only ``live`` now."""
    tail = zlib.compressobj(1, zlib.DEFLATED, -zlib.MAX_WBITS)
    deflated = tail.compress(live) + tail.flush()
    crc = zlib.crc32(live, fixed.crc)
    size = (fixed.text_size + len(live)) & 0xFFFFFFFF
    return _GZIP_HEADER + fixed.deflated + deflated + struct.pack("<II", crc, size)


def inflated(deflated: bytes, chunk_bytes: int = 64 * 1024) -> Iterator[bytes]:
    """The text of a raw deflate stream, in pieces (a plain scrape never holds it whole)."""
    unpacker = zlib.decompressobj(-zlib.MAX_WBITS)
    data = deflated
    while data:
        piece = unpacker.decompress(data, chunk_bytes)
        data = unpacker.unconsumed_tail
        if piece:
            yield piece


class Exposition:
    """The WSGI ``/metrics`` endpoint: self-metrics from ``registry`` plus the integrations."""

    def __init__(self, store: Store, registry: CollectorRegistry, clock: Callable[[], datetime]):
        self._store = store
        self._registry = registry
        self._clock = clock
        self._lock = threading.Lock()
        self._accounts: dict[str, _Rendered] = {}
        self._fixed: FixedPart | None = None

    def parts(self) -> tuple[FixedPart, bytes]:
        """The exposition in its two parts: the fixed part (rendered once per snapshot, kept
        deflated) and the text computed now (self-metrics, elapsed seconds), in that order."""
        return self._parts()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        fixed, live = self._parts()
        headers = [("Content-Type", CONTENT_TYPE), ("Vary", "Accept-Encoding")]
        if accepts_gzip(environ.get("HTTP_ACCEPT_ENCODING", "")):
            body = gzip_member(fixed.segment, live)
            headers += [("Content-Encoding", "gzip"), ("Content-Length", str(len(body)))]
            start_response("200 OK", headers)
            return [body]
        headers.append(("Content-Length", str(fixed.segment.text_size + len(live))))
        start_response("200 OK", headers)
        return itertools.chain(inflated(fixed.segment.deflated), [live])

    def _parts(self) -> tuple[FixedPart, bytes]:
        now = self._clock()
        snapshots = self._store.snapshots()
        with self._lock:  # accounts that left the store: their text goes
            for gone in [k for k in self._accounts if k not in snapshots]:
                del self._accounts[gone]
        rendered = [self._account(account, snapshot) for account, snapshot in snapshots.items()]
        fixed = self._fixed_part(rendered)
        live = b"".join(_elapsed_family(name, rendered, now) for name in _ELAPSED_ORDER)
        return fixed, generate_latest(self._registry) + live

    def _account(self, account: str, snapshot: AccountSnapshot) -> _Rendered:
        with self._lock:
            cached = self._accounts.get(account)
        if cached is not None and cached.snapshot is snapshot:
            return cached
        del cached
        with self._lock:  # let go of the old text first: the new one can reuse its memory
            self._accounts.pop(account, None)
            self._fixed = None
        rendered = _render_account(account, snapshot)
        with self._lock:
            self._accounts[account] = rendered
        return rendered

    def _fixed_part(self, rendered: list[_Rendered]) -> FixedPart:
        key = tuple(id(r.snapshot) for r in rendered)
        with self._lock:
            fixed = self._fixed
        if fixed is not None and fixed.key == key:
            return fixed
        segments = (
            segment
            for family in _FIXED_ORDER
            for segment in (_HEADERS[family], *(r.fixed[family] for r in rendered))
        )
        fixed = FixedPart(key, joined(segments))
        with self._lock:
            self._fixed = fixed
        return fixed


def accepts_gzip(header: str) -> bool:
    """Whether an Accept-Encoding header admits gzip (RFC 9110: ``gzip;q=0`` refuses it, and
    ``*`` stands for any coding not named)."""
    weights: dict[str, float] = {}
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        weight = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value)
                except ValueError:
                    weight = 0.0
        weights[coding.strip().lower()] = weight
    return weights.get("gzip", weights.get("x-gzip", weights.get("*", 0.0))) > 0


_ELAPSED_ORDER = tuple(f.name for f in FAMILIES if f.name in ELAPSED)
_FIXED_ORDER = tuple(f.name for f in FAMILIES if f.name not in ELAPSED)
_HELP = {f.name: f.help for f in FAMILIES}
_LABEL = {f.name: f.label for f in FAMILIES if f.label is not None}


#: Observations rendered between two flushes of text into bytes: the strings of one batch
#: are all that is alive at once (rendering 10 000 integrations in one go costs 30 MB of RSS).
_BATCH = 1000


def _render_account(account: str, snapshot: AccountSnapshot) -> _Rendered:
    """The fixed lines of one account's snapshot, per family (compressed as they come)."""
    packers = {name: Packer() for name in _FIXED_ORDER}
    frozen: dict[str, list[bytes]] = {name: [] for name in _ELAPSED_ORDER}
    lines: dict[str, list[str]] = {f.name: [] for f in FAMILIES}

    def flush() -> None:
        for name, batch in lines.items():
            if batch:
                text = "".join(batch).encode()
                if name in packers:
                    packers[name].add(text)
                else:
                    frozen[name].append(text)
                batch.clear()

    account_label = f'account="{_escape(account)}"'
    for name, value in account_samples(snapshot):
        lines[name].append(f"{name}{{{account_label}}} {_number(value)}\n")
    live: list[Observation] = []
    for count, observation in enumerate(snapshot.integrations.values(), 1):
        if count % _BATCH == 0:
            flush()
        labels = f'{account_label},integration_id="{observation.integration_id}"'
        for name, value in integration_samples(observation, snapshot.exception_counts):
            lines[name].append(f"{name}{{{labels}}} {_number(value)}\n")
        findings = snapshot.findings.get(observation.integration_id)
        for name, extra, value in finding_samples(findings):
            label = "" if extra is None else f',{_LABEL[name]}="{_escape(extra)}"'
            lines[name].append(f"{name}{{{labels}{label}}} {_number(value)}\n")
        info = info_labels(observation)
        if info is not None:
            extra = "".join(f',{k}="{_escape(v)}"' for k, v in info.items())
            lines[INFO].append(f"{INFO}{{{labels}{extra}}} 1.0\n")
        if not observation.has_values:
            continue
        if observation.status is ReadOutcome.OK:
            live.append(observation)
        else:  # frozen at its last read: rendered once, like everything else
            assert observation.health is not None
            for name, value in elapsed_samples(observation, observation.health.read_at):
                lines[name].append(f"{name}{{{labels}}} {_number(value)}\n")
    flush()
    return _Rendered(
        snapshot,
        {name: packer.segment() for name, packer in packers.items()},
        {name: b"".join(parts) for name, parts in frozen.items()},
        account_label,
        tuple(live),
    )


def _elapsed_family(name: str, rendered: Iterable[_Rendered], now: datetime) -> bytes:
    return _header(name, _HELP[name]).encode() + b"".join(_elapsed_lines(name, rendered, now))


def _elapsed_lines(name: str, rendered: Iterable[_Rendered], now: datetime) -> Iterator[bytes]:
    for r in rendered:
        yield r.frozen[name]
        prefix = f"{name}{{{r.account_label},integration_id="
        lines = "".join(
            f'{prefix}"{observation.integration_id}"}} {_number(value)}\n'
            for observation in r.live
            for sample, value in elapsed_samples(observation, now)
            if sample == name
        )
        yield lines.encode()


def _number(value: float) -> str:
    """A value exactly as prometheus-client writes it."""
    return str(_go_float(value))  # type: ignore[no-untyped-call]


def _header(name: str, help_text: str, kind: str = "gauge") -> str:
    escaped = help_text.replace("\\", r"\\").replace("\n", r"\n")
    return f"# HELP {name} {escaped}\n# TYPE {name} {kind}\n"


_HEADERS = {f.name: Segment.of(_header(f.name, f.help, f.kind).encode()) for f in FAMILIES}


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
