"""``/pool``: the capacity shared by every cluster."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter

from autoscaler.api.deps import CallerDep, StoreDep
from autoscaler.api.schemas import PoolPublic, PoolUpdate, Problem
from autoscaler.domain import Pool

router = APIRouter(prefix="/pool", tags=["pool"])


@router.get("")
def get_pool(caller: CallerDep, store: StoreDep) -> PoolPublic:
    """The pool; until one is set, its resources are cpu and memory and its capacity is null."""
    return PoolPublic.from_pool(store.get_pool(), store.pool_resources())


@router.put(
    "",
    responses={
        403: {"model": Problem, "description": "Not an admin token"},
        409: {"model": Problem, "description": "A dropped resource is used by a cluster"},
    },
)
def set_pool(body: PoolUpdate, caller: CallerDep, store: StoreDep) -> PoolPublic:
    """Replace the pool's capacity (admin only). Any resource names; memory in bytes."""
    caller.require_admin("change the pool")
    pool = store.set_pool(Pool(capacity=cast(dict[str, float], body.capacity)))
    return PoolPublic.from_pool(pool, pool.resources)
