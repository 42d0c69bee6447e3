"""``/clusters``: register, list, read, change and forget Dask clusters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Response

from autoscaler.api.deps import CallerDep, SettingsDep, StoreDep
from autoscaler.api.schemas import (
    NAME_PATTERN,
    ClusterCreate,
    ClusterPublic,
    ClusterUpdate,
    Problem,
)
from autoscaler.api.validation import check_cluster, merge

router = APIRouter(prefix="/clusters", tags=["clusters"])

ClusterName = Annotated[str, Path(min_length=1, max_length=63, pattern=NAME_PATTERN)]
_ERRORS: dict[int | str, dict[str, Any]] = {
    403: {"model": Problem, "description": "Another group than the token's"},
    404: {"model": Problem, "description": "No such cluster (or another group's)"},
}


@router.post(
    "",
    status_code=201,
    responses={**_ERRORS, 409: {"model": Problem, "description": "Duplicate name"}},
)
def create_cluster(
    body: ClusterCreate, caller: CallerDep, store: StoreDep, settings: SettingsDep
) -> ClusterPublic:
    """Register a cluster; it is managed from the next cycle on."""
    spec = body.to_spec(caller.own_group(body.group))
    spec = check_cluster(spec, settings=settings, resources=store.pool_resources())
    return ClusterPublic.from_spec(store.create_cluster(spec))


@router.get("")
def list_clusters(
    caller: CallerDep,
    store: StoreDep,
    group: Annotated[str | None, Query(max_length=63, pattern=NAME_PATTERN)] = None,
    tier: Annotated[int | None, Query(ge=0, le=1000)] = None,
) -> list[ClusterPublic]:
    """Clusters visible to the caller, by name; a group token sees only its group."""
    if caller.group is not None and group not in (None, caller.group):
        return []
    specs = store.list_clusters(group=caller.group or group, tier=tier)
    return [ClusterPublic.from_spec(spec) for spec in specs]


@router.get("/{name}", responses=_ERRORS)
def get_cluster(name: ClusterName, caller: CallerDep, store: StoreDep) -> ClusterPublic:
    return ClusterPublic.from_spec(store.get_cluster(name, group=caller.group))


@router.patch("/{name}", responses=_ERRORS)
def update_cluster(
    name: ClusterName,
    body: ClusterUpdate,
    caller: CallerDep,
    store: StoreDep,
    settings: SettingsDep,
) -> ClusterPublic:
    """Change any field but the name; the merged cluster is validated as a whole."""
    current = store.get_cluster(name, group=caller.group)
    changes = body.changes()
    if "group" in changes:
        caller.own_group(changes["group"])
    spec = check_cluster(
        merge(current, changes), settings=settings, resources=store.pool_resources()
    )
    fields = {key: getattr(spec, key) for key in ClusterUpdate.model_fields}
    return ClusterPublic.from_spec(store.update_cluster(name, fields, group=caller.group))


@router.delete("/{name}", status_code=204, response_class=Response, responses=_ERRORS)
def delete_cluster(name: ClusterName, caller: CallerDep, store: StoreDep) -> None:
    """Stop managing a cluster (its workers are left as they are) and forget its history."""
    store.delete_cluster(name, group=caller.group)
