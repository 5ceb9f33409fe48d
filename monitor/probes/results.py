"""What a probe found, in one word, and what a run of probes means: pure, time passed in.

Each probe of a target ends in one :class:`Result`; :func:`advance` folds it into the target's
:class:`ShopProbe` (its latest outcome and how many probes in a row failed). The alerts read
that: a shop is unreachable after ``unreachable_probes`` failing probes in a row, and its
certificate is expiring when its ``notAfter`` comes within the warning window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum


class Result(StrEnum):
    """The ``result`` label of ``integration_shop_probe_result`` (a fixed set)."""

    OK = "ok"  # the TLS handshake verified: chain, dates and host name
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    UNTRUSTED = "untrusted"  # self-signed, or an issuer the trust store does not know
    HOSTNAME_MISMATCH = "hostname_mismatch"
    TLS_ERROR = "tls_error"  # the handshake failed otherwise (no TLS there, protocol error)
    REFUSED = "refused"  # the connection was refused, reset or could not be made
    TIMEOUT = "timeout"
    DNS = "dns"  # the host name does not resolve
    PRIVATE_ADDRESS = "private_address"  # not probed: it resolves to a non-public address
    PLAINTEXT_OK = "plaintext_ok"  # an http:// shop: the TCP connect succeeded


RESULTS = tuple(Result)
#: Results of a probe that reached the shop as Sendcloud would.
SUCCESSFUL = frozenset({Result.OK, Result.PLAINTEXT_OK})
#: Results that are no probe at all: the monitor's own policy kept it from connecting.
NOT_PROBED = frozenset({Result.PRIVATE_ADDRESS})
#: Results of a probe that failed: what Sendcloud's fetches would fail on too.
FAILING = frozenset(RESULTS) - SUCCESSFUL - NOT_PROBED

#: OpenSSL's verify codes (``ssl.SSLCertVerificationError.verify_code``) and their result.
VERIFY_CODES = {
    9: Result.NOT_YET_VALID,  # X509_V_ERR_CERT_NOT_YET_VALID
    10: Result.EXPIRED,  # X509_V_ERR_CERT_HAS_EXPIRED
    62: Result.HOSTNAME_MISMATCH,  # X509_V_ERR_HOSTNAME_MISMATCH
    64: Result.HOSTNAME_MISMATCH,  # X509_V_ERR_IP_ADDRESS_MISMATCH
}


def verify_result(verify_code: int) -> Result:
    """The result of a failed certificate verification: expired, not yet valid, for another
    host name, or — every other code (18/19 self-signed, 20/21 unknown issuer, a revoked or
    otherwise unusable chain) — untrusted."""
    return VERIFY_CODES.get(verify_code, Result.UNTRUSTED)


@dataclass(frozen=True, slots=True)
class Outcome:
    """One probe of one target."""

    result: Result
    at: datetime  # when the probe ended
    #: the leaf certificate's notAfter, whenever a certificate was read (also an untrusted one)
    expires_at: datetime | None = None
    #: the leaf's issuer, as an organisation (or common) name: one CA, one incident
    issuer: str | None = None
    #: a short reason (the TLS library's), never anything the shop sent
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class ShopProbe:
    """A target's latest outcome and its run of failures, shared by every integration on it."""

    target: str
    outcome: Outcome
    #: failing probes in a row, this one included (0 after a success or a probe not made)
    failures: int = 0
    #: when the current run of failures began
    failing_since: datetime | None = None

    @property
    def result(self) -> Result:
        return self.outcome.result

    @property
    def success(self) -> bool:
        return self.outcome.result in SUCCESSFUL

    @property
    def failing(self) -> bool:
        return self.outcome.result in FAILING

    def visible(self) -> tuple[object, ...]:
        """What the metrics and alerts show of it (not when it was last checked)."""
        o = self.outcome
        return (o.result, o.expires_at, o.issuer, self.failures)


def advance(previous: ShopProbe | None, target: str, outcome: Outcome) -> ShopProbe:
    """The target after one more probe."""
    if outcome.result not in FAILING:
        return ShopProbe(target, outcome)
    if previous is not None and previous.failures > 0:
        return replace(previous, outcome=outcome, failures=previous.failures + 1)
    return ShopProbe(target, outcome, failures=1, failing_since=outcome.at)


def days_left(expires_at: datetime, now: datetime) -> float:
    """Days until ``expires_at`` (negative once it passed)."""
    return (expires_at - now).total_seconds() / 86400.0


def describe(probe: ShopProbe, now: datetime) -> str:
    """The probe's result in plain words, for the status page and ``check``."""
    outcome = probe.outcome
    left = days_left(outcome.expires_at, now) if outcome.expires_at is not None else None
    words = {
        Result.OK: "TLS certificate valid",
        Result.EXPIRED: "TLS certificate expired",
        Result.NOT_YET_VALID: "TLS certificate not valid yet",
        Result.UNTRUSTED: "TLS certificate not trusted (self-signed or unknown issuer)",
        Result.HOSTNAME_MISMATCH: "TLS certificate is for another host name",
        Result.TLS_ERROR: "TLS handshake failed",
        Result.REFUSED: "connection refused or impossible",
        Result.TIMEOUT: "no answer in time",
        Result.DNS: "host name does not resolve",
        Result.PRIVATE_ADDRESS: "not probed: resolves to a private address",
        Result.PLAINTEXT_OK: "reachable, plain HTTP without TLS",
    }[outcome.result]
    if left is not None and outcome.result is not Result.EXPIRED:
        words += f", expires in {_days(left)}" if left >= 0 else f", expired {_days(-left)} ago"
    elif left is not None:
        words += f" {_days(-left)} ago" if left < 0 else ""
    if probe.failures > 1:
        words += f" ({probe.failures} probes in a row)"
    return words


def _days(days: float) -> str:
    if days >= 2:
        return f"{round(days)} days"
    hours = int(days * 24)
    return f"{hours} hours" if hours != 1 else "1 hour"
