"""The shared scale logic of ``Backend`` (an in-memory platform, a loopback scheduler), and the
registry (built-ins, decorator, entry points)."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autoscaler.domain import ClusterSpec
from autoscaler.errors import ConfigError, RetireMismatch
from autoscaler.settings import Settings
from backends import Backend, BackendOptions, ScaleResult, registry
from tests.test_retire import FakeScheduler, fake_scheduler  # noqa: F401 - fixture


class MemoryBackend(Backend):
    """A platform whose "workers" are names in a list; it registers them with the fake
    scheduler as they start, like real workers connecting."""

    name = "memory"

    def __init__(self, settings: Settings, scheduler: FakeScheduler) -> None:
        super().__init__(settings)
        self.scheduler = scheduler
        self.running: list[str] = []
        self.removed: list[str] = []
        self.seq = 0

    async def workers(self, cluster: ClusterSpec) -> tuple[str, ...]:
        return tuple(self.running)

    async def _start_workers(self, cluster: ClusterSpec, count: int) -> tuple[str, ...]:
        names = []
        for _ in range(count):
            self.seq += 1
            names.append(f"{cluster.name}-{self.seq}")
            self.scheduler.workers[names[-1]] = f"tcp://127.0.0.1:{40000 + self.seq}"
        self.running += names
        return tuple(names)

    async def _remove_workers(self, cluster: ClusterSpec, names: tuple[str, ...]) -> None:
        assert all(name not in self.scheduler.workers for name in names), "not retired first"
        self.removed += names
        self.running = [n for n in self.running if n not in names]


@pytest.fixture
async def backend(fake_scheduler: FakeScheduler) -> AsyncIterator[MemoryBackend]:  # noqa: F811
    backend = MemoryBackend(Settings(), fake_scheduler)
    yield backend
    await backend.close()


def spec(url: str) -> ClusterSpec:
    return ClusterSpec(name="c", scheduler_url=url, backend="memory", worker={"cpu": 1})


async def test_scale_up_down_is_idempotent(
    backend: MemoryBackend,
    fake_scheduler: FakeScheduler,  # noqa: F811
) -> None:
    cluster = spec(fake_scheduler.url)
    up = await backend.scale(cluster, 3)
    assert up == ScaleResult(
        target=3, current=3, started=("c-1", "c-2", "c-3"), message="started 3"
    )
    assert (await backend.scale(cluster, 3)).started == ()
    fake_scheduler.managed = {fake_scheduler.workers["c-3"]: 10**6}  # c-3 holds data

    down = await backend.scale(cluster, 1)
    assert down.retired == ("c-2", "c-1")  # least data first, then the newest
    assert down.current == 1 and backend.running == ["c-3"]
    assert fake_scheduler.retire_requests == [[f"tcp://127.0.0.1:{40002}", "tcp://127.0.0.1:40001"]]
    assert (await backend.scale(cluster, 1)).message == "at target"
    with pytest.raises(ConfigError):
        await backend.scale(cluster, -1)


async def test_only_what_the_scheduler_retired_is_removed(
    backend: MemoryBackend,
    fake_scheduler: FakeScheduler,  # noqa: F811
) -> None:
    cluster = spec(fake_scheduler.url)
    await backend.scale(cluster, 3)
    keep = fake_scheduler.workers["c-2"]

    def partial(asked: list[str]) -> dict[str, object]:
        retired: dict[str, object] = {a: {} for a in asked if a != keep}
        fake_scheduler.workers = {n: a for n, a in fake_scheduler.workers.items() if a != keep}
        fake_scheduler.workers["c-2"] = keep
        return retired

    fake_scheduler.retire = partial
    result = await backend.scale(cluster, 1)
    assert result.retired == ("c-3",) and result.skipped == ("c-2",)
    assert result.current == 2 and backend.removed == ["c-3"]
    assert "scheduler kept c-2" in result.message


async def test_unknown_workers_are_not_retired(
    backend: MemoryBackend,
    fake_scheduler: FakeScheduler,  # noqa: F811
) -> None:
    cluster = spec(fake_scheduler.url)
    await backend.scale(cluster, 2)
    del fake_scheduler.workers["c-2"]  # still starting: not yet connected
    result = await backend.scale(cluster, 0)
    assert result.retired == ("c-1",) and backend.running == ["c-2"]
    assert "1 not yet known to the scheduler" in result.message


async def test_unexpected_retirement_raises_after_removing_only_asked(
    backend: MemoryBackend,
    fake_scheduler: FakeScheduler,  # noqa: F811
) -> None:
    cluster = spec(fake_scheduler.url)
    await backend.scale(cluster, 3)
    everyone = dict(fake_scheduler.workers)

    def too_many(asked: list[str]) -> dict[str, object]:
        fake_scheduler.workers = {}
        return {a: {} for a in everyone.values()}

    fake_scheduler.retire = too_many
    with pytest.raises(RetireMismatch, match="not asked"):
        await backend.scale(cluster, 2)
    assert backend.removed == ["c-3"]  # the one asked; the others are not touched


def test_validate_options() -> None:
    assert MemoryBackend.validate_options({}) == {}
    assert MemoryBackend.validate_options({"retire_timeout": "30"}) == {"retire_timeout": 30.0}
    with pytest.raises(ConfigError, match="retire_timeout: Input should be greater than 0"):
        MemoryBackend.validate_options({"retire_timeout": 0})
    with pytest.raises(ConfigError, match="invalid backend_options for 'memory': color: Extra"):
        MemoryBackend.validate_options({"color": "red"})
    with pytest.raises(ConfigError, match="must be an object"):
        MemoryBackend.validate_options(["x"])  # type: ignore[arg-type]
    assert isinstance(MemoryBackend.parse_options({}), BackendOptions)


@pytest.fixture
def clean_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry.names()  # load built-ins once, then work on a copy
    monkeypatch.setattr(registry, "_registry", dict(registry._registry))
    monkeypatch.setattr(registry, "_failures", dict(registry._failures))


def test_registry_builtins_and_decorator(clean_registry: None) -> None:
    from backends.local import LocalBackend

    assert registry.get("local") is LocalBackend
    assert "local" in registry.names()
    with pytest.raises(ConfigError, match=r"unknown backend 'nope'; known: .*local"):
        registry.get("nope")
    assert registry.register(MemoryBackend) is MemoryBackend
    assert registry.get("memory") is MemoryBackend
    registry.register(MemoryBackend)  # the same class again is fine

    class Other(MemoryBackend):
        name = "memory"

    with pytest.raises(ConfigError, match="registered twice"):
        registry.register(Other)
    with pytest.raises(TypeError):
        registry.register(int)  # type: ignore[arg-type]


def test_registry_entry_points(
    clean_registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "thirdparty_backend.py").write_text(
        "from backends.base import Backend\n"
        "class CloudBackend(Backend):\n"
        "    name = 'cloud'\n"
        "broken = 1\n"
    )
    dist = tmp_path / "thirdparty_backend-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: thirdparty-backend\nVersion: 1.0\n"
    )
    (dist / "entry_points.txt").write_text(
        "[autoscaler.backends]\n"
        "cloud = thirdparty_backend:CloudBackend\n"
        "broken = thirdparty_backend:broken\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "thirdparty_backend", raising=False)
    registry.load_entry_points()
    assert registry.get("cloud").__name__ == "CloudBackend"
    assert "cloud" in registry.names()
    with pytest.raises(ConfigError, match="broken failed to load"):
        registry.get("broken")
