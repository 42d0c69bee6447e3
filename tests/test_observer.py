"""The observer against real Dask schedulers and workers (subprocesses on loopback)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from distributed import Client

from autoscaler.demo.processes import HTTP_ROUTES, SchedulerProcess, start_worker, stop_process
from autoscaler.observe import Observation, Observer

StartWorker = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def start_workers() -> Iterator[StartWorker]:
    """Start real workers; every one is stopped by pid at teardown (before the scheduler)."""
    started: list[subprocess.Popen[bytes]] = []

    def start(scheduler: SchedulerProcess, **options: object) -> subprocess.Popen[bytes]:
        process = start_worker(scheduler.address, **options)  # type: ignore[arg-type]
        started.append(process)
        return process

    yield start
    for process in started:
        stop_process(process)


async def poll_until(
    observer: Observer,
    scheduler: SchedulerProcess,
    condition: Callable[[Observation], bool],
    what: str,
    deadline: float = 60.0,
) -> Observation:
    """Observe until ``condition`` holds (the deadline only stops a hung test)."""
    give_up = time.monotonic() + deadline
    while True:
        observation = (await observer.observe([("c", scheduler.http_url)]))["c"]
        if condition(observation):
            return observation
        if time.monotonic() > give_up:
            pytest.fail(f"never saw {what}; last: {observation}")
        await asyncio.sleep(0.1)


async def test_desired_rises_above_current_under_load_and_falls_back(
    dask_scheduler: SchedulerProcess, start_workers: StartWorker, tmp_path: Path
) -> None:
    start_workers(dask_scheduler, name="w0", nthreads=1)
    gate = tmp_path / "go"

    def gated(i: int) -> int:  # nested, so the worker gets it by value
        import os
        import time

        while not os.path.exists(gate):
            time.sleep(0.01)
        return i

    async with (
        Client(dask_scheduler.address, asynchronous=True) as client,
        Observer(timeout=5.0, usage_interval=0.0) as observer,
    ):
        idle = await poll_until(
            observer,
            dask_scheduler,
            lambda o: o.current == 1 and o.usage is not None and len(o.usage) == 1,
            "one worker and its usage",
        )
        assert idle.error is None and idle.source == "metrics"
        assert idle.desired is not None and idle.desired <= 1

        futures = client.map(gated, range(200), pure=False)
        busy = await poll_until(
            observer,
            dask_scheduler,
            lambda o: o.desired is not None and o.desired > o.current,
            "desired above current",
        )
        assert busy.error is None and busy.current == 1
        assert busy.tasks.get("processing", 0) + busy.tasks.get("queued", 0) > 0
        # identity.json may answer 500 while the worker is busy: the usage seen before is kept
        assert busy.usage is not None and [w.name for w in busy.usage] == ["w0"]

        gate.touch()
        assert await client.gather(futures) == list(range(200))
        await client.cancel(futures)
        done = await poll_until(
            observer,
            dask_scheduler,
            lambda o: o.desired is not None and o.desired <= o.current,
            "desired back at or below current",
        )
        assert done.error is None and done.current == 1


async def test_usage_reports_the_real_workers(
    dask_scheduler: SchedulerProcess, start_workers: StartWorker
) -> None:
    start_workers(dask_scheduler, name="big", nthreads=2, memory_limit="1GiB")
    start_workers(dask_scheduler, name="small", nthreads=1, memory_limit="512MiB")
    async with Observer(timeout=5.0, usage_interval=0.0) as observer:
        o = await poll_until(
            observer,
            dask_scheduler,
            lambda o: o.usage is not None and len(o.usage) == 2 and all(w.memory for w in o.usage),
            "two workers with memory in use",
        )
    assert o.usage is not None
    by_name = {w.name: w for w in o.usage}
    assert (by_name["big"].nthreads, by_name["big"].memory_limit) == (2, 2**30)
    assert (by_name["small"].nthreads, by_name["small"].memory_limit) == (1, 2**29)
    for worker in o.usage:
        assert worker.address.startswith("tcp://127.0.0.1:")
        assert 0 < worker.memory < worker.memory_limit
    assert o.usage_error is None and o.usage_observed_at is not None


async def test_stopped_scheduler_fails_counts_up_and_goes_stale(
    dask_scheduler: SchedulerProcess, start_workers: StartWorker
) -> None:
    start_workers(dask_scheduler, name="w0")
    async with Observer(timeout=2.0, stale_after=3, usage_interval=0.0) as observer:
        healthy = await poll_until(
            observer,
            dask_scheduler,
            lambda o: o.usage is not None and len(o.usage) == 1,
            "the worker's usage",
        )
        assert healthy.error is None and not healthy.stale

        dask_scheduler.stop()
        failed = [(await observer.observe([("c", dask_scheduler.http_url)]))["c"] for _ in range(4)]
    assert [o.consecutive_failures for o in failed] == [1, 2, 3, 4]
    assert [o.stale for o in failed] == [False, False, True, True]
    for o in failed:
        assert o.desired is None
        assert o.error is not None and "connection refused" in o.error
        assert o.usage == healthy.usage  # last known usage is kept


async def test_scheduler_without_prometheus_route_is_read_from_counts_json(
    dask_scheduler_factory: Callable[..., SchedulerProcess],
    start_workers: StartWorker,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    routes = [route for route in HTTP_ROUTES if not route.endswith(".prometheus")]
    monkeypatch.setenv("DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES", json.dumps(routes))
    scheduler = dask_scheduler_factory(api=False)  # api=False: routes come from the env above
    start_workers(scheduler, name="w0", nthreads=2)
    async with Observer(timeout=5.0) as observer:
        o = await poll_until(observer, scheduler, lambda o: o.current == 1, "one worker")
    assert o.error is None
    assert o.source == "counts"
    assert set(o.workers) == {"connected", "idle", "saturated"}
    assert o.desired_reported and o.desired is not None and o.desired <= 1
