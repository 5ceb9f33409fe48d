"""Addresses: loopback hosts and the https rule, listen addresses, and shards (which replica
polls which account)."""

from __future__ import annotations

import hashlib
import ipaddress

import httpx


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or localhost: traffic that never leaves the machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_https(url: str, field_name: str, *, allowed: bool) -> None:
    """Refuse a URL that would carry credentials or alert contents in clear text."""
    parsed = httpx.URL(url)
    if parsed.scheme == "https" or allowed or is_loopback(parsed.host):
        return
    raise ValueError(
        f"{field_name} must be https:// (it would carry credentials or alerts in clear text); "
        "http:// is accepted only for a loopback host (127.0.0.0/8, ::1, localhost) or with "
        "allow_insecure_http: true"
    )


def parse_shard(value: str | None) -> tuple[int, int] | None:
    """``"i/n"`` as (i, n), checked."""
    if value is None or value == "":
        return None
    index, sep, count = value.partition("/")
    if not sep or not index.strip().isdigit() or not count.strip().isdigit():
        raise ValueError("expected i/n, e.g. 0/3 for the first of three replicas")
    i, n = int(index), int(count)
    if n < 1 or not 0 <= i < n:
        raise ValueError("expected 0 <= i < n in i/n")
    return i, n


def shard_of(account: str, count: int) -> int:
    """The shard of an account, the same in every replica: rendezvous (highest random weight)
    hashing of its name over the ``count`` shards. Going from n to n + 1 replicas moves only
    the accounts the new shard wins, about 1/(n + 1) of them (a modulo moves n/(n + 1))."""

    def weight(shard: int) -> int:
        digest = hashlib.sha256(f"{shard}\0{account}".encode()).digest()
        return int.from_bytes(digest[:8], "big")

    return max(range(count), key=weight)


def parse_listen_address(value: str) -> tuple[str, int]:
    """Split ``host:port`` (``[::1]:9877`` for IPv6) and check the port."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError("expected host:port, e.g. 0.0.0.0:9877")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError("port must be between 0 and 65535")
    return host.strip("[]") or "0.0.0.0", port
