"""Real Dask work for the demo: each cluster is busy during its own windows of time."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from distributed import Client, Future

TASK_SECONDS = 0.5
BACKLOG = 120  # tasks kept queued while a cluster is busy: far more than the pool can run


def task(i: int) -> int:
    time.sleep(TASK_SECONDS)
    return i


@dataclass(frozen=True, slots=True)
class Workload:
    """Keep a scheduler busy from ``start`` to ``stop`` seconds after the demo begins."""

    cluster: str
    scheduler_address: str
    start: float
    stop: float

    def busy(self, elapsed: float) -> bool:
        return self.start <= elapsed < self.stop


async def run_workload(workload: Workload, began: float) -> None:
    """Top the backlog up while busy; cancel what is left when the window closes."""
    async with Client(workload.scheduler_address, asynchronous=True) as client:
        pending: list[Future] = []
        submitted = 0
        while True:
            elapsed = time.monotonic() - began
            if elapsed >= workload.stop:
                break
            if workload.busy(elapsed):
                pending = [f for f in pending if not f.done()]
                missing = BACKLOG - len(pending)
                if missing > 0:
                    keys = range(submitted, submitted + missing)
                    pending += client.map(task, keys, key=[f"{workload.cluster}-{k}" for k in keys])
                    submitted += missing
            await asyncio.sleep(1.0)
        if pending:
            await client.cancel(pending)
