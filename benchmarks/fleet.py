"""A fake fleet of Dask schedulers on loopback, served by one aiohttp process.

    with fake_fleet(2000) as urls:      # ["http://127.0.0.1:PORT/c/0", ...]
        ...

Each scheduler ``{base}`` answers ``GET {base}/metrics`` (a captured /metrics payload),
``GET {base}/json/identity.json`` and ``GET {base}/json/counts.json``, and
``POST {base}/state`` with ``{"desired": 5, "workers": {"idle": 2, ...}}`` to set what it
reports next (for loop benchmarks). With ``vary=True`` the non-zero values of the desired,
workers and tasks samples change with the scheduler and with every request, as on a busy
fleet, so no two schedulers or cycles send the same lines.

By default every scheduler has its own port (like a real fleet: one connection each);
``ports=k`` puts them on k shared ports instead. The server is a separate process (its own
core), started and ended by pid.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiohttp import web

DATA = Path(__file__).parent / "data"
METRICS = DATA / "scheduler_metrics.txt"
IDENTITY = DATA / "scheduler_identity.json"

_SAMPLE = re.compile(
    rb"^(dask_scheduler_(?:desired_workers|workers|tasks)(?:\{[^\n]*\})?) ([^\n]*)$", re.M
)


class _Scheduler:
    """What one fake scheduler reports: the captured payload with its own sample values."""

    def __init__(self, index: int, template: list[bytes | tuple[bytes, float]], vary: bool):
        self.index = index
        self.template = template
        self.vary = vary
        self.requests = 0
        self.overrides: dict[bytes, float] = {}

    def metrics(self) -> bytes:
        self.requests += 1
        shift = (self.index * 31 + self.requests * 17) % 1000 if self.vary else 0
        parts = []
        for piece in self.template:
            if isinstance(piece, bytes):
                parts.append(piece)
                continue
            name, value = piece
            value = self.overrides.get(name, value + shift if value else value)
            parts.append(b"%s %.1f" % (name, value))
        return b"".join(parts)

    def set_state(self, state: dict[str, object]) -> None:
        if "desired" in state:
            self.overrides[b"dask_scheduler_desired_workers"] = float(state["desired"])  # type: ignore[arg-type]
        for kind in ("workers", "tasks"):
            for label, value in dict(state.get(kind, {})).items():  # type: ignore[call-overload]
                key = b'dask_scheduler_%s{state="%s"}' % (kind.encode(), label.encode())
                self.overrides[key] = float(value)


def _template(payload: bytes) -> list[bytes | tuple[bytes, float]]:
    pieces: list[bytes | tuple[bytes, float]] = []
    pos = 0
    for match in _SAMPLE.finditer(payload):
        pieces.append(payload[pos : match.start()])
        pieces.append((match.group(1), float(match.group(2))))
        pos = match.end()
    pieces.append(payload[pos:])
    return pieces


def _counts(metrics: bytes) -> bytes:
    values = {m.group(1): float(m.group(2)) for m in _SAMPLE.finditer(metrics)}

    def get(name: str) -> int:
        return int(values.get(name.encode(), 0))

    states = ("idle", "partially_saturated", "saturated", "paused", "retiring")
    workers = sum(get(f'dask_scheduler_workers{{state="{state}"}}') for state in states)
    counts = {
        "workers": workers,
        "idle": get('dask_scheduler_workers{state="idle"}'),
        "saturated": get('dask_scheduler_workers{state="saturated"}'),
        "processing": get('dask_scheduler_tasks{state="processing"}'),
        "memory": get('dask_scheduler_tasks{state="memory"}'),
        "waiting": get('dask_scheduler_tasks{state="waiting"}'),
        "released": get('dask_scheduler_tasks{state="released"}'),
        "erred": get('dask_scheduler_tasks{state="erred"}'),
        "unrunnable": get('dask_scheduler_tasks{state="no-worker"}'),
        "desired_workers": get("dask_scheduler_desired_workers"),
    }
    return json.dumps(counts).encode()


async def _serve(
    n: int, ports: int | None, vary: bool, metrics: bytes, identity_body: bytes
) -> None:
    template = _template(metrics)
    schedulers = [_Scheduler(i, template, vary) for i in range(n)]

    async def handle(request: web.Request) -> web.StreamResponse:
        try:
            scheduler = schedulers[int(request.match_info["index"])]
        except (ValueError, IndexError):
            raise web.HTTPNotFound() from None
        tail = request.match_info["tail"]
        if request.method == "POST" and tail == "state":
            scheduler.set_state(await request.json())
            return web.Response(text="ok")
        if tail == "metrics":
            return web.Response(body=scheduler.metrics(), content_type="text/plain")
        if tail == "json/identity.json":
            return web.Response(body=identity_body, content_type="application/json")
        if tail == "json/counts.json":
            return web.Response(body=_counts(scheduler.metrics()), content_type="application/json")
        raise web.HTTPNotFound()

    app = web.Application()
    app.router.add_route("*", "/c/{index}/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sites = [web.TCPSite(runner, "127.0.0.1", 0, backlog=1024) for _ in range(ports or n)]
    for site in sites:
        await site.start()
    site_ports = [site._server.sockets[0].getsockname()[1] for site in sites]  # type: ignore[union-attr]
    urls = [f"http://127.0.0.1:{site_ports[i % len(sites)]}/c/{i}" for i in range(n)]
    sys.stdout.write(json.dumps(urls) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()


@contextmanager
def fake_fleet(
    n: int,
    *,
    ports: int | None = None,
    vary: bool = True,
    metrics: Path = METRICS,
    identity: Path = IDENTITY,
) -> Iterator[list[str]]:
    """Start ``n`` fake schedulers in a separate process; yield their base URLs."""
    command = [sys.executable, "-m", "benchmarks.fleet", str(n), "--metrics", str(metrics)]
    command += ["--identity", str(identity), "--ports", str(ports or 0)]
    command += [] if vary else ["--static"]
    root = Path(__file__).resolve().parent.parent
    path = os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, env=env, start_new_session=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"fake fleet exited with {process.wait()}")
        yield json.loads(line)
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve a fake fleet of Dask schedulers.")
    parser.add_argument("n", type=int)
    parser.add_argument("--ports", type=int, default=0, help="shared ports (0: one each)")
    parser.add_argument("--static", action="store_true", help="same payload everywhere")
    parser.add_argument("--metrics", type=Path, default=METRICS)
    parser.add_argument("--identity", type=Path, default=IDENTITY)
    args = parser.parse_args()
    metrics, identity = args.metrics.read_bytes(), args.identity.read_bytes()
    asyncio.run(_serve(args.n, args.ports or None, not args.static, metrics, identity))


if __name__ == "__main__":
    main()
