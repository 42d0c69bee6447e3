"""``autoscaler demo``: the whole service on this machine, with nothing else installed.

Three real Dask schedulers share a pool of 4 CPU and 4 GiB (workers of 1 CPU, 1 GiB) through the
service (SQLite in a temporary folder, the local backend). Each cluster is busy in its own
window, so the pool is split fairly, given back when a cluster finishes and retaken when
another starts. Ctrl-C, or the end of ``--duration``, stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvicorn

from autoscaler.demo.processes import SchedulerProcess, start_scheduler
from autoscaler.demo.table import render
from autoscaler.demo.workload import Workload, run_workload
from autoscaler.serve import open_store
from autoscaler.service import create_service
from autoscaler.settings import Settings

GIB = 2**30
# (name, busy from, busy until) in seconds after the start
TIMELINE = (("alpha", 0, 70), ("beta", 15, 110), ("gamma", 50, 140))


def run(duration: float = 160.0, interval: float = 2.0) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="autoscaler-demo-") as folder:
        # workers and schedulers inherit it: their scratch space goes with the folder
        os.environ["DASK_TEMPORARY_DIRECTORY"] = folder
        return asyncio.run(_demo(Path(folder), duration, interval))


async def _demo(folder: Path, duration: float, interval: float) -> int:
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    sock = socket.create_server(("127.0.0.1", 0))
    settings = Settings(
        port=sock.getsockname()[1],
        database_url=f"sqlite:///{folder / 'autoscaler.db'}",
        admin_token=secrets.token_urlsafe(24),
        local_state_dir=str(folder / "workers"),
        interval=interval,
        scale_down_delay=10,
        preemption_grace=4,
        usage_interval=10,
    )
    url = f"http://127.0.0.1:{settings.port}"
    schedulers: list[SchedulerProcess] = []
    store = open_store(settings)
    server = uvicorn.Server(
        uvicorn.Config(create_service(settings, store), log_level="warning", lifespan="on")
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    tasks: list[asyncio.Task[None]] = []
    try:
        print("starting 3 Dask schedulers ...", flush=True)
        for _ in TIMELINE:
            schedulers.append(await asyncio.to_thread(start_scheduler, folder))
        headers = {"Authorization": f"Bearer {settings.admin_token}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as api:
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to await
                await asyncio.sleep(0.05)
            await _register(api, schedulers)
            print(f"service: {url}  (admin token: {settings.admin_token})")
            print(
                f'try: curl -H "Authorization: Bearer {settings.admin_token}" '
                f"{url}/api/v1/allocations\n",
                flush=True,
            )
            began = time.monotonic()
            for (name, start, end), scheduler in zip(TIMELINE, schedulers, strict=True):
                workload = Workload(name, scheduler.address, start, end)
                tasks.append(asyncio.create_task(run_workload(workload, began)))
            while not stop.is_set() and time.monotonic() - began < duration:
                answer = await api.get("/api/v1/allocations")
                print(render(time.monotonic() - began, answer.json(), TIMELINE), flush=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)
    finally:
        print("stopping: retiring workers, then the schedulers ...", flush=True)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        server.should_exit = True  # the lifespan stops the loop and retires every worker
        await serving
        store.close()
        for scheduler in schedulers:
            await asyncio.to_thread(scheduler.stop)
    print("done: no process left behind.")
    return 0


async def _register(api: httpx.AsyncClient, schedulers: list[SchedulerProcess]) -> None:
    answer = await api.put("/api/v1/pool", json={"capacity": {"cpu": 4, "memory": "4GiB"}})
    answer.raise_for_status()
    for (name, *_), scheduler in zip(TIMELINE, schedulers, strict=True):
        answer = await api.post(
            "/api/v1/clusters",
            json={
                "name": name,
                "scheduler_url": scheduler.http_url,
                "backend": "local",
                "backend_options": {"scheduler_address": scheduler.address},
                "worker": {"cpu": 1, "memory": "1GiB"},
            },
        )
        if answer.status_code != 201:
            sys.exit(f"could not register {name}: {answer.text}")
