"""The control loop end to end: real schedulers, real local workers, real work, a real store."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from distributed import Client

from autoscaler.demo.processes import SchedulerProcess
from autoscaler.domain import ClusterSpec, Pool
from autoscaler.errors import BackendError, TransientBackendError
from autoscaler.loop import ControlLoop, CycleReport
from autoscaler.observe import Observer
from autoscaler.settings import Settings
from autoscaler.store import Store
from backends.base import ScaleResult
from backends.local import LocalBackend

GIB = 2**30


def slow(x: int) -> int:
    time.sleep(0.25)
    return x


def slower(x: int) -> int:
    time.sleep(1)
    return x


async def wait_for(
    condition: Callable[[], bool], within: float = 60, state: Callable[[], object] = str
) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met in time; state: {state()}")
        await asyncio.sleep(0.2)


async def wait_for_workers(scheduler: SchedulerProcess, count: int) -> None:
    """Wait until the scheduler itself reports ``count`` workers."""

    async def seen() -> int:
        async with httpx.AsyncClient() as http:
            answer = await http.get(f"{scheduler.http_url}/api/v1/get_workers")
            return len(answer.json()["workers"])

    deadline = time.monotonic() + 60
    while (n := await seen()) != count:
        assert time.monotonic() < deadline, f"scheduler has {n} workers, expected {count}"
        await asyncio.sleep(0.2)


def cluster(name: str, scheduler: SchedulerProcess, **kw) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        scheduler_url=scheduler.http_url,
        backend="local",
        backend_options={"scheduler_address": scheduler.address},
        worker={"cpu": 1, "memory": GIB},
        **kw,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'loop.db'}",
        local_state_dir=str(tmp_path / "workers"),
        scale_down_delay=2,
        preemption_grace=1,
        scale_down_max_fraction=0.5,
        stale_after=2,
        observe_timeout=2,
    )


@pytest.fixture
def store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.upgrade()
    store.set_pool(Pool(capacity={"cpu": 4, "memory": 4 * GIB}))
    return store


@pytest.fixture
async def make_loop(
    settings: Settings, store: Store, dask_scheduler_factory: object
) -> AsyncIterator[Callable[..., ControlLoop]]:
    """Loops sharing one observer; stopped (workers retired) before the schedulers end."""
    loops: list[ControlLoop] = []
    observer = Observer.from_settings(settings)
    await observer.__aenter__()

    def make(**kw) -> ControlLoop:
        loop = ControlLoop(kw.pop("settings", settings), store, observer, **kw)
        loops.append(loop)
        return loop

    yield make
    for loop in loops:
        await loop.stop()  # retires and stops every local worker it started
    await observer.aclose()


def decisions(report) -> dict[str, object]:
    return {d.cluster: d for d in report.decisions}


async def wait_for_demand(loop: ControlLoop, *names: str) -> None:
    """Run cycles until the schedulers report the work just submitted (it takes a moment)."""
    for _ in range(50):
        report = await loop.run_cycle()
        if all(report.observations[n].desired for n in names):
            return
        await asyncio.sleep(0.2)
    raise TimeoutError("the schedulers never asked for workers")


async def cycle_until(loop: ControlLoop, done: Callable[[dict[str, int]], bool]) -> None:
    """Run cycles until the targets satisfy ``done``; fail with the last targets after 60 s."""
    deadline = time.monotonic() + 60
    while True:
        targets = {d.cluster: d.target for d in (await loop.run_cycle()).decisions}
        if done(targets):
            return
        assert time.monotonic() < deadline, f"targets stuck at {targets}"
        await asyncio.sleep(0.5)


async def test_two_busy_clusters_share_then_one_shrinks_and_keeps_its_results(
    settings, store, make_loop, dask_scheduler_factory
):
    a, b = dask_scheduler_factory(), dask_scheduler_factory()
    store.create_cluster(cluster("a", a, minimum=1))
    store.create_cluster(cluster("b", b))
    loop = make_loop(settings=settings.model_copy(update={"interval": 0.5}))

    def targets() -> dict[str, int]:
        return {d.cluster: d.target for d in loop.last.decisions} if loop.last else {}

    async with (
        Client(a.address, asynchronous=True) as client_a,
        Client(b.address, asynchronous=True) as client_b,
    ):
        work_a = client_a.map(slower, range(2000))
        work_b = client_b.map(slower, range(2000))  # busy until the end of the test
        loop.start()
        # whoever asks first may hold the pool for a moment; preemption evens it out
        # equal shares of 4 CPU
        await wait_for(lambda: targets() == {"a": 2, "b": 2}, state=lambda: loop.last)
        await wait_for_workers(a, 2)
        await wait_for_workers(b, 2)

        # a holds results in memory on both its workers, then its work ends
        kept = await client_a.scatter([bytes(1000) * i for i in range(40)])
        holders = await client_a.who_has(kept)
        assert len({w for ws in holders.values() for w in ws}) == 2
        await client_a.cancel(work_a)

        await wait_for(lambda: targets() == {"a": 1, "b": 3}, state=lambda: loop.last)
        # a shrank (pushed by b, which waited for the capacity a held) and now has what it
        # wants or its minimum
        await wait_for(
            lambda: decisions(loop.last)["a"].reason in {"minimum", "satisfied"},
            state=lambda: decisions(loop.last)["a"],
        )
        await wait_for_workers(a, 1)
        await wait_for_workers(b, 3)
        # no key lost: every result survives the scale-down
        values = await client_a.gather(kept)
        assert [len(v) for v in values] == [1000 * i for i in range(40)]
        await client_b.cancel(work_b)
    history = store.history("a", limit=1000)
    assert history and history[0].decided_at >= history[-1].decided_at
    reasons = {d.reason for d in history}
    assert "fair_share_limited_by_cpu" in reasons and "preempted" in reasons


async def test_a_dead_scheduler_stops_nothing_and_scales_nobody_down(
    settings, store, make_loop, dask_scheduler_factory
):
    a, b = dask_scheduler_factory(), dask_scheduler_factory()
    store.create_cluster(cluster("a", a))
    store.create_cluster(cluster("b", b))
    loop = make_loop(settings=settings.model_copy(update={"interval": 0.5}))
    after_death: list[dict[str, object]] = []
    async with (
        Client(a.address, asynchronous=True) as client_a,
        Client(b.address, asynchronous=True) as client_b,
    ):
        work = [client_a.map(slower, range(500)), client_b.map(slower, range(500))]
        loop.start()

        # b is stopped only once the loop has seen both at 2: a stale cluster is held at
        # the size last seen, which may be 3 while a preempted worker still retires
        def both_at_two() -> bool:
            seen = loop.last.decisions if loop.last else []
            return {(d.target, d.current) for d in seen} == {(2, 2)}

        await wait_for(both_at_two, state=lambda: loop.last)
        await wait_for_workers(a, 2)
        b.stop()
        died_at = time.time()

        def collect(report: CycleReport) -> None:
            if report.started_at > died_at:  # not a cycle that saw b while it was stopping
                after_death.append(decisions(report))

        loop.on_cycle.append(collect)
        await wait_for(lambda: len(after_death) >= 8, state=lambda: after_death)
        await wait_for_workers(a, 2)  # still running
        seen = list(after_death)
        assert seen[-1]["b"].reason == "held_stale"
        for cycle in seen:  # every cycle ran, and nobody was scaled down
            assert cycle["a"].target == 2 and cycle["b"].target == 2
        assert loop.last.observations["b"].error is not None
        del work


class FlakyBackend(LocalBackend):
    """The local backend, failing with a chosen error for its first ``failures`` calls."""

    def __init__(self, settings: Settings, error: Exception, failures: int) -> None:
        super().__init__(settings)
        self.error, self.failures, self.calls = error, failures, 0

    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return await super().scale(cluster, target)


@pytest.mark.parametrize(
    ("error", "failures", "applied"),
    [
        (TransientBackendError("API busy"), 2, True),  # retried with backoff, then done
        (BackendError("quota exceeded"), 1, False),  # not retried: reported in the decision
    ],
)
async def test_a_failing_backend_is_retried_and_reported(
    settings, store, make_loop, dask_scheduler_factory, error, failures, applied
):
    a = dask_scheduler_factory()
    store.create_cluster(cluster("a", a))
    flaky = FlakyBackend(settings, error, failures)
    loop = make_loop(backends={"local": flaky})
    async with Client(a.address, asynchronous=True) as client:
        work = client.map(slow, range(100))
        await wait_for_demand(loop, "a")
        decision = decisions(loop.last)["a"]
        assert decision.target == 4
        assert decision.applied is applied
        if applied:
            assert flaky.calls == failures + 1
            await wait_for_workers(a, 4)
        else:
            assert flaky.calls == 1
            assert decision.error == "BackendError: quota exceeded"
            assert await flaky.workers(store.get_cluster("a")) == ()
        stored = store.latest_decisions()[0]
        assert stored.applied is applied
        del work


async def test_dry_run_records_decisions_and_starts_nothing(
    settings, store, make_loop, dask_scheduler_factory
):
    a = dask_scheduler_factory()
    store.create_cluster(cluster("a", a))
    loop = make_loop(settings=settings.model_copy(update={"dry_run": True}))
    async with Client(a.address, asynchronous=True) as client:
        work = client.map(slow, range(100))
        await wait_for_demand(loop, "a")
        decision = decisions(loop.last)["a"]
        assert decision.target == 4 and decision.applied is False
        assert store.latest_decisions()[0].target == 4
        backend = LocalBackend(settings)
        assert await backend.workers(store.get_cluster("a")) == ()
        await backend.close()
        del work


async def test_the_scheduled_loop_runs_cycles_until_stopped(settings, store, make_loop):
    loop = make_loop(settings=settings.model_copy(update={"interval": 0.2}))
    loop.start()
    await wait_for(lambda: loop.last is not None, within=10)
    assert loop.last.skipped == "no clusters"
    await loop.stop()


class OneSlotBackend(LocalBackend):
    """A platform that can place one worker: the rest stay pending, unschedulable."""

    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        self.asked = target
        placed = min(target, 1)
        return ScaleResult(
            target=target, current=placed, pending=target - placed, unschedulable=target - placed
        )


async def test_the_loop_stops_raising_a_target_the_platform_cannot_place(
    settings, store, make_loop, dask_scheduler_factory
):
    a = dask_scheduler_factory()
    store.create_cluster(cluster("a", a))
    backend = OneSlotBackend(settings)
    loop = make_loop(backends={"local": backend})
    async with Client(a.address, asynchronous=True) as client:
        work = client.map(slow, range(100))
        await wait_for_demand(loop, "a")
        assert backend.asked == 4  # first ask: the whole fair share
        decision = decisions(await loop.run_cycle())["a"]
        assert (decision.allocated, decision.target) == (4, 1)
        assert decision.reason == "unschedulable"
        assert backend.asked == 1  # the pending, unplaceable workers are given up
        del work
