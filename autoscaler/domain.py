"""Plain value objects shared by the store, the planner, the loop and the API."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_RESOURCES = ("cpu", "memory")


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """A registered Dask cluster and the policy that governs it."""

    name: str
    scheduler_url: str
    backend: str
    backend_options: dict[str, Any] = field(default_factory=dict)
    worker: dict[str, float]  # resources of ONE worker, keyed by pool resource name
    minimum: int = 0
    maximum: int | None = None
    weight: float = 1.0
    tier: int = 0
    group: str = "default"


@dataclass(frozen=True, slots=True, kw_only=True)
class Pool:
    """Capacity of the shared pool, by resource name (memory in bytes)."""

    capacity: dict[str, float]

    @property
    def resources(self) -> tuple[str, ...]:
        return tuple(self.capacity)


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What the loop decided for one cluster in one cycle, and why."""

    cluster: str
    desired: int  # what the scheduler asked for (clamped)
    allocated: int  # the DRF fair allocation
    target: int  # what was (or, in dry-run, would have been) applied after damping
    current: int  # workers observed at decision time
    dominant_share: float  # weighted dominant share of `target`
    reason: str
    decided_at: float  # unix seconds
    applied: bool = True  # False in dry-run, or when the backend call failed
    error: str | None = None  # why applying failed
