"""One full control-loop cycle for many clusters: observe, plan, apply (no-op), record.

The fleet is the observer benchmark's fake schedulers (one process on loopback, a captured
/metrics payload); the backend does nothing, so ``apply`` measures the loop's own fan-out.
Run: ``.venv/bin/python -m benchmarks.bench_loop`` (PostgreSQL at
``AUTOSCALER_TEST_POSTGRES_URL``, default the local ``test`` database; a private database is
created and dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import statistics
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sqlalchemy import create_engine, make_url, text

from autoscaler.domain import ClusterSpec, Pool
from autoscaler.loop import ControlLoop
from autoscaler.observe import Observer
from autoscaler.settings import Settings
from autoscaler.store import Store
from backends.base import Backend, ScaleResult
from benchmarks.fleet import fake_fleet

GIB = 2**30
STAGES = ("load", "observe", "plan", "apply", "record")
POSTGRES = os.environ.get(
    "AUTOSCALER_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


class NoopBackend(Backend):
    """Remembers targets and does nothing else."""

    name = "noop"

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.counts: dict[str, int] = {}

    async def workers(self, cluster: ClusterSpec) -> tuple[str, ...]:
        return tuple(f"{cluster.name}-{i}" for i in range(self.counts.get(cluster.name, 0)))

    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        self.counts[cluster.name] = target
        return ScaleResult(target=target, current=target)

    async def _start_workers(self, cluster: ClusterSpec, count: int) -> tuple[str, ...]:
        raise NotImplementedError

    async def _remove_workers(self, cluster: ClusterSpec, names: tuple[str, ...]) -> None:
        raise NotImplementedError


@contextmanager
def database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    name = f"autoscaler_bench_{secrets.token_hex(4)}"
    admin = create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(POSTGRES).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def register(store: Store, urls: list[str]) -> None:
    rng = np.random.default_rng(0)
    for i, url in enumerate(urls):
        store.create_cluster(
            ClusterSpec(
                name=f"c{i}",
                scheduler_url=url,
                backend="noop",
                worker={"cpu": int(rng.integers(1, 3)), "memory": int(rng.integers(1, 65)) * GIB},
                maximum=225,
                tier=int(rng.integers(0, 3)),
            )
        )
    store.set_pool(Pool(capacity={"cpu": 2000, "memory": 15 * 1024 * GIB}))


async def measure(store: Store, settings: Settings, cycles: int) -> dict[str, float]:
    async with Observer.from_settings(settings) as observer:
        loop = ControlLoop(settings, store, observer, backends={"noop": NoopBackend(settings)})
        await loop.run_cycle()  # warm-up: connections, first usage polls
        stages: dict[str, list[float]] = {s: [] for s in STAGES}
        totals = []
        for _ in range(cycles):
            report = await loop.run_cycle()
            for stage in STAGES:
                stages[stage].append(report.stages[stage])
            totals.append(sum(report.stages.values()))
        await loop.stop()
    result = {s: statistics.median(v) for s, v in stages.items()}
    result["total"] = statistics.median(totals)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2_000])
    parser.add_argument("--databases", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--cycles", type=int, default=5)
    args = parser.parse_args()
    header = " ".join(f"{s:>8}" for s in (*STAGES, "total"))
    print(f"{'clusters':>8} {'database':>10} {header}   (median seconds per stage)")
    for n in args.sizes:
        with fake_fleet(n) as urls, tempfile.TemporaryDirectory() as folder:
            for kind in args.databases:
                with database(kind, Path(folder)) as url:
                    store = Store(url)
                    store.upgrade()
                    register(store, urls)
                    settings = Settings(database_url=url, usage_interval=3600)
                    result = asyncio.run(measure(store, settings, args.cycles))
                    store.close()
                cells = " ".join(f"{result[s]:>8.3f}" for s in (*STAGES, "total"))
                print(f"{n:>8} {kind:>10} {cells}", flush=True)


if __name__ == "__main__":
    main()
