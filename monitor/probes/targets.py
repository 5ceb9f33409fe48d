"""What a shop URL is probed at: pure.

Every integration with an ``http://`` or ``https://`` shop URL has a :class:`Target` — its
scheme, host and port. Integrations that share a target share one probe: a thousand shops of
one SaaS platform behind one host cost one handshake per interval, not a thousand.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PORTS = {"https": 443, "http": 80}


@dataclass(frozen=True, slots=True, order=True)
class Target:
    """One host and port to probe: a TLS handshake for ``https``, a TCP connect for ``http``."""

    scheme: str  # "https" or "http"
    host: str  # lower case, IPv6 without brackets, no trailing dot
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme == "https"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def target_of(shop_url: str | None) -> Target | None:
    """The target of a shop URL, or None when there is nothing to probe (no URL, another
    scheme, no host, an invalid port)."""
    if not shop_url:
        return None
    try:
        parts = urlsplit(shop_url.strip())
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".")
        port = parts.port
    except ValueError:  # an invalid port or a broken IPv6 literal
        return None
    if scheme not in DEFAULT_PORTS or not host or port == 0:
        return None
    return Target(scheme, host.lower(), port or DEFAULT_PORTS[scheme])
