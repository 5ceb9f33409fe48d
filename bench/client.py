"""Benchmark: the CPU of one API GET with each candidate request path, against the simulator.

Each variant fetches the same list pages (100 records, as the daemon asks) the same number of
times, ``concurrency`` at once, in a fresh child process, and reports the child's CPU per GET
(the simulator runs in its own process and is not counted). Variants:

- ``httpx``: ``httpx.AsyncClient`` on its own transport (httpcore + h11), body streamed;
- ``httpx, no cookies``: the same without cookie persistence (``NoCookies``);
- ``httpx+aiohttp``: that client on the daemon's transport (``httpx_aiohttp``, no cookie jar);
- ``httpx+aiohttp+uvloop``: the same on uvloop's event loop, when uvloop is installed (it is
  not a dependency: measured, it did not pay);
- ``aiohttp``: bare aiohttp, no httpx at all (the floor of the HTTP part);

and for the page's records: ``json.loads`` then one validation per record, against one
``validate_json`` of the page's bytes. It reports numbers; it asserts nothing.

    python bench/client.py [--gets 2000] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

VARIANTS = ("httpx", "httpx, no cookies", "httpx+aiohttp", "httpx+aiohttp+uvloop", "aiohttp")


def child(variant: str, url: str, gets: int, concurrency: int) -> float:
    """CPU seconds per GET of ``url`` with one variant (runs in its own process)."""
    import asyncio

    import aiohttp
    import httpx

    from monitor.sendcloud.transport import NoCookies, new_transport

    auth = ("demo-public-key", "demo-secret-key")

    async def with_httpx(transport: httpx.AsyncBaseTransport | None, cookies: bool) -> int:
        jar = None if cookies else NoCookies()
        async with httpx.AsyncClient(
            auth=auth, transport=transport, timeout=10, cookies=jar
        ) as client:

            async def one() -> int:
                async with client.stream("GET", url) as response:
                    return len(await response.aread())

            return await loop_of(one)

    async def with_aiohttp() -> int:
        async with aiohttp.ClientSession(
            auth=aiohttp.BasicAuth(*auth), cookie_jar=aiohttp.DummyCookieJar()
        ) as session:

            async def one() -> int:
                async with session.get(url) as response:
                    return len(await response.read())

            return await loop_of(one)

    async def loop_of(one: object) -> int:
        async def worker(count: int) -> int:
            return sum([await one() for _ in range(count)])  # type: ignore[operator]

        await worker(concurrency)  # connections up, imports done
        results = await asyncio.gather(*(worker(gets // concurrency) for _ in range(concurrency)))
        return sum(results)

    if variant.startswith("httpx+aiohttp"):
        main = lambda: with_httpx(new_transport(max_connections=concurrency), False)  # noqa: E731
    elif variant.startswith("httpx"):
        main = lambda: with_httpx(None, variant == "httpx")  # noqa: E731
    else:
        main = with_aiohttp
    runner = asyncio.run
    if variant.endswith("uvloop"):
        import uvloop

        runner = uvloop.run
    started = time.process_time()
    runner(main())
    return (time.process_time() - started) / gets


def validation(page: bytes, repeat: int = 50) -> tuple[float, float]:
    """CPU per page: json.loads + a validation per record, and one validate_json."""
    from monitor.sendcloud.records import parse_integration, parse_page

    started = time.process_time()
    for _ in range(repeat):
        for item in json.loads(page)["data"]:
            parse_integration(item)
    per_record = (time.process_time() - started) / repeat
    started = time.process_time()
    for _ in range(repeat):
        parse_page(page)
    whole = (time.process_time() - started) / repeat
    return per_record, whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gets", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each variant (best)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(child(args.child, args.url, args.gets, args.concurrency))
        return 0

    import httpx

    from bench.daemon import free_port, start_simulator, wait

    port = free_port()
    simulator = start_simulator(1000, port)
    url = f"http://127.0.0.1:{port}/api/v3/integrations?page_size=100"
    try:
        wait(f"http://127.0.0.1:{port}/_simulator/requests")
        page = httpx.get(url, auth=("demo-public-key", "demo-secret-key")).content
        installed = importlib.util.find_spec("uvloop") is not None
        variants = [v for v in VARIANTS if installed or not v.endswith("uvloop")]
        best = dict.fromkeys(variants, float("inf"))
        for _ in range(args.repeat):  # interleaved, the best of each: noise only adds
            for variant in variants:
                command = [sys.executable, __file__, "--child", variant, "--url", url]
                command += ["--gets", str(args.gets), "--concurrency", str(args.concurrency)]
                out = subprocess.run(
                    command, check=True, capture_output=True, text=True, cwd=ROOT
                ).stdout
                best[variant] = min(best[variant], float(out))
        rows = list(best.items())
    finally:
        simulator.terminate()
        simulator.wait(timeout=15)
    reference = rows[0][1]
    print(
        f"# {os.cpu_count()} cores, Python {sys.version.split()[0]}, "
        f"{len(page) / 1024:.0f} KiB page of 100 records, {args.gets} GETs, "
        f"{args.concurrency} at once, best of {args.repeat}"
    )
    print("request path | CPU / GET | / httpx")
    for variant, seconds in rows:
        print(f"{variant} | {seconds * 1000:.3f} ms | {seconds / reference:.2f}")
    per_record, whole = validation(page)
    print(f"json.loads + per-record validation | {per_record * 1000:.3f} ms / page | 1.00")
    print(f"validate_json of the page | {whole * 1000:.3f} ms / page | {whole / per_record:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
