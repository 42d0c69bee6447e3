"""Real Dask schedulers and workers as subprocesses, for the demo and the tests.

Every process is ended by its own pid (never by name), even when the test fails.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HTTP_ROUTES = [
    "distributed.http.scheduler.prometheus",
    "distributed.http.scheduler.info",
    "distributed.http.scheduler.json",
    "distributed.http.health",
    "distributed.http.proxy",
    "distributed.http.statics",
    "distributed.http.scheduler.api",
]


def dask_env(*, api: bool = True) -> dict[str, str]:
    """Environment for a Dask process, with the scheduler's HTTP API enabled."""
    env = dict(os.environ)
    if api:
        env["DASK_DISTRIBUTED__SCHEDULER__HTTP__ROUTES"] = json.dumps(HTTP_ROUTES)
    env["DASK_DISTRIBUTED__WORKER__DAEMON"] = "False"
    return env


@dataclass
class SchedulerProcess:
    process: subprocess.Popen[bytes]
    address: str  # tcp://127.0.0.1:PORT
    http_url: str  # http://127.0.0.1:PORT (dashboard, /metrics, /api/v1)

    def stop(self) -> None:
        stop_process(self.process)


def start_scheduler(workdir: Path, *, api: bool = True, timeout: float = 30) -> SchedulerProcess:
    scheduler_file = workdir / f"scheduler-{time.monotonic_ns()}.json"
    log = open(workdir / f"{scheduler_file.stem}.log", "wb")  # noqa: SIM115 - owned by the child
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--dashboard-address",
            "127.0.0.1:0",
            "--scheduler-file",
            str(scheduler_file),
            "--no-show",
        ],
        env=dask_env(api=api),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"scheduler exited with {process.returncode}")
        try:
            info = json.loads(scheduler_file.read_text())
            port = info["services"]["dashboard"]
            return SchedulerProcess(process, info["address"], f"http://127.0.0.1:{port}")
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            time.sleep(0.05)
    stop_process(process)
    raise TimeoutError("scheduler did not start")


def start_worker(
    scheduler_address: str, *, name: str, nthreads: int = 1, memory_limit: str = "1GiB"
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            scheduler_address,
            "--name",
            name,
            "--nthreads",
            str(nthreads),
            "--memory-limit",
            memory_limit,
            "--no-dashboard",
            "--host",
            "127.0.0.1",
        ],
        env=dask_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """End a process (and its session's children) by pid: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
