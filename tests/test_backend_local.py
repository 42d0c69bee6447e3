"""The local backend with a real scheduler and real ``dask worker`` processes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from distributed import Client

from autoscaler.demo.processes import SchedulerProcess
from autoscaler.domain import ClusterSpec
from autoscaler.errors import ConfigError, TransientBackendError
from autoscaler.settings import Settings
from backends import registry
from backends.local import BOOT_ID, LocalBackend, WorkerRecord, _alive, _proc_stat
from tests.test_retire import FakeScheduler, fake_scheduler  # noqa: F401 - fixture

MEMORY = 700_000_000


def records(state_dir: Path) -> list[WorkerRecord]:
    return [WorkerRecord(**json.loads(p.read_text())) for p in state_dir.glob("*/*.json")]


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    """The backend's state folder; every worker recorded in it is killed at teardown."""
    path = tmp_path / "state"
    yield path
    for record in records(path):
        if _alive(record):
            os.killpg(record.pid, signal.SIGKILL)
            for _ in range(200):
                if not _alive(record):
                    break
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(record.pid, os.WNOHANG)


@pytest.fixture
async def backend(state_dir: Path) -> AsyncIterator[LocalBackend]:
    backend = LocalBackend(Settings(local_state_dir=str(state_dir)))
    yield backend
    await backend.shutdown()


def spec(scheduler: SchedulerProcess, **options: Any) -> ClusterSpec:
    return ClusterSpec(
        name="etl",
        scheduler_url=scheduler.http_url,
        backend="local",
        backend_options={"scheduler_address": scheduler.address, **options},
        worker={"cpu": 1.5, "memory": MEMORY},
    )


async def scheduler_workers(scheduler: SchedulerProcess, count: int) -> dict[str, Any]:
    """The scheduler's view of its workers (by name), once it has ``count`` of them."""
    async with httpx.AsyncClient() as http:
        for _ in range(1200):  # a generous deadline for a loaded machine, not a timing check
            body = (await http.get(f"{scheduler.http_url}/json/identity.json")).json()
            if len(body["workers"]) == count:
                return {w["name"]: {**w, "address": a} for a, w in body["workers"].items()}
            await asyncio.sleep(0.05)
    raise AssertionError(f"the scheduler never had {count} workers")


def by_name(state_dir: Path) -> dict[str, WorkerRecord]:
    return {r.name: r for r in records(state_dir)}


async def test_scale_up_then_down_keeps_every_result(
    dask_scheduler: SchedulerProcess, backend: LocalBackend, state_dir: Path
) -> None:
    cluster = spec(dask_scheduler)
    up = await backend.scale(cluster, 2)
    assert up.started == ("etl-1", "etl-2") and up.current == 2
    seen = await scheduler_workers(dask_scheduler, 2)
    assert sorted(seen) == ["etl-1", "etl-2"]
    assert {(w["nthreads"], w["memory_limit"]) for w in seen.values()} == {(2, MEMORY)}
    assert (await backend.scale(cluster, 2)).started == ()  # idempotent
    procs = by_name(state_dir)

    async with Client(dask_scheduler.address, asynchronous=True) as client:
        futures = [
            await client.scatter(list(range(n)), workers=[seen[name]["address"]])
            for n, name in ((1000, "etl-1"), (2000, "etl-2"))
        ]
        down = await backend.scale(cluster, 1)
        assert len(down.retired) == 1 and down.current == 1 and down.skipped == ()
        (gone,) = down.retired
        (kept,) = {"etl-1", "etl-2"} - {gone}
        assert _proc_stat(procs[gone].pid) is None or not _alive(procs[gone])
        assert _alive(procs[kept])
        assert await backend.workers(cluster) == (kept,)
        assert [len(x) for x in await client.gather(futures)] == [1000, 2000]

        # The last worker holds the only copies: the scheduler keeps it, and so do we.
        last = await backend.scale(cluster, 0)
        assert last.retired == () and last.skipped == (kept,) and last.current == 1
        assert _alive(procs[kept])
        assert [len(x) for x in await client.gather(futures)] == [1000, 2000]


async def test_only_the_workers_the_scheduler_retired_are_ended(
    dask_scheduler: SchedulerProcess,
    backend: LocalBackend,
    state_dir: Path,
    fake_scheduler: FakeScheduler,  # noqa: F811
) -> None:
    """Workers run on a real scheduler, retire goes through a loopback one that answers
    with fewer workers than asked and does not really retire them: the backend ends exactly
    the one answered (terminating it when it does not exit by itself) and keeps the other."""
    cluster = spec(dask_scheduler, nanny=False, exit_timeout=0.2)
    cluster = dataclasses.replace(cluster, scheduler_url=fake_scheduler.url)
    await backend.scale(cluster, 2)
    fake_scheduler.workers = {"etl-1": "tcp://127.0.0.1:1", "etl-2": "tcp://127.0.0.1:2"}
    fake_scheduler.retire = lambda asked: {"tcp://127.0.0.1:1": {"name": "etl-1"}}
    procs = by_name(state_dir)

    result = await backend.scale(cluster, 0)
    assert fake_scheduler.retire_requests == [["tcp://127.0.0.1:2", "tcp://127.0.0.1:1"]]
    assert result.retired == ("etl-1",) and result.skipped == ("etl-2",)
    assert result.current == 1 and await backend.workers(cluster) == ("etl-2",)
    assert not _alive(procs["etl-1"]) and _alive(procs["etl-2"])


