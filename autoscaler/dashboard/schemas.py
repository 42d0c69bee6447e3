"""Answers of the dashboard's JSON API (``/api/v1/dashboard/...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from autoscaler.api.schemas import AllocationPublic, ClusterPublic, Number

State = Literal["new", "ok", "starved", "error", "stale"]
SortKey = Literal[
    "name",
    "group",
    "tier",
    "backend",
    "weight",
    "desired",
    "allocated",
    "target",
    "current",
    "dominant_share",
    "reason",
    "observation_age",
    "state",
]


class ClusterLine(BaseModel):
    """One line of the cluster table: policy, latest decision, latest observation."""

    name: str
    group: str
    tier: int
    backend: str
    weight: float
    desired: int | None = Field(description="From the latest decision; null before any.")
    allocated: int | None
    target: int | None
    current: int | None
    dominant_share: float | None = Field(description="Weighted dominant share of the target.")
    reason: str | None
    decided_at: float | None
    decision_error: str | None = Field(description="Why applying the decision failed.")
    observation_age: float | None = Field(description="Seconds since the latest poll.")
    observation_error: str | None
    starved: bool = Field(description="Allocated below desired.")
    state: State = Field(description="stale > error > starved > ok; new before any decision.")


class Facets(BaseModel):
    """Values the filters can take among the clusters the caller may see."""

    groups: list[str]
    tiers: list[int]
    backends: list[str]
    states: dict[str, int] = Field(description="Visible clusters by state.")


class PoolSummary(BaseModel):
    """The pool, and how much of it the visible clusters hold."""

    capacity: dict[str, Number] | None = Field(description="Null until a pool is set.")
    allocated: dict[str, Number] = Field(description="Sum of allocated workers' resources.")
    running: dict[str, Number] | None = Field(
        description="Resources of the workers seen running (cpu: threads, memory: limits); "
        "null when no usage was observed."
    )
    used: dict[str, Number] | None = Field(description="Memory in use by the workers seen.")
    clusters: int
    starved: int
    errors: int = Field(description="Clusters whose last poll or last apply failed.")
    cycle_at: float | None = Field(description="Start of the loop's last cycle (unix seconds).")
    stages: dict[str, float] = Field(description="Seconds per stage of the last cycle.")


class ClusterPage(BaseModel):
    total: int = Field(description="Clusters visible to the caller.")
    matched: int = Field(description="Clusters that pass the filters.")
    offset: int
    limit: int
    clusters: list[ClusterLine]
    facets: Facets
    pool: PoolSummary = Field(description="The pool, as /dashboard/pool answers it.")


class Series(BaseModel):
    name: str = Field(description="A cluster, or 'other clusters' for the rest summed.")
    allocated: list[int | None]
    dominant_share: list[float | None]


class AllocationChart(BaseModel):
    """Allocations and dominant shares over time, sampled at ``times``."""

    since: float
    step: float
    times: list[float]
    series: list[Series] = Field(description="The largest clusters, then 'other clusters'.")


class Usage(BaseModel):
    name: str
    address: str
    nthreads: int
    memory_limit: int
    memory: int


class ObservationView(BaseModel):
    observed_at: float
    age: float
    desired: int | None
    current: int | None
    workers: dict[str, int]
    tasks: dict[str, int]
    error: str | None
    stale: bool
    usage: list[Usage] | None = Field(description="Workers' resources, from the last cycle.")


class ClusterDetail(BaseModel):
    cluster: ClusterPublic
    observation: ObservationView | None
    decisions: list[AllocationPublic] = Field(description="Newest first.")
