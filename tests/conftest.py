from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pytest

from autoscaler.demo.processes import SchedulerProcess, start_scheduler

pytest_plugins = ["tests.db_fixtures"]


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    # A run ended with SIGTERM (a CI time limit, `timeout`) still tears its fixtures down,
    # so no scheduler or worker process outlives it.
    signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture
def dask_scheduler_factory(tmp_path: Path) -> Iterator[Callable[..., SchedulerProcess]]:
    """Start real Dask schedulers (HTTP API enabled); all are stopped at teardown."""
    started: list[SchedulerProcess] = []

    def start(*, api: bool = True) -> SchedulerProcess:
        scheduler = start_scheduler(tmp_path, api=api)
        started.append(scheduler)
        return scheduler

    yield start
    for scheduler in started:
        scheduler.stop()


@pytest.fixture
def dask_scheduler(dask_scheduler_factory: Callable[..., SchedulerProcess]) -> SchedulerProcess:
    return dask_scheduler_factory()
