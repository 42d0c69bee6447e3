"""The retire client against a real scheduler, and against a loopback server for error paths."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from distributed import Client

from autoscaler.demo.processes import SchedulerProcess, start_worker, stop_process
from autoscaler.errors import BackendError, TransientBackendError
from backends.retire import SchedulerAPI, SchedulerWorker, choose_retirees


class FakeScheduler:
    """The scheduler's HTTP API on loopback; behaviour set per test. Retires all by default."""

    def __init__(self) -> None:
        self.workers: dict[str, str] = {}  # name -> address
        self.managed: dict[str, int] = {}  # address -> bytes
        self.retire: Callable[[list[str]], web.StreamResponse | Any] = lambda asked: {
            address: {"name": name} for name, address in self.workers.items() if address in asked
        }
        self.retire_requests: list[list[str]] = []
        self.url = ""
        app = web.Application()
        app.router.add_get("/api/v1/get_workers", self._get_workers)
        app.router.add_post("/api/v1/retire_workers", self._retire_workers)
        app.router.add_get("/json/identity.json", self._identity)
        self._runner = web.AppRunner(app)

    async def start(self) -> None:
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _get_workers(self, request: web.Request) -> web.StreamResponse:
        listed = [{"name": n, "address": a} for n, a in self.workers.items()]
        return web.json_response({"num_workers": len(listed), "workers": listed})

    async def _identity(self, request: web.Request) -> web.StreamResponse:
        workers = {a: {"metrics": {"managed_bytes": b}} for a, b in self.managed.items()}
        return web.json_response({"workers": workers})

    async def _retire_workers(self, request: web.Request) -> web.StreamResponse:
        asked = json.loads(await request.read())["workers"]
        self.retire_requests.append(asked)
        answer = self.retire(asked)
        if asyncio.iscoroutine(answer):
            answer = await answer
        if isinstance(answer, web.StreamResponse):
            return answer
        for address in answer:
            self.workers = {n: a for n, a in self.workers.items() if a != address}
        return web.json_response(answer)


@pytest.fixture
async def fake_scheduler() -> AsyncIterator[FakeScheduler]:
    server = FakeScheduler()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


def worker(name: str, managed: int = 0) -> SchedulerWorker:
    return SchedulerWorker(
        name=name, address=f"tcp://10.0.0.1:{abs(hash(name)) % 60000}", managed_bytes=managed
    )


async def wait_running(http: httpx.AsyncClient, url: str, count: int) -> None:
    """Wait (generously) until ``count`` workers are in status running."""
    for _ in range(600):
        workers = (await http.get(f"{url}/json/identity.json")).json()["workers"]
        if sum(w["status"] == "running" for w in workers.values()) == count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {count} running workers")


def test_choose_retirees_prefers_least_data_then_newest() -> None:
    known = {"a": worker("a", 0), "b": worker("b", 500), "c": worker("c", 0), "d": worker("d")}
    platform = ["a", "b", "c", "d", "e"]  # oldest first; "e" is still starting
    assert [w.name for w in choose_retirees(platform, known, 2)] == ["d", "c"]
    assert [w.name for w in choose_retirees(platform, known, 4)] == ["d", "c", "a", "b"]
    assert [w.name for w in choose_retirees(platform, known, 9)] == ["d", "c", "a", "b"]
    assert choose_retirees(platform, known, 0) == ()


async def test_real_scheduler_get_and_retire(
    dask_scheduler: SchedulerProcess, http: httpx.AsyncClient
) -> None:
    workers = [start_worker(dask_scheduler.address, name=f"w{i}") for i in (1, 2)]
    try:
        api = SchedulerAPI(http, dask_scheduler.http_url)
        async with Client(dask_scheduler.address, asynchronous=True) as client:
            await client.wait_for_workers(2)
            known = await api.get_workers()
            assert sorted(known) == ["w1", "w2"]
            w1, w2 = known["w1"], known["w2"]
            data = [await client.scatter(i, workers=[w.address]) for i, w in enumerate((w1, w2))]

            # Retiring both: neither worker's unique data has anywhere to go; both are kept.
            outcome = await api.retire([w1, w2])
            assert outcome.retired == () and outcome.skipped == (w1, w2)
            assert outcome.unexpected == ()

            # The aborted retirement hands the workers back to "running" a round trip later;
            # until then neither is a recipient for the other's data.
            await wait_running(http, dask_scheduler.http_url, 2)
            outcome = await api.retire([w1])
            assert outcome.retired == (w1,) and outcome.skipped == ()
            assert list(await api.get_workers()) == ["w2"]
            assert await client.gather(data) == [0, 1]

            gone = SchedulerWorker(name="ghost", address="tcp://127.0.0.1:9")
            outcome = await api.retire([gone])
            assert outcome.retired == () and outcome.skipped == (gone,)
            assert (await api.retire([])).asked == ()
    finally:
        for process in workers:
            stop_process(process)


