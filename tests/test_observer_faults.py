"""The observer against small loopback servers that misbehave on purpose.

Each fake scheduler is a path prefix of one aiohttp server (``/{kind}/metrics``...), so
one server per test serves every case; it counts the requests it gets and how many are in
flight at once.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from autoscaler.errors import ConfigError
from autoscaler.observe import Observation, Observer
from autoscaler.observe.observer import READ_BATCH
from autoscaler.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NEW_LABELS = b"""# HELP dask_scheduler_desired_workers Number of workers scheduler needs
# TYPE dask_scheduler_desired_workers gauge
dask_scheduler_desired_workers 7.0
# TYPE dask_scheduler_workers gauge
dask_scheduler_workers{state="idle"} 1.0
dask_scheduler_workers{state="partially_saturated"} 2.0
dask_scheduler_workers{state="saturated"} 1.0
dask_scheduler_workers{state="paused"} 1.0
dask_scheduler_workers{state="retiring"} 2.0
# TYPE dask_scheduler_workers_added_total counter
dask_scheduler_workers_added_total 9.0
dask_scheduler_tasks{state="processing"} 5.0
dask_scheduler_tasks{state="queued"} 40.0
dask_scheduler_tasks_forgotten_total 3.0
"""

OLD_LABELS = b"""dask_scheduler_desired_workers 2.0
dask_scheduler_workers{state="connected"} 3.0
dask_scheduler_workers{state="idle"} 1.0
dask_scheduler_workers{state="saturated"} 2.0
dask_scheduler_tasks{state="memory"} 4.0
"""

IDENTITY = {
    "type": "Scheduler",
    "workers": {
        "tcp://10.0.0.1:4000": {
            "name": "a",
            "nthreads": 4,
            "memory_limit": 8_000_000_000,
            "metrics": {"memory": 1_000_000},
        },
        "tcp://10.0.0.2:4000": {"name": 7, "nthreads": 2, "memory_limit": 4_000_000_000},
    },
}


def metrics_with(desired: str) -> bytes:
    return NEW_LABELS.replace(b"dask_scheduler_desired_workers 7.0", desired.encode())


def payload(body: bytes, content_type: str = "text/plain") -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(body=body, content_type=content_type)

    return handle


def status(code: int) -> Handler:
    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=code, text="nope")

    return handle


async def slow_loris(request: web.Request) -> web.StreamResponse:
    """Answer at once, then send one byte of body every 50 ms (for at most 20 s)."""
    response = web.StreamResponse()
    response.content_type = "text/plain"
    await response.prepare(request)
    for _ in range(400):
        await response.write(b"#")
        await asyncio.sleep(0.05)
    return response


async def chunked_flood(request: web.Request) -> web.StreamResponse:
    """A chunked body (no Content-Length) of 64 KiB chunks, 6.4 MB in all."""
    response = web.StreamResponse()
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(100):
        await response.write(b"x" * 65536)
    return response


class FakeSchedulers:
    """One aiohttp server; ``add(kind, {path: handler})`` makes ``{url}/{kind}`` a scheduler."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.hits: Counter[tuple[str, str]] = Counter()
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""

    def add(self, kind: str, routes: dict[str, Handler]) -> str:
        for path, handler in routes.items():
            self.routes[kind, path] = handler
        return f"{self.url}/{kind}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = (request.match_info["kind"], "/" + request.match_info["path"])
        self.hits[key] += 1
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            handler = self.routes.get(key)
            if handler is None:
                raise web.HTTPNotFound()
            return await handler(request)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def fakes() -> AsyncIterator[FakeSchedulers]:
    fakes = FakeSchedulers()
    app = web.Application()
    app.router.add_get("/{kind}/{path:.*}", fakes.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    fakes.url = f"http://{host}:{port}"
    try:
        yield fakes
    finally:
        await runner.cleanup()


@pytest.fixture
async def observer() -> AsyncIterator[Observer]:
    async with Observer(timeout=0.5, max_bytes=100_000, stale_after=2, max_desired=50) as obs:
        yield obs


async def observe_one(observer: Observer, url: str, cluster: str = "c") -> Observation:
    return (await observer.observe([(cluster, url)]))[cluster]


def assert_failed(observation: Observation, *fragments: str) -> None:
    assert observation.desired is None
    assert observation.error is not None
    for fragment in fragments:
        assert fragment in observation.error, observation.error
    assert dict(observation.workers) == {} and dict(observation.tasks) == {}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_new_label_set_is_read_and_current_leaves_out_retiring(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    url = fakes.add("new", {"/metrics": payload(NEW_LABELS)})
    o = await observe_one(observer, url)
    assert o.error is None and o.source == "metrics" and o.desired_reported
    assert o.desired == 7
    assert dict(o.workers) == {
        "idle": 1,
        "partially_saturated": 2,
        "saturated": 1,
        "paused": 1,
        "retiring": 2,
    }
    assert o.current == 5
    assert dict(o.tasks) == {"processing": 5, "queued": 40}
    assert o.consecutive_failures == 0 and not o.stale


async def test_old_label_set_counts_connected_workers(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    url = fakes.add("old", {"/metrics": payload(OLD_LABELS)})
    o = await observe_one(observer, url)
    assert o.error is None
    assert dict(o.workers) == {"connected": 3, "idle": 1, "saturated": 2}
    assert o.current == 3
    assert o.desired == 2
    assert dict(o.tasks) == {"memory": 4}


@pytest.mark.parametrize(
    ("line", "desired"),
    [
        ("dask_scheduler_desired_workers 1e9", 50),
        ("dask_scheduler_desired_workers +Inf", 50),
        ("dask_scheduler_desired_workers -3.0", 0),
        ("dask_scheduler_desired_workers -Inf", 0),
        ("dask_scheduler_desired_workers 12.0", 12),
    ],
)
async def test_desired_is_clamped(
    fakes: FakeSchedulers, observer: Observer, line: str, desired: int
) -> None:
    url = fakes.add("clamp", {"/metrics": payload(metrics_with(line))})
    o = await observe_one(observer, url)
    assert o.error is None
    assert o.desired == desired


async def test_nan_desired_is_an_error(fakes: FakeSchedulers, observer: Observer) -> None:
    url = fakes.add(
        "nan", {"/metrics": payload(metrics_with("dask_scheduler_desired_workers NaN"))}
    )
    assert_failed(await observe_one(observer, url), "NaN")


async def test_missing_desired_gauge_holds_the_current_size(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    url = fakes.add("nodesired", {"/metrics": payload(metrics_with(""))})
    o = await observe_one(observer, url)
    assert o.error is None
    assert not o.desired_reported
    assert o.desired == o.current == 5


async def test_missing_workers_family_is_an_error(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    body = b"dask_scheduler_desired_workers 3.0\ndask_scheduler_workers_added_total 9.0\n"
    url = fakes.add("noworkers", {"/metrics": payload(body)})
    assert_failed(await observe_one(observer, url), "no dask_scheduler_workers")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"<html><body>Bad gateway</body></html>", "no dask_scheduler_workers"),
        (bytes(range(256)) * 8, "no dask_scheduler_workers"),
        (b'dask_scheduler_workers{state="idle"} lots\n', "unparseable"),
        (b'dask_scheduler_workers{state="idle} 1.0\n', "unparseable"),
        (b'dask_scheduler_workers{state="idle"} -1.0\n', "not a count"),
    ],
)
async def test_garbage_bodies_are_errors(
    fakes: FakeSchedulers, observer: Observer, body: bytes, fragment: str
) -> None:
    url = fakes.add("garbage", {"/metrics": payload(body)})
    assert_failed(await observe_one(observer, url), fragment)


async def test_http_error_status(fakes: FakeSchedulers, observer: Observer) -> None:
    url = fakes.add("broken", {"/metrics": status(500)})
    assert_failed(await observe_one(observer, url), "GET /metrics", "HTTP 500")


async def test_connection_refused(observer: Observer) -> None:
    o = await observe_one(observer, f"http://127.0.0.1:{free_port()}")
    assert_failed(o, "cannot connect", "connection refused")


async def test_invalid_url(observer: Observer) -> None:
    assert_failed(await observe_one(observer, "not a url"), "invalid URL")


async def test_slow_loris_body_is_cut_by_the_total_timeout(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    url = fakes.add("loris", {"/metrics": slow_loris})
    assert_failed(await observe_one(observer, url), "timed out after 0.5 s")


async def test_server_that_never_answers_times_out(observer: Observer) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up and closes
        writer.close()

    server = await asyncio.start_server(swallow, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        assert_failed(await observe_one(observer, f"http://127.0.0.1:{port}"), "timed out")
    finally:
        server.close()
        await server.wait_closed()


async def test_body_over_max_bytes_is_refused(fakes: FakeSchedulers, observer: Observer) -> None:
    big = NEW_LABELS + b"# padding " + b"x" * 200_000 + b"\n"
    url = fakes.add("big", {"/metrics": payload(big)})
    assert_failed(await observe_one(observer, url), "100000")


async def test_chunked_body_over_max_bytes_is_cut(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    url = fakes.add("flood", {"/metrics": chunked_flood})
    assert_failed(await observe_one(observer, url), "over 100000 bytes")


async def test_failures_count_up_to_stale_then_reset_on_success(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    routes: dict[str, Handler] = {"/metrics": status(503)}
    url = fakes.add("flaky", routes)
    first, second, third = [await observe_one(observer, url) for _ in range(3)]
    assert [o.consecutive_failures for o in (first, second, third)] == [1, 2, 3]
    assert [o.stale for o in (first, second, third)] == [False, True, True]
    fakes.add("flaky", {"/metrics": payload(NEW_LABELS)})
    recovered = await observe_one(observer, url)
    assert recovered.error is None
    assert recovered.consecutive_failures == 0 and not recovered.stale


async def test_forget_drops_the_failure_count(fakes: FakeSchedulers, observer: Observer) -> None:
    url = fakes.add("down", {"/metrics": status(502)})
    await observe_one(observer, url)
    assert (await observe_one(observer, url)).consecutive_failures == 2
    observer.forget("c")
    assert (await observe_one(observer, url)).consecutive_failures == 1


async def test_metrics_404_falls_back_to_counts_json(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    counts = {"workers": 4, "idle": 1, "saturated": 2, "processing": 8, "memory": 3,
              "waiting": 0, "released": 1, "erred": 0, "unrunnable": 2, "tasks": 14,
              "desired_workers": 6}  # fmt: skip
    url = fakes.add("noprom", {"/json/counts.json": payload(json.dumps(counts).encode())})
    first = await observe_one(observer, url)
    assert first.error is None and first.source == "counts"
    assert dict(first.workers) == {"connected": 4, "idle": 1, "saturated": 2}
    assert first.current == 4
    assert first.desired == 6 and first.desired_reported
    assert dict(first.tasks) == {
        "processing": 8, "memory": 3, "waiting": 0, "released": 1, "erred": 0, "no-worker": 2
    }  # fmt: skip
    second = await observe_one(observer, url)
    assert second.source == "counts"
    assert fakes.hits["noprom", "/metrics"] == 1  # remembered: straight to counts.json
    assert fakes.hits["noprom", "/json/counts.json"] == 2


async def test_counts_json_without_desired_holds_the_current_size(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    counts = {"workers": 3, "idle": 0, "saturated": 3, "processing": 9}
    url = fakes.add("oldcounts", {"/json/counts.json": payload(json.dumps(counts).encode())})
    o = await observe_one(observer, url)
    assert o.error is None
    assert not o.desired_reported
    assert o.desired == o.current == 3


async def test_metrics_and_counts_both_missing(fakes: FakeSchedulers, observer: Observer) -> None:
    url = fakes.add("nothing", {})
    o = await observe_one(observer, url)
    assert_failed(o, "GET /metrics: HTTP 404", "GET /json/counts.json: HTTP 404")


async def test_usage_is_read_and_polled_once_per_interval(fakes: FakeSchedulers) -> None:
    now = [1000.0]
    url = fakes.add(
        "usage",
        {
            "/metrics": payload(NEW_LABELS),
            "/json/identity.json": payload(json.dumps(IDENTITY).encode()),
        },
    )
    async with Observer(usage_interval=60.0, clock=lambda: now[0]) as observer:
        first = await observe_one(observer, url)
        assert first.usage is not None
        assert sorted(
            (w.name, w.address, w.nthreads, w.memory_limit, w.memory) for w in first.usage
        ) == [
            ("7", "tcp://10.0.0.2:4000", 2, 4_000_000_000, 0),
            ("a", "tcp://10.0.0.1:4000", 4, 8_000_000_000, 1_000_000),
        ]
        assert first.usage_observed_at == 1000.0
        now[0] += 59.0
        second = await observe_one(observer, url)
        assert second.usage == first.usage
        assert fakes.hits["usage", "/json/identity.json"] == 1
        now[0] += 1.0
        await observe_one(observer, url)
        assert fakes.hits["usage", "/json/identity.json"] == 2
        assert fakes.hits["usage", "/metrics"] == 3


async def test_failed_usage_poll_keeps_the_last_usage(fakes: FakeSchedulers) -> None:
    now = [1000.0]
    good = payload(json.dumps(IDENTITY).encode())
    url = fakes.add("busy", {"/metrics": payload(NEW_LABELS), "/json/identity.json": good})
    async with Observer(usage_interval=10.0, clock=lambda: now[0]) as observer:
        before = await observe_one(observer, url)
        fakes.add("busy", {"/json/identity.json": status(500)})
        now[0] += 10.0
        during = await observe_one(observer, url)
        assert during.error is None and during.desired == 7
        assert during.usage == before.usage
        assert during.usage_observed_at == 1000.0
        assert during.usage_error is not None and "HTTP 500" in during.usage_error


async def test_failed_poll_keeps_the_last_usage(fakes: FakeSchedulers, observer: Observer) -> None:
    identity = payload(json.dumps(IDENTITY).encode())
    url = fakes.add("dies", {"/metrics": payload(NEW_LABELS), "/json/identity.json": identity})
    before = await observe_one(observer, url)
    fakes.add("dies", {"/metrics": status(500)})
    after = await observe_one(observer, url)
    assert after.error is not None
    assert after.usage is not None and after.usage == before.usage


async def test_requests_in_flight_are_bounded(fakes: FakeSchedulers) -> None:
    async def slow(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.Response(body=NEW_LABELS)

    targets = [(f"c{i}", fakes.add(f"s{i}", {"/metrics": slow})) for i in range(20)]
    async with Observer(concurrency=4, usage_interval=3600) as observer:
        # usage is polled too (first cycle), and answers 404: more requests, same bound
        results = await observer.observe(targets)
    assert all(o.error is None for o in results.values())
    assert sum(fakes.hits.values()) == 40
    assert fakes.max_in_flight == 4


async def test_observe_never_raises_and_keys_every_cluster(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    targets = [
        ("ok", fakes.add("ok", {"/metrics": payload(NEW_LABELS)})),
        ("refused", f"http://127.0.0.1:{free_port()}"),
        ("garbage", fakes.add("g", {"/metrics": payload(b"\x00\xff" * 100)})),
        ("loris", fakes.add("l", {"/metrics": slow_loris})),
        ("500", fakes.add("e", {"/metrics": status(500)})),
        ("url", "::::"),
    ]
    results = await observer.observe(targets)
    assert list(results) == [name for name, _ in targets]
    assert results["ok"].error is None
    assert all(results[name].error for name, _ in targets[1:])


async def test_each_answer_is_read_into_its_own_cluster_across_read_batches(
    fakes: FakeSchedulers,
) -> None:
    # Bodies are parsed READ_BATCH at a time: over several batches, with garbage, a 404
    # (counts.json fallback) and refusals in between, every cluster gets its own numbers.
    n = 3 * READ_BATCH + 5
    targets = []
    for i in range(n):
        if i % 17 == 0:
            routes = {"/metrics": payload(b"not metrics")}
        elif i % 23 == 0:
            counts = json.dumps({"workers": i, "idle": 0, "saturated": 0, "desired_workers": 1})
            routes = {"/json/counts.json": payload(counts.encode(), "application/json")}
        else:
            body = metrics_with(f"dask_scheduler_desired_workers {i}.0").replace(
                b'{state="queued"} 40.0', b'{state="queued"} %d.0' % (1000 + i)
            )
            routes = {"/metrics": payload(body)}
        targets.append((f"c{i}", fakes.add(f"s{i}", routes)))
    targets.append(("refused", f"http://127.0.0.1:{free_port()}"))
    async with Observer(concurrency=8, max_desired=10_000, usage_interval=3600) as observer:
        for _ in range(2):  # the first cycle reads exactly, the second by layout
            results = await observer.observe(targets)
            assert list(results) == [name for name, _ in targets]
            for i in range(n):
                o = results[f"c{i}"]
                if i % 17 == 0:
                    assert o.error is not None and o.desired is None
                elif i % 23 == 0:
                    assert (o.source, o.workers["connected"], o.desired) == ("counts", i, 1)
                else:
                    assert (o.source, o.desired, o.tasks["queued"]) == ("metrics", i, 1000 + i)
            assert results["refused"].error is not None


async def test_a_name_given_twice_is_polled_once_at_its_last_url(
    fakes: FakeSchedulers, observer: Observer
) -> None:
    old = fakes.add("old", {"/metrics": payload(OLD_LABELS)})
    new = fakes.add("new", {"/metrics": payload(NEW_LABELS)})
    results = await observer.observe([("c", old), ("c", new)])
    assert results["c"].desired == 7
    assert fakes.hits["old", "/metrics"] == 0


async def test_closed_observer_refuses_to_observe() -> None:
    observer = Observer()
    await observer.aclose()
    with pytest.raises(RuntimeError):
        await observer.observe([])


def test_from_settings_takes_the_observer_settings() -> None:
    settings = Settings(
        observe_concurrency=7,
        observe_timeout=1.5,
        observe_max_bytes=1234,
        stale_after=5,
        max_desired_workers=99,
        usage_interval=30,
    )
    observer = Observer.from_settings(settings)
    assert (observer.concurrency, observer.timeout, observer.max_bytes) == (7, 1.5, 1234)
    assert (observer.stale_after, observer.max_desired, observer.usage_interval) == (5, 99, 30)


def test_current_by_label_set() -> None:
    def observation(workers: dict[str, int]) -> Observation:
        return Observation(cluster="c", observed_at=0.0, desired=0, workers=workers, tasks={},
                           usage=None, error=None, consecutive_failures=0, stale=False)  # fmt: skip

    assert observation({"connected": 4, "idle": 1, "saturated": 3}).current == 4
    assert observation({"idle": 1, "paused": 2, "retiring": 5}).current == 3
    assert observation({}).current == 0


async def test_values_are_read_afresh_each_poll(fakes: FakeSchedulers, observer: Observer) -> None:
    # The parser learns a payload's layout (its series, in order), never its values.
    url = fakes.add("moving", {"/metrics": payload(NEW_LABELS)})
    assert (await observe_one(observer, url)).tasks["queued"] == 40
    moved = NEW_LABELS.replace(b'{state="queued"} 40.0', b'{state="queued"} 41.0')
    fakes.add("moving", {"/metrics": payload(moved)})
    assert (await observe_one(observer, url)).tasks["queued"] == 41


async def test_samples_with_timestamps_are_read(fakes: FakeSchedulers, observer: Observer) -> None:
    body = (
        b'dask_scheduler_workers{state="idle"} 3 1700000000000\n'
        b"dask_scheduler_desired_workers 4 1700000000000\n"
    )
    url = fakes.add("stamped", {"/metrics": payload(body)})
    for _ in range(2):
        o = await observe_one(observer, url)
        assert o.error is None
        assert (o.desired, dict(o.workers)) == (4, {"idle": 3})


@pytest.mark.parametrize(
    "options", [{"concurrency": 0}, {"timeout": 0}, {"max_bytes": 0}, {"stale_after": 0}]
)
def test_invalid_options_are_refused(options: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        Observer(**options)  # type: ignore[arg-type]
