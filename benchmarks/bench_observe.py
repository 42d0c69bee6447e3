"""One observation cycle of a fake fleet against bare aiohttp GETs of the same fleet.

Run: ``.venv/bin/python -m benchmarks.bench_observe`` (``--help`` for options).

The fleet (benchmarks/fleet.py) is one aiohttp process on loopback, one port per scheduler,
serving the /metrics payload captured from a busy real scheduler (benchmarks/data/, see
the header of scheduler_metrics.txt; ``--capture`` redoes it), with sample values varied per
scheduler and per request, so no two answers are alike.

Two client processes poll that fleet, each with its own connections and its own heap, as a
service would: one runs ``Observer.observe`` (GET, size cap, parse, Observation; usage not
due), the other bare GETs + reads of the same URLs at the same concurrency through a plain
aiohttp session with the same connection limit and timeout. Both open their connections
first (the observer's first cycle, which also polls /json/identity.json everywhere, is
reported apart); then they take turns, one cycle each, in ABBA order, so both see the same
machine; this is done by ``--rounds`` pairs of fresh processes, as one process can run a
few percent faster or slower than the next. For each N it prints the mean wall time of a
cycle (the collector's pauses included, as they come), their ratio, the median of the
ratios of neighbouring cycles, the mean CPU time of each client and its time in the
garbage collector.
``--compare-transports`` times aiohttp against httpx with the aiohttp transport, in one
process.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
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


async def client(kind: str, urls: list[str], concurrency: int) -> None:
    """Serve cycles of one kind ("observe" or "bare"): first one that opens the connections
    (prints its wall time), then one per line on stdin (prints ``[wall, cpu, gc]`` in
    seconds) until an empty line."""
    if kind == "observe":
        targets = [(f"c{i}", url) for i, url in enumerate(urls)]
        async with Observer(concurrency=concurrency, timeout=10.0, usage_interval=3600.0) as obs:

            async def observe() -> None:
                results = await obs.observe(targets)
                failed = [o.error for o in results.values() if o.error]
                if failed:
                    raise RuntimeError(f"{len(failed)} polls failed, e.g. {failed[0]}")

            await serve_cycles(observe)
    else:
        metrics_urls = [url + "/metrics" for url in urls]
        async with aiohttp_session(concurrency, 10.0) as session:

            async def bare_get(url: str) -> bytes:
                async with session.get(url) as response:
                    response.raise_for_status()
                    return await response.read()

            await serve_cycles(lambda: drain(metrics_urls, concurrency, bare_get))


async def serve_cycles(run: Callable[[], Awaitable[object]]) -> None:
    collecting = [0.0, 0.0]  # time in the collector, start of the current pause

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collecting[1] = time.perf_counter()
        else:
            collecting[0] += time.perf_counter() - collecting[1]

    gc.callbacks.append(on_gc)
    loop = asyncio.get_running_loop()
    print(json.dumps(await timed(run)), flush=True)
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip():
        collecting[0] = 0.0
        start, cpu = time.perf_counter(), time.process_time()
        await run()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        print(json.dumps([wall, cpu, collecting[0]]), flush=True)


@contextmanager
def clients(urls: list[str], concurrency: int) -> Iterator[dict[str, subprocess.Popen[str]]]:
    """Start an "observe" and a "bare" client process; end them by pid."""
    with tempfile.TemporaryDirectory() as workdir:
        url_file = Path(workdir) / "urls.json"
        url_file.write_text(json.dumps(urls))
        started: dict[str, subprocess.Popen[str]] = {}
        try:
            for kind in ("observe", "bare"):
                command = [sys.executable, "-m", "benchmarks.bench_observe", "--client", kind]
                command += ["--urls", str(url_file), "--concurrency", str(concurrency)]
                started[kind] = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                )
            yield started
        finally:
            for process in started.values():
                if process.poll() is None:
                    process.kill()
                process.wait()
                for stream in (process.stdin, process.stdout):
                    if stream is not None:
                        stream.close()


def bench_fleet(urls: list[str], concurrency: int, cycles: int, rounds: int) -> dict[str, float]:
    """``rounds`` pairs of fresh clients (a process's speed varies with its memory layout),
    each pair alternating ``cycles`` cycles (ABBA); means, and the median paired ratio."""
    firsts: list[float] = []
    times: dict[str, list[list[float]]] = {"observe": [], "bare": []}
    for _ in range(rounds):
        with clients(urls, concurrency) as started:
            firsts.append(json.loads(_line(started["observe"])))
            _line(started["bare"])
            for i in range(cycles):
                for kind in ("observe", "bare") if i % 2 == 0 else ("bare", "observe"):
                    process = started[kind]
                    assert process.stdin is not None
                    process.stdin.write("go\n")
                    process.stdin.flush()
                    times[kind].append(json.loads(_line(process)))
            for process in started.values():
                assert process.stdin is not None
                process.stdin.write("\n")
                process.stdin.flush()
    result = {"first": statistics.mean(firsts)}
    for kind, measured in times.items():
        for index, name in enumerate(("", "_cpu", "_gc")):
            result[kind + name] = statistics.mean(m[index] for m in measured)
    pairs = zip(times["observe"], times["bare"], strict=True)
    result["paired"] = statistics.median(o[0] / b[0] for o, b in pairs)
    return result


def _line(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark client exited with {process.wait()}")
    return line


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
    parser.add_argument("--cycles", type=int, default=20, help="timed cycles of each client")
    parser.add_argument("--rounds", type=int, default=3, help="pairs of fresh client processes")
    parser.add_argument("--repeat", type=int, default=5, help="with --compare-transports")
    parser.add_argument("--ports", type=int, default=0, help="shared ports (0: one each)")
    parser.add_argument("--static", action="store_true", help="same payload everywhere")
    parser.add_argument("--capture", action="store_true", help="re-capture the payload")
    parser.add_argument("--compare-transports", action="store_true")
    parser.add_argument("--client", choices=["observe", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--urls", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        asyncio.run(client(args.client, json.loads(args.urls.read_text()), args.concurrency))
        return
    if args.capture:
        capture()
        return
    size = len(METRICS.read_bytes())
    print(f"payload {METRICS.name} ({size} bytes), {args.concurrency} in flight", end="")
    if not args.compare_transports:
        print(f"; {args.rounds} pairs of clients, {args.cycles} alternate cycles each", end="")
        print("; means, seconds", end="")
    print()
    head = "{:>6} | {:>8} {:>8} {:>6} {:>7} | {:>8} {:>8} | {:>8} {:>8} | {:>9}"
    titles = [
        ("", "observe", "bare GET", "", "paired", "CPU", "", "GC", "", "observe"),
        ("N", "wall", "wall", "ratio", "ratio", "observe", "bare", "observe", "bare", "1st cycle"),
    ]
    for title in [] if args.compare_transports else titles:
        print(head.format(*title))
    for n in args.sizes:
        with fake_fleet(n, ports=args.ports or None, vary=not args.static) as urls:
            if args.compare_transports:
                asyncio.run(compare_transports(urls, args.concurrency, args.repeat))
                continue
            r = bench_fleet(urls, args.concurrency, args.cycles, args.rounds)
        cells = [
            f"{r['observe']:.3f} s",
            f"{r['bare']:.3f} s",
            f"{r['observe'] / r['bare']:.2f}x",
            f"{r['paired']:.2f}x",
            f"{r['observe_cpu']:.3f} s",
            f"{r['bare_cpu']:.3f} s",
            f"{r['observe_gc']:.3f} s",
            f"{r['bare_gc']:.3f} s",
            f"{r['first']:.3f} s",
        ]
        print(head.format(n, *cells))


if __name__ == "__main__":
    main()
