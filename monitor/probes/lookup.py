"""Resolving a shop's host once, and refusing addresses that are not public.

A shop URL comes from outside (the Sendcloud record): a probe must never become a way into the
operator's network. So the host is resolved once, every address it gave is checked — loopback,
private, link-local (cloud metadata at 169.254.169.254 included), multicast, reserved and
unspecified addresses, and IPv6 forms that embed one (``::ffff:127.0.0.1``, 6to4, Teredo,
NAT64) are refused unless ``allow_private_addresses`` — and the probe connects to the address
that was checked, never resolving the name a second time.

Lookups run in a few daemon threads of the probes' own (``getaddrinfo`` blocks): a lookup that
hangs holds one of them, never the event loop, the default executor the API client resolves
its own host in, nor the process at exit.
"""

from __future__ import annotations

import asyncio
import ipaddress
import queue
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class NotResolved(Exception):
    """The host name does not resolve."""


class PrivateAddress(Exception):
    """The host resolves to an address that is not public (never connected to)."""


def forbidden(address: IPAddress) -> bool:
    """Whether an address is not a public one (or embeds one that is not)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None and forbidden(embedded):
            return True
    return (
        not address.is_global
        or address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
    )


class Resolver:
    """``getaddrinfo`` in daemon threads, at most ``threads`` lookups at once."""

    def __init__(self, threads: int = 4) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._work, name=f"probe lookup {n}", daemon=True)
            for n in range(max(1, threads))
        ]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            call, future = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the waiting coroutine
                future.set_exception(exc)

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """Every address ``host`` resolves to (IPv4 and IPv6, in the system's order)."""
        future: Future[list[Any]] = Future()
        self._jobs.put((lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), future))
        try:
            found = await asyncio.wrap_future(future)
        except (socket.gaierror, UnicodeError) as exc:
            raise NotResolved(str(exc)) from None
        addresses: list[IPAddress] = []
        for _family, _type, _proto, _name, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise NotResolved("no address")
        return addresses

    async def public(self, host: str, port: int, *, allow_private: bool) -> list[IPAddress]:
        """The addresses to connect to: all of them, or PrivateAddress when any is not public
        (one private address among public ones is the DNS-rebinding case)."""
        addresses = await self.addresses(host, port)
        if not allow_private and any(forbidden(a) for a in addresses):
            raise PrivateAddress(host)
        return addresses

    def close(self) -> None:
        """Let the threads end (a lookup in progress ends on its own; nobody waits for it)."""
        for _ in self._threads:
            self._jobs.put(None)