SERVICE = """
import asyncio, sys
from autoscaler.domain import ClusterSpec
from autoscaler.settings import Settings
from backends.local import LocalBackend

async def main() -> None:
    backend = LocalBackend(Settings(local_state_dir=sys.argv[1]))
    cluster = ClusterSpec(name="etl", scheduler_url=sys.argv[2], backend="local",
                          backend_options={"scheduler_address": sys.argv[3], "nanny": False},
                          worker={"cpu": 1, "memory": 700_000_000})
    print((await backend.scale(cluster, 2)).started, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def test_crash_then_adopt_then_shutdown_stops_all(
    dask_scheduler: SchedulerProcess, state_dir: Path
) -> None:
    """A service SIGKILLed after starting 2 workers; the next one adopts them, once each."""
    service = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        SERVICE,
        str(state_dir),
        dask_scheduler.http_url,
        dask_scheduler.address,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        start_new_session=True,
    )
    try:
        assert service.stdout is not None
        assert (await service.stdout.readline()).strip() == b"('etl-1', 'etl-2')"
    finally:
        service.kill()  # SIGKILL: no shutdown, no cleanup
        await service.wait()

    backend = LocalBackend(Settings(local_state_dir=str(state_dir)))
    try:
        cluster = spec(dask_scheduler, nanny=False)
        assert await backend.workers(cluster) == ("etl-1", "etl-2")
        again = await backend.scale(cluster, 2)
        assert again.started == () and again.current == 2
        more = await backend.scale(cluster, 3)
        assert more.started == ("etl-3",) and more.current == 3
        assert sorted(await scheduler_workers(dask_scheduler, 3)) == ["etl-1", "etl-2", "etl-3"]
        started = records(state_dir)
    finally:
        await backend.shutdown()
    assert len(started) == 3 and not any(_alive(r) for r in started)
    assert records(state_dir) == []
    assert await scheduler_workers(dask_scheduler, 0) == {}


async def test_stale_records_never_count(state_dir: Path) -> None:
    backend = LocalBackend(Settings(local_state_dir=str(state_dir)))
    cluster = ClusterSpec(
        name="a/b c",  # any cluster name maps to a folder
        scheduler_url="http://127.0.0.1:9",
        backend="local",
        backend_options={"scheduler_address": "tcp://127.0.0.1:9"},
        worker={"cpu": 1},
    )
    assert await backend.workers(cluster) == ()
    stat = _proc_stat(os.getpid())
    assert stat is not None
    folder = backend._cluster_dir(cluster.name)
    folder.mkdir(parents=True)
    reused = dict(
        cluster="a/b c",
        name="a/b c-4",
        seq=4,
        pid=os.getpid(),
        start_time=stat[1] - 1,
        scheduler_address="tcp://127.0.0.1:9",
        scheduler_url="http://127.0.0.1:9",
        started_at=time.time(),
        boot_id=BOOT_ID,
    )
    (folder / "x.json").write_text(json.dumps(reused))  # our pid, another start time
    other_boot = {**reused, "seq": 2, "start_time": stat[1], "boot_id": "an-earlier-boot"}
    (folder / "z.json").write_text(json.dumps(other_boot))  # our pid and start, another boot
    (folder / "y.json").write_text("{not json")
    assert await backend.workers(cluster) == ()
    assert not (folder / "x.json").exists() and not (folder / "z.json").exists()
    assert backend._next_seq["a/b c"] == 5  # a new worker never reuses a recorded name

    other = LocalBackend(Settings(local_state_dir=str(state_dir)))
    with (
        backend._exclusive(cluster.name),
        pytest.raises(TransientBackendError, match="another autoscaler"),
    ):
        await other.scale(cluster, 0)
    assert (await other.scale(cluster, 0)).message == "at target"
    (folder / "y.json").unlink()


def test_validate_options() -> None:
    local = registry.get("local")
    assert local.validate_options({"scheduler_address": " tcp://127.0.0.1:8786/ "}) == {
        "scheduler_address": "tcp://127.0.0.1:8786"
    }
    assert local.validate_options(
        {"scheduler_address": "tls://sched.example:8786", "nanny": False, "exit_timeout": "5"}
    ) == {"scheduler_address": "tls://sched.example:8786", "nanny": False, "exit_timeout": 5.0}
    with pytest.raises(ConfigError, match="scheduler_address: Field required"):
        local.validate_options({})
    for bad in (
        "http://127.0.0.1:8786",
        "tcp://127.0.0.1",
        "tcp://:8786",
        "tcp://h:99999",
        "tcp://h:1/path",
        "127.0.0.1:8786",
        8786,
    ):
        with pytest.raises(ConfigError, match="scheduler_address"):
            local.validate_options({"scheduler_address": bad})
    with pytest.raises(ConfigError, match="nanny"):
        local.validate_options({"scheduler_address": "tcp://h:1", "nanny": "maybe"})
    with pytest.raises(ConfigError, match="exit_timeout"):
        local.validate_options({"scheduler_address": "tcp://h:1", "exit_timeout": -1})
    with pytest.raises(ConfigError, match="command: Extra inputs are not permitted"):
        local.validate_options({"scheduler_address": "tcp://h:1", "command": "rm -rf /"})
