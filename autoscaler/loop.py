"""The control loop: observe every scheduler, plan, apply through the backends, record.

One cycle every ``interval`` seconds on an APScheduler (3.x) asyncio scheduler, never
overlapping: ``max_instances=1`` and ``coalesce`` make a slow cycle delay the next rather than
pile up. A cycle never raises for one cluster's fault: a scheduler that cannot be polled is an
observation with an error, a backend that fails is retried, then reported in its decision.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from autoscaler.domain import ClusterSpec, Decision
from autoscaler.errors import TransientBackendError
from autoscaler.observe import Observation, Observer
from autoscaler.planner import Damping, Demand, plan
from autoscaler.settings import Settings
from autoscaler.store import ObservationRow, Store
from backends import registry
from backends.base import Backend

log = logging.getLogger(__name__)

PRUNE_EVERY = 600.0  # seconds between two prunes of the decision history
STARTING_WINDOW = 60.0  # seconds workers a backend started may take to reach the scheduler
UNSCHEDULABLE_BACKOFF = 120.0  # seconds a cluster is not grown after the platform could not


@dataclass(slots=True)
class CycleReport:
    """What one cycle did, for logs, metrics and the demo's table."""

    started_at: float
    stages: dict[str, float] = field(default_factory=dict)  # seconds per stage
    decisions: list[Decision] = field(default_factory=list)
    observations: dict[str, Observation] = field(default_factory=dict)
    skipped: str | None = None  # why nothing was planned (no pool, no clusters)


