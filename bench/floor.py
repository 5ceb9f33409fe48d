"""The floor of a poll round: the same GETs the daemon makes, with nothing else.

For each account it walks the integration list (100 a page, following ``Link: rel="next"``)
and reads the first page of the account's exception logs, with the daemon's request path
(``httpx.AsyncClient`` on ``monitor.sendcloud.transport``, no cookies, on asyncio's loop), and
validates each list page as the daemon does (``parse_page``). No budget, no retries, no
metrics, no health, no alerting, no history. It prints, as JSON, its own CPU per round (the
best of three after a first that warms imports and connections up) and the GETs per round.

    python bench/floor.py --api http://127.0.0.1:PORT/api/v3 --accounts 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from monitor.sendcloud.records import parse_page  # noqa: E402
from monitor.sendcloud.transport import NoCookies, new_transport  # noqa: E402

AUTH = ("demo-public-key", "demo-secret-key")
#: Accounts polled at once (the daemon's polls of many accounts overlap too).
CONCURRENCY = 8


async def one_account(client: httpx.AsyncClient, api: str) -> int:
    """One account's poll: the whole list, validated, and one page of logs; its GETs."""
    gets = 0
    url: httpx.URL | None = httpx.URL(f"{api}/integrations", params={"page_size": 100})
    while url is not None:
        response = await client.get(url)
        gets += 1
        records = parse_page(response.content)
        assert records is not None, "the simulator's pages are clean"
        link = response.links.get("next", {}).get("url")
        url = response.url.join(link) if link else None
    response = await client.get(f"{api}/integrations/logs", params={"page_size": 100})
    json.loads(response.content)
    return gets + 1


async def rounds(api: str, accounts: int, count: int) -> list[tuple[float, int]]:
    """(CPU seconds, GETs) of each of ``count`` rounds over ``accounts`` accounts."""
    slots = asyncio.Semaphore(CONCURRENCY)
    transport = new_transport(max_connections=64)
    async with httpx.AsyncClient(
        auth=AUTH, transport=transport, cookies=NoCookies(), timeout=30
    ) as client:

        async def polled(_: int) -> int:
            async with slots:
                return await one_account(client, api)

        results = []
        for _ in range(count):
            started = time.process_time()
            gets = sum(await asyncio.gather(*(polled(n) for n in range(accounts))))
            results.append((time.process_time() - started, gets))
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True)
    parser.add_argument("--accounts", type=int, default=1)
    args = parser.parse_args()
    measured = asyncio.run(rounds(args.api, args.accounts, 4))
    cpu, gets = min(measured[1:])  # the first warms up; the best of the others: noise only adds
    print(json.dumps({"cpu_per_round": cpu, "gets_per_round": gets}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
