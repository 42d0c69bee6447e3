"""One observation cycle of a fake fleet against bare aiohttp GETs of the same fleet.

Run: ``.venv/bin/python -m benchmarks.bench_observe`` (``--help`` for options).

The fleet (benchmarks/fleet.py) is one aiohttp process on loopback, one port per scheduler,
serving the /metrics payload captured from a busy real scheduler (benchmarks/data/, see
the header of scheduler_metrics.txt; ``--capture`` redoes it), with sample values varied per
scheduler and per request. For each N it prints medians of alternate runs in the same
process: the wall time of a steady cycle (``Observer.observe``: GET, size cap, family scan,
parse, Observation; usage not due), the wall time of bare GETs + reads of the same URLs at
the same concurrency through a plain aiohttp session with the same connection limit and
timeout (URLs as strings, and parsed beforehand as the observer does), the ratios, and the
CPU time of this process for both (steadier than wall time on a shared machine); plus the
first cycle, which also opens the connections and polls /json/identity.json everywhere.
``--compare-transports`` times aiohttp against httpx with the aiohttp transport;
``--gc-freeze`` calls gc.freeze() once the connections are open.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import aiohttp
from yarl import URL

from autoscaler.observe import Observer
from benchmarks.fleet import IDENTITY, METRICS, fake_fleet


async def drain(
    urls: Sequence[str] | Sequence[URL], concurrency: int, get: Callable[[Any], Awaitable[bytes]]
) -> None:
    pending = iter(urls)

    async def worker() -> None:
        for url in pending:
            await get(url)

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(urls)))))


def aiohttp_session(concurrency: int, timeout: float) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=timeout),
    )


async def timed(run: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await run()
    return time.perf_counter() - start


async def timed_both(run: Callable[[], Awaitable[object]]) -> tuple[float, float]:
    """Wall time, and CPU time of this process (steadier on a machine shared with others)."""
    start, cpu = time.perf_counter(), time.process_time()
    await run()
    return time.perf_counter() - start, time.process_time() - cpu


async def bench_fleet(
    urls: list[str], concurrency: int, repeat: int, freeze: bool = False
) -> dict[str, float]:
    """Medians of alternate runs: wall and client CPU time of observe and of bare GETs.

    Two baselines: GETs of the URL strings (what plain aiohttp code does), and GETs of URLs
    parsed beforehand (the observer parses each scheduler's URL once, which saves ~10%).
    """
    targets = [(f"c{i}", url) for i, url in enumerate(urls)]
    metrics_urls = [url + "/metrics" for url in urls]
    parsed_urls = [URL(url) for url in metrics_urls]
    observer = Observer(concurrency=concurrency, timeout=10.0, usage_interval=3600.0)
    async with observer, aiohttp_session(concurrency, 10.0) as session:

        async def bare_get(url: str | URL) -> bytes:
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.read()

        async def bare() -> None:
            await drain(metrics_urls, concurrency, bare_get)

        async def bare_parsed() -> None:
            await drain(parsed_urls, concurrency, bare_get)

        async def observe() -> None:
            results = await observer.observe(targets)
            failed = [o.error for o in results.values() if o.error]
            if failed:
                raise RuntimeError(f"{len(failed)} polls failed, e.g. {failed[0]}")

        first = await timed(observe)
        await bare()  # open the bare session's connections too
        if freeze:  # move what exists now (connections...) out of the collector's sight
            gc.freeze()
        runs = {"bare": bare, "bare_parsed": bare_parsed, "observe": observe}
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
        for _ in range(repeat):
            for name, run in runs.items():
                times[name].append(await timed_both(run))
    result = {"first": first}
    for name, measured in times.items():
        result[name] = statistics.median(wall for wall, _ in measured)
        result[name + "_cpu"] = statistics.median(cpu for _, cpu in measured)
    return result


async def compare_transports(urls: list[str], concurrency: int, repeat: int) -> None:
    import httpx
    from httpx_aiohttp import AiohttpTransport

    metrics_urls = [url + "/metrics" for url in urls]
    async with aiohttp_session(concurrency, 10.0) as session:

        async def aiohttp_get(url: str) -> bytes:
            async with session.get(url) as response:
                return await response.read()

        transport = AiohttpTransport(client=lambda: aiohttp_session(concurrency, 10.0))
        async with httpx.AsyncClient(transport=transport, timeout=10.0) as client:

            async def httpx_get(url: str) -> bytes:
                return (await client.get(url)).content

            times: dict[str, list[float]] = {"aiohttp": [], "httpx + aiohttp transport": []}
            for get in (aiohttp_get, httpx_get):  # warm up: open the connections
                await drain(metrics_urls, concurrency, get)
            for _ in range(repeat):
                for name, get in zip(times, (aiohttp_get, httpx_get), strict=True):
                    times[name].append(
                        await timed(lambda g=get: drain(metrics_urls, concurrency, g))
                    )  # type: ignore[misc]
    print(f"\n{len(urls)} GETs of /metrics, {concurrency} in flight (median of {repeat})")
    for name, values in times.items():
        print(f"  {name:<28} {statistics.median(values):6.3f} s")


def capture() -> None:
    """Record /metrics of a busy real scheduler and /json/identity.json of it afterwards."""
    from distributed import Client

    from autoscaler.demo.processes import start_scheduler, start_worker, stop_process

    def get(url: str) -> bytes:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.read()

    async def busy(address: str, http_url: str) -> tuple[bytes, bytes]:
        async with Client(address, asynchronous=True) as client:
            await client.wait_for_workers(2)
            futures = []
            for prefix in ("load", "clean", "join", "reduce"):
                keys = [f"{prefix}-{i}" for i in range(100)]
                futures += client.map(sleep_briefly, range(100), key=keys)
            await asyncio.sleep(2)
            metrics = await asyncio.to_thread(get, http_url + "/metrics")
            await client.gather(futures)
            await asyncio.sleep(3)  # identity.json answers 500 until workers are idle again
            identity = await asyncio.to_thread(get, http_url + "/json/identity.json")
            return metrics, identity

    with tempfile.TemporaryDirectory() as workdir:
        scheduler = start_scheduler(Path(workdir))
        workers = [start_worker(scheduler.address, name=f"w{i}", nthreads=2) for i in range(2)]
        try:
            metrics, identity = asyncio.run(busy(scheduler.address, scheduler.http_url))
        finally:
            for worker in workers:
                stop_process(worker)
            scheduler.stop()
    import distributed

    header = (
        f"# Captured by `python -m benchmarks.bench_observe --capture` (distributed "
        f"{distributed.__version__}): GET /metrics of a real scheduler with 2 workers of 2 "
        "threads,\n# 2 s after submitting 400 tasks sleeping 0.1 s each under four key "
        "prefixes (load, clean, join, reduce).\n# scheduler_identity.json is its "
        "/json/identity.json 3 s after the tasks finished (it answers 500 while busy).\n"
    )
    METRICS.write_bytes(header.encode() + metrics)
    IDENTITY.write_bytes(json.dumps(json.loads(identity), indent=1).encode() + b"\n")
    print(f"wrote {METRICS} ({len(metrics)} bytes) and {IDENTITY} ({len(identity)} bytes)")


def sleep_briefly(x: int) -> int:
    time.sleep(0.1)
    return x


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--ports", type=int, default=0, help="shared ports (0: one each)")
    parser.add_argument("--static", action="store_true", help="same payload everywhere")
    parser.add_argument("--capture", action="store_true", help="re-capture the payload")
    parser.add_argument("--compare-transports", action="store_true")
    parser.add_argument(
        "--gc-freeze", action="store_true", help="gc.freeze() once the connections are open"
    )
    args = parser.parse_args()
    if args.capture:
        capture()
        return
    size = len(METRICS.read_bytes())
    print(f"payload {METRICS.name} ({size} bytes), {args.concurrency} in flight, ", end="")
    print(f"median of {args.repeat} alternate runs; wall time, and CPU time of the client")
    head = "{:>6} | {:>8} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>8} {:>6} | {:>9}"
    titles = [
        ("", "observe", "bare GET", "", "parsed", "URLs", "client", "CPU", "", "1st"),
        ("N", "wall", "wall", "ratio", "wall", "ratio", "observe", "bare", "ratio", "cycle"),
    ]
    for title in [] if args.compare_transports else titles:
        print(head.format(*title))
    for n in args.sizes:
        with fake_fleet(n, ports=args.ports or None, vary=not args.static) as urls:
            if args.compare_transports:
                asyncio.run(compare_transports(urls, args.concurrency, args.repeat))
                continue
            r = asyncio.run(bench_fleet(urls, args.concurrency, args.repeat, args.gc_freeze))
            gc.unfreeze()
        cells = [
            f"{r['observe']:.3f} s",
            f"{r['bare']:.3f} s",
            f"{r['observe'] / r['bare']:.2f}x",
            f"{r['bare_parsed']:.3f} s",
            f"{r['observe'] / r['bare_parsed']:.2f}x",
            f"{r['observe_cpu']:.3f} s",
            f"{r['bare_cpu']:.3f} s",
            f"{r['observe_cpu'] / r['bare_cpu']:.2f}x",
            f"{r['first']:.3f} s",
        ]
        print(head.format(n, *cells))


if __name__ == "__main__":
    main()