async def test_real_scheduler_without_api_is_a_clear_error(
    dask_scheduler_factory: Callable[..., SchedulerProcess], http: httpx.AsyncClient
) -> None:
    scheduler = dask_scheduler_factory(api=False)
    with pytest.raises(BackendError, match=r"distributed\.http\.scheduler\.api") as info:
        await SchedulerAPI(http, scheduler.http_url).get_workers()
    assert not isinstance(info.value, TransientBackendError)


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (
            web.Response(status=500, text='{"Error": "Internal Server Error"}'),
            TransientBackendError,
        ),
        (web.Response(status=503), TransientBackendError),
        (web.Response(status=429), TransientBackendError),
        (web.Response(status=400), BackendError),
        (web.Response(status=200, text="<html>not json"), BackendError),
        (web.Response(status=200, text="[1, 2]"), BackendError),
    ],
)
async def test_retire_error_answers(
    fake_scheduler: FakeScheduler,
    http: httpx.AsyncClient,
    answer: web.Response,
    error: type[Exception],
) -> None:
    fake_scheduler.retire = lambda asked: answer
    api = SchedulerAPI(http, fake_scheduler.url)
    with pytest.raises(error) as info:
        await api.retire([worker("a")])
    cause = info.value.__cause__  # the httpx or JSON error; none for a well-formed wrong shape
    assert cause is None or isinstance(cause, httpx.HTTPStatusError | ValueError)
    if error is BackendError:
        assert not isinstance(info.value, TransientBackendError)


async def test_retire_timeout_is_transient(
    fake_scheduler: FakeScheduler, http: httpx.AsyncClient
) -> None:
    release = asyncio.Event()

    async def slow(asked: list[str]) -> dict[str, Any]:
        await release.wait()
        return {}

    fake_scheduler.retire = slow
    api = SchedulerAPI(http, fake_scheduler.url, retire_timeout=0.2)
    with pytest.raises(TransientBackendError, match="timed out") as info:
        await api.retire([worker("a")])
    assert isinstance(info.value.__cause__, httpx.TimeoutException)
    release.set()


async def test_refused_connection_is_transient(http: httpx.AsyncClient) -> None:
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientBackendError) as info:
        await SchedulerAPI(http, f"http://127.0.0.1:{port}").get_workers()
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_bad_url_and_garbage_workers(
    fake_scheduler: FakeScheduler, http: httpx.AsyncClient
) -> None:
    with pytest.raises(BackendError, match="bad scheduler URL"):
        await SchedulerAPI(http, "ftp://127.0.0.1:1").get_workers()
    fake_scheduler.workers = {"a": "tcp://127.0.0.1:1"}
    fake_scheduler.managed = {"tcp://127.0.0.1:1": 42}
    assert (await SchedulerAPI(http, fake_scheduler.url).get_workers())["a"].managed_bytes == 42


async def test_unexpected_and_partial_retire_are_reported(
    fake_scheduler: FakeScheduler, http: httpx.AsyncClient
) -> None:
    a, b = worker("a"), worker("b")
    fake_scheduler.retire = lambda asked: {a.address: {}, "tcp://10.9.9.9:1": {}}
    outcome = await SchedulerAPI(http, fake_scheduler.url).retire([a, b])
    assert outcome.retired == (a,)
    assert outcome.skipped == (b,)
    assert outcome.unexpected == ("tcp://10.9.9.9:1",)
