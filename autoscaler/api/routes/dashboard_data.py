"""``/dashboard``: the JSON the dashboard page polls (table page, pool, chart, one cluster).

Same tokens as the rest of ``/api/v1``; a group token sees only its group's clusters.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from autoscaler.api.deps import CallerDep, StoreDep
from autoscaler.api.schemas import NAME_PATTERN, Problem
from autoscaler.dashboard import views
from autoscaler.dashboard.schemas import (
    AllocationChart,
    ClusterDetail,
    ClusterLine,
    ClusterPage,
    PoolSummary,
    SortKey,
    State,
)
from autoscaler.domain import ClusterSpec
from autoscaler.loop import CycleReport
from autoscaler.store import Store

router = APIRouter(prefix="/dashboard", tags=["dashboard"])

NO_GROUP = "\x00"  # no stored group can hold a NUL byte: the store answers nothing
GroupQuery = Annotated[str | None, Query(max_length=63, pattern=NAME_PATTERN)]


def _last_report(request: Request) -> CycleReport | None:
    loop = request.app.state.loop
    return None if loop is None else loop.last


def _lines(store: Store, group: str | None) -> tuple[list[ClusterSpec], list[ClusterLine]]:
    specs = store.list_clusters(group=group)
    decisions = store.latest_decisions(group=group)
    observations = store.latest_observations(group=group)
    return specs, views.cluster_lines(specs, decisions, observations, now=time.time())


@router.get("/clusters")
def cluster_page(
    caller: CallerDep,
    store: StoreDep,
    request: Request,
    group: GroupQuery = None,
    tier: Annotated[int | None, Query(ge=0, le=1000)] = None,
    backend: Annotated[str | None, Query(max_length=63)] = None,
    state: State | None = None,
    search: Annotated[str | None, Query(max_length=63)] = None,
    sort: SortKey = "name",
    descending: bool = False,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> ClusterPage:
    """One page of the cluster table, filtered and sorted on the server, and the pool."""
    specs, lines = _lines(store, caller.group)
    filters = views.Filters(group=group, tier=tier, backend=backend, state=state, search=search)
    pool = views.pool_summary(store.get_pool(), specs, lines, _last_report(request))
    return views.page(
        lines, filters, sort=sort, descending=descending, offset=offset, limit=limit, pool=pool
    )


@router.get("/pool")
def pool_summary(caller: CallerDep, store: StoreDep, request: Request) -> PoolSummary:
    """Capacity, and what the caller's visible clusters are allocated, run and use."""
    specs, lines = _lines(store, caller.group)
    return views.pool_summary(store.get_pool(), specs, lines, _last_report(request))


@router.get("/chart")
def allocation_chart(
    caller: CallerDep,
    store: StoreDep,
    group: GroupQuery = None,
    window: Annotated[float, Query(ge=60, le=86400)] = 3600,
) -> AllocationChart:
    """Allocated workers of the largest clusters (and the rest summed) and their dominant
    shares over the last ``window`` seconds, from the decision history."""
    if caller.group is not None and group not in (None, caller.group):
        group = NO_GROUP  # another group's clusters: an empty chart
    return views.allocation_chart(
        store, now=time.time(), group=group or caller.group, window=window
    )


@router.get(
    "/clusters/{name}",
    responses={404: {"model": Problem, "description": "No such cluster (or another group's)"}},
)
def cluster_detail(
    name: Annotated[str, Path(min_length=1, max_length=63, pattern=NAME_PATTERN)],
    caller: CallerDep,
    store: StoreDep,
    request: Request,
) -> ClusterDetail:
    """A cluster's settings, latest observation (with worker usage) and recent decisions."""
    return views.cluster_detail(
        store, name, group=caller.group, report=_last_report(request), now=time.time()
    )
