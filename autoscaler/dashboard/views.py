"""What the dashboard shows, built from the store and the loop's last report.

Everything is filtered to what the caller may see (``group``) before it is summed or paged.
Paging, sorting and filtering happen here, on the server: a browser never receives 2,000 lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from autoscaler.api.schemas import AllocationPublic, ClusterPublic
from autoscaler.dashboard import queries
from autoscaler.dashboard.schemas import (
    AllocationChart,
    ClusterDetail,
    ClusterLine,
    ClusterPage,
    Facets,
    ObservationView,
    PoolSummary,
    Series,
    SortKey,
    Usage,
)
from autoscaler.domain import ClusterSpec, Decision, Pool
from autoscaler.loop import CycleReport
from autoscaler.observe import Observation
from autoscaler.store import ObservationRow, Store

OTHER = "other clusters"


@dataclass(frozen=True, slots=True, kw_only=True)
class Filters:
    group: str | None = None
    tier: int | None = None
    backend: str | None = None
    state: str | None = None
    search: str | None = None  # part of the name

    def accept(self, line: ClusterLine) -> bool:
        return (
            (self.group is None or line.group == self.group)
            and (self.tier is None or line.tier == self.tier)
            and (self.backend is None or line.backend == self.backend)
            and (self.state is None or line.state == self.state)
            and (not self.search or self.search.lower() in line.name)
        )


def cluster_lines(
    specs: Iterable[ClusterSpec],
    decisions: Iterable[Decision],
    observations: Iterable[ObservationRow],
    *,
    now: float,
) -> list[ClusterLine]:
    """One line per cluster, by name."""
    latest = {d.cluster: d for d in decisions}
    seen = {o.cluster: o for o in observations}
    return [_line(spec, latest.get(spec.name), seen.get(spec.name), now) for spec in specs]


def _line(
    spec: ClusterSpec, d: Decision | None, o: ObservationRow | None, now: float
) -> ClusterLine:
    starved = d is not None and d.allocated < d.desired
    if o is not None and o.stale:
        state = "stale"
    elif (o is not None and o.error) or (d is not None and d.error):
        state = "error"
    elif d is None:
        state = "new"
    else:
        state = "starved" if starved else "ok"
    return ClusterLine.model_construct(
        name=spec.name,
        group=spec.group,
        tier=spec.tier,
        backend=spec.backend,
        weight=spec.weight,
        desired=None if d is None else d.desired,
        allocated=None if d is None else d.allocated,
        target=None if d is None else d.target,
        current=None if d is None else d.current,
        dominant_share=None if d is None else d.dominant_share,
        reason=None if d is None else d.reason,
        decided_at=None if d is None else d.decided_at,
        decision_error=None if d is None else d.error,
        observation_age=None if o is None else max(0.0, now - o.observed_at),
        observation_error=None if o is None else o.error,
        starved=starved,
        state=state,
    )


def page(
    lines: Sequence[ClusterLine],
    filters: Filters,
    *,
    sort: SortKey = "name",
    descending: bool = False,
    offset: int = 0,
    limit: int = 50,
    pool: PoolSummary,
) -> ClusterPage:
    """The lines that pass ``filters``, sorted (empty values last either way), one page."""
    matched = [line for line in lines if filters.accept(line)]
    present = [line for line in matched if getattr(line, sort) is not None]
    missing = [line for line in matched if getattr(line, sort) is None]
    present.sort(key=lambda line: (getattr(line, sort), line.name), reverse=descending)
    ordered = present + missing
    states: dict[str, int] = {}
    for line in lines:
        states[line.state] = states.get(line.state, 0) + 1
    return ClusterPage(
        total=len(lines),
        matched=len(matched),
        offset=offset,
        limit=limit,
        clusters=ordered[offset : offset + limit],
        facets=Facets(
            groups=sorted({line.group for line in lines}),
            tiers=sorted({line.tier for line in lines}),
            backends=sorted({line.backend for line in lines}),
            states=states,
        ),
        pool=pool,
    )


def pool_summary(
    pool: Pool | None,
    specs: Sequence[ClusterSpec],
    lines: Sequence[ClusterLine],
    report: CycleReport | None,
) -> PoolSummary:
    """Capacity, and what the visible clusters are allocated, run and use."""
    workers = {spec.name: spec.worker for spec in specs}
    allocated: dict[str, float] = dict.fromkeys(pool.resources if pool else (), 0)
    for line in lines:
        for resource, size in workers[line.name].items():
            allocated[resource] = allocated.get(resource, 0) + (line.allocated or 0) * size
    running, used = _usage(report.observations if report else {}, set(workers))
    return PoolSummary(
        capacity=None if pool is None else dict(pool.capacity),
        allocated=allocated,
        running=running,
        used=used,
        clusters=len(lines),
        starved=sum(line.starved for line in lines),
        errors=sum(bool(line.observation_error or line.decision_error) for line in lines),
        cycle_at=None if report is None else report.started_at,
        stages={} if report is None else dict(report.stages),
    )


def _usage(
    observations: Mapping[str, Observation], visible: set[str]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    usages = [o.usage for name, o in observations.items() if name in visible and o.usage]
    if not usages:
        return None, None
    workers = [w for usage in usages for w in usage]
    running = {
        "cpu": sum(w.nthreads for w in workers),
        "memory": sum(w.memory_limit for w in workers),
    }
    return running, {"memory": sum(w.memory for w in workers)}


def allocation_chart(
    store: Store,
    *,
    now: float,
    group: str | None,
    window: float = 3600.0,
    points: int = 120,
    top: int = 8,
) -> AllocationChart:
    """The ``top`` clusters by current allocation, and the rest summed, over ``window`` s."""
    since = now - window
    step = window / points
    latest = store.latest_decisions(group=group)
    largest = sorted(latest, key=lambda d: (-d.allocated, d.cluster))[:top]
    names = [d.cluster for d in largest]
    by_cycle: dict[float, dict[str, queries.Point]] = {}
    for point in queries.decisions_since(store, since, names):
        by_cycle.setdefault(point.decided_at, {})[point.cluster] = point
    allocated: dict[str, list[int | None]] = {name: [None] * points for name in [*names, OTHER]}
    shares: dict[str, list[float | None]] = {name: [None] * points for name in allocated}
    for total in queries.totals_since(store, since, group=group):
        bucket = min(points - 1, max(0, int((total.decided_at - since) // step)))
        cycle = by_cycle.get(total.decided_at, {})
        for name, point in cycle.items():
            allocated[name][bucket] = point.allocated
            shares[name][bucket] = point.dominant_share
        for name in names:
            if name not in cycle:  # not decided in that cycle: not registered yet, or gone
                allocated[name][bucket] = 0
        allocated[OTHER][bucket] = total.allocated - sum(p.allocated for p in cycle.values())
    return AllocationChart(
        since=since,
        step=step,
        times=[since + (i + 1) * step for i in range(points)],
        series=[
            Series(name=name, allocated=allocated[name], dominant_share=shares[name])
            for name in allocated
        ],
    )


def cluster_detail(
    store: Store, name: str, *, group: str | None, report: CycleReport | None, now: float
) -> ClusterDetail:
    """A cluster's settings, latest observation and recent decisions; NotFound if not visible."""
    spec = store.get_cluster(name, group=group)
    history = store.history(name, limit=100, group=group)
    row = next((o for o in store.latest_observations(group=spec.group) if o.cluster == name), None)
    seen = report.observations.get(name) if report else None
    usage = None
    if seen is not None and seen.usage is not None:
        usage = [Usage.model_validate(w, from_attributes=True) for w in seen.usage]
    observation = None
    if row is not None:
        observation = ObservationView(
            observed_at=row.observed_at,
            age=max(0.0, now - row.observed_at),
            desired=row.desired,
            current=row.current,
            workers=dict(row.workers),
            tasks=dict(row.tasks),
            error=row.error,
            stale=row.stale,
            usage=usage,
        )
    return ClusterDetail(
        cluster=ClusterPublic.from_spec(spec),
        observation=observation,
        decisions=[AllocationPublic.from_decision(d) for d in history],
    )
