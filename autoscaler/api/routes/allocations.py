"""``/allocations``: what the loop decided, latest and history."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from autoscaler.api.deps import CallerDep, StoreDep
from autoscaler.api.schemas import NAME_PATTERN, AllocationPublic, Problem

router = APIRouter(prefix="/allocations", tags=["allocations"])


@router.get("")
def latest_allocations(
    caller: CallerDep,
    store: StoreDep,
    group: Annotated[str | None, Query(max_length=63, pattern=NAME_PATTERN)] = None,
) -> list[AllocationPublic]:
    """The latest decision of each visible cluster; empty until the loop has run."""
    if caller.group is not None and group not in (None, caller.group):
        return []
    decisions = store.latest_decisions(group=caller.group or group)
    return [AllocationPublic.from_decision(d) for d in decisions]


@router.get("/history", responses={404: {"model": Problem, "description": "No such cluster"}})
def allocation_history(
    caller: CallerDep,
    store: StoreDep,
    cluster: Annotated[str, Query(min_length=1, max_length=63, pattern=NAME_PATTERN)],
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AllocationPublic]:
    """The last ``limit`` decisions of one cluster, newest first."""
    decisions = store.history(cluster, limit=limit, group=caller.group)
    return [AllocationPublic.from_decision(d) for d in decisions]
