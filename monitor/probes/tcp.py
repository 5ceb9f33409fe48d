"""The TCP prober, for ``http://`` shops: a connect, and nothing after it (no request)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime

from monitor.probes.lookup import IPAddress
from monitor.probes.results import Outcome, Result
from monitor.probes.targets import Target
from monitor.probes.tls import close, connect_failure


async def probe_tcp(
    target: Target, addresses: Sequence[IPAddress], *, clock: Callable[[], datetime]
) -> Outcome:
    """``plaintext_ok`` once an address accepts the connection, else ``refused``. The caller
    bounds the time (``asyncio.timeout``)."""
    failure: OSError | None = None
    for address in addresses:
        try:
            _, writer = await asyncio.open_connection(str(address), target.port)
        except OSError as exc:
            failure = exc
            continue
        await close(writer)
        return Outcome(Result.PLAINTEXT_OK, clock())
    return Outcome(Result.REFUSED, clock(), detail=connect_failure(failure))