class ControlLoop:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        observer: Observer,
        *,
        backends: Mapping[str, Backend] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.store = store
        self.observer = observer
        self.clock = clock
        self.damping = Damping(
            scale_down_delay=settings.scale_down_delay,
            scale_down_max_fraction=settings.scale_down_max_fraction,
            preemption_grace=settings.preemption_grace,
        )
        self.last: CycleReport | None = None
        self.on_cycle: list[Callable[[CycleReport], None]] = []  # e.g. metrics; must not raise
        self._backends: dict[str, Backend] = dict(backends or {})
        self._lower_since: dict[str, float] = {}
        self._started: dict[str, tuple[int, float]] = {}  # backend's count after a scale, when
        self._last_current: dict[str, int] = {}  # last workers seen by each scheduler
        self._unschedulable_at: dict[str, float] = {}  # when the platform last could not place
        self._asked: dict[str, int] = {}  # the last target each backend accepted
        self._known: set[str] = set()
        self._last_prune = 0.0
        self._scheduler: AsyncIOScheduler | None = None
        self._cycle_lock = asyncio.Lock()

    # --- running ---
    def start(self) -> None:
        """Run a cycle now, then every ``interval`` seconds, on the running event loop."""
        self._scheduler = AsyncIOScheduler()
        self._scheduler.add_job(
            self.run_cycle_safely,
            "interval",
            seconds=self.settings.interval,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            next_run_time=datetime.now(),
        )
        self._scheduler.start()

    async def stop(self, *, shutdown_backends: bool = True) -> None:
        """Stop scheduling cycles, wait for the running one, then release the backends."""
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None:
            scheduler.pause()  # shutdown() alone would cancel the running cycle mid-scale
        async with self._cycle_lock:
            if scheduler is not None:
                scheduler.shutdown(wait=False)  # cancels only a cycle waiting for the lock
            for backend in self._backends.values():
                try:
                    await (backend.shutdown() if shutdown_backends else backend.close())
                except Exception:
                    log.exception("backend %s failed to shut down", backend.name)

    async def run_cycle_safely(self) -> None:
        try:
            await self.run_cycle()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("control loop cycle failed; the next one runs as planned")

    # --- one cycle ---
    async def run_cycle(self) -> CycleReport:
        async with self._cycle_lock:
            report = CycleReport(started_at=self.clock())
            tick = time.perf_counter()

            def stage(name: str) -> None:
                nonlocal tick
                now = time.perf_counter()
                report.stages[name] = now - tick
                tick = now

            clusters = await asyncio.to_thread(self.store.list_clusters)
            pool = await asyncio.to_thread(self.store.get_pool)
            stage("load")
            report.observations = await self.observer.observe(
                [(c.name, c.scheduler_url) for c in clusters]
            )
            self._forget_removed({c.name for c in clusters})
            stage("observe")
            if pool is None or not clusters:
                report.skipped = "no pool set" if pool is None else "no clusters"
                return self._finish(report)
            demands = [self._demand(c, report.observations[c.name]) for c in clusters]
            result = plan(
                pool,
                demands,
                now=report.started_at,
                damping=self.damping,
                lower_since=self._lower_since,
            )
            self._lower_since = result.lower_since
            stage("plan")
            report.decisions = await self._apply(clusters, result.decisions)
            stage("apply")
            await asyncio.to_thread(self._record, report)
            stage("record")
            return self._finish(report)

    def _finish(self, report: CycleReport) -> CycleReport:
        self.last = report
        for listener in self.on_cycle:
            listener(report)
        return report

    def _demand(self, cluster: ClusterSpec, observation: Observation) -> Demand:
        if observation.error is None:
            self._last_current[cluster.name] = observation.current
        current = self._last_current.get(cluster.name, 0)
        # Workers still starting are not seen by the scheduler yet but hold the pool already.
        count, at = self._started.get(cluster.name, (0, 0.0))
        if self.clock() - at < STARTING_WINDOW:
            current = max(current, count)
        unplaced_at = self._unschedulable_at.get(cluster.name, -math.inf)
        return Demand(
            spec=cluster,
            desired=observation.desired,
            current=current,
            stale=observation.stale or observation.desired is None,
            unschedulable=self.clock() - unplaced_at < UNSCHEDULABLE_BACKOFF,
        )

    def _forget_removed(self, names: set[str]) -> None:
        tables = (
            self._started,
            self._last_current,
            self._lower_since,
            self._unschedulable_at,
            self._asked,
        )
        for table in tables:
            for name in [n for n in table if n not in names]:
                del table[name]
        for name in [n for n in self._known if n not in names]:
            self.observer.forget(name)
        self._known = names

    # --- apply ---
    async def _apply(
        self, clusters: list[ClusterSpec], decisions: list[Decision]
    ) -> list[Decision]:
        if self.settings.dry_run:
            return [replace(d, applied=False) for d in decisions]
        by_name = {c.name: c for c in clusters}
        gate = asyncio.Semaphore(self.settings.apply_concurrency)

        async def one(decision: Decision) -> Decision:
            asked = self._asked.get(decision.cluster, decision.target)
            if decision.target == decision.current == asked:
                return decision  # nothing to reconcile
            async with gate:
                return await self._scale(by_name[decision.cluster], decision)

        return list(await asyncio.gather(*(one(d) for d in decisions)))

    async def _scale(self, cluster: ClusterSpec, decision: Decision) -> Decision:
        attempts = self.settings.apply_retries + 1
        for attempt in range(attempts):
            try:
                backend = self._backend(cluster.backend)
                result = await backend.scale(cluster, decision.target)
                # workers placed but still starting hold the pool too
                placed = result.current + result.pending - result.unschedulable
                self._started[cluster.name] = (placed, self.clock())
                self._asked[cluster.name] = result.target
                if result.unschedulable:
                    self._unschedulable_at[cluster.name] = self.clock()
                return decision
            except asyncio.CancelledError:
                raise
            except TransientBackendError as exc:
                if attempt + 1 < attempts:
                    await asyncio.sleep(min(0.2 * 2**attempt, 5.0))
                    continue
                error = f"{type(exc).__name__}: {exc}"
            except Exception as exc:  # one failing cluster never blocks the others
                error = f"{type(exc).__name__}: {exc}"
            log.warning("scaling %s to %d failed: %s", cluster.name, decision.target, error)
            return replace(decision, applied=False, error=error)
        raise AssertionError("unreachable")

    def _backend(self, name: str) -> Backend:
        backend = self._backends.get(name)
        if backend is None:
            backend = self._backends[name] = registry.get(name)(self.settings)
        return backend

    # --- record ---
    def _record(self, report: CycleReport) -> None:
        rows = [
            ObservationRow(
                cluster=o.cluster,
                observed_at=o.observed_at,
                desired=o.desired,
                current=o.current if o.error is None else None,
                workers=dict(o.workers),
                tasks=dict(o.tasks),
                error=o.error,
                stale=o.stale,
            )
            for o in report.observations.values()
        ]
        self.store.record_observations(rows)
        self.store.record_decisions(report.decisions)
        if report.started_at - self._last_prune >= PRUNE_EVERY:
            self.store.prune_history(report.started_at - self.settings.history_retention)
            self._last_prune = report.started_at
