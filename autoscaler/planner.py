"""From demand to targets: the DRF allocation, then damping, the pool guard and a reason each.

Pure: plain data in, decisions out, no clock and no I/O. The service's loop and the offline
simulator call the same ``plan``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

import drf
from autoscaler.domain import ClusterSpec, Decision, Pool

SATISFIED = "satisfied"
MINIMUM = "minimum"
CAPPED_BY_MAXIMUM = "capped_by_maximum"
FAIR_SHARE_LIMITED_BY = "fair_share_limited_by_"  # + resource name
HELD_STALE = "held_stale"
SCALE_DOWN_DELAYED = "scale_down_delayed"
PREEMPTED = "preempted"
WAITING_FOR_CAPACITY = "waiting_for_capacity"
UNSCHEDULABLE = "unschedulable"


@dataclass(frozen=True, slots=True, kw_only=True)
class Demand:
    """What one cluster wants and holds right now."""

    spec: ClusterSpec
    desired: int | None  # from the scheduler; None when unknown
    current: int  # workers the platform runs for it (they hold pool resources)
    stale: bool = False  # no fresh observation: hold the size, never scale down
    unschedulable: bool = False  # the platform could not place the workers last asked for


@dataclass(frozen=True, slots=True, kw_only=True)
class Damping:
    scale_down_delay: float = 60.0  # seconds a lower target must hold before acting on it
    scale_down_max_fraction: float = 0.5  # of current workers, per cycle
    preemption_grace: float = 15.0  # the delay when another cluster waits for the capacity


@dataclass(frozen=True, slots=True)
class Plan:
    decisions: list[Decision]
    lower_since: dict[str, float] = field(default_factory=dict)  # damping memory, per cluster


def plan(
    pool: Pool,
    demands: Sequence[Demand],
    *,
    now: float,
    damping: Damping = Damping(),
    lower_since: Mapping[str, float] | None = None,
) -> Plan:
    """Decide a target per cluster. ``lower_since`` is the previous plan's damping memory."""
    if not demands:
        return Plan([], {})
    memory = dict(lower_since or {})
    resources = pool.resources
    capacity = np.array([pool.capacity[r] for r in resources], dtype=np.float64)
    worker = np.array(
        [[d.spec.worker.get(r, 0.0) for r in resources] for d in demands], dtype=np.float64
    )
    current = np.array([d.current for d in demands], dtype=np.int64)
    stale = np.array([d.stale or d.desired is None for d in demands])
    unplaceable = np.array([d.unschedulable for d in demands])
    desired = np.array([0 if d.desired is None else d.desired for d in demands], dtype=np.int64)
    minimum = np.array([d.spec.minimum for d in demands], dtype=np.int64)
    maximum = np.array(
        [drf.NO_CAP if d.spec.maximum is None else d.spec.maximum for d in demands],
        dtype=np.int64,
    )
    weight = np.array([d.spec.weight for d in demands], dtype=np.float64)
    tier = np.array([d.spec.tier for d in demands], dtype=np.int64)

    # A stale cluster asks for exactly what it has: the solver counts the workers it holds.
    asked = np.where(stale, np.clip(current, minimum, maximum), desired)
    allocated = drf.allocate(capacity, worker, asked, minimum, maximum, weight, tier)

    lowering = ~stale & (allocated < current)
    names = [d.spec.name for d in demands]
    held_for = np.zeros(len(demands))
    for i in np.flatnonzero(lowering):
        held_for[i] = now - memory.setdefault(names[i], now)
    for i in np.flatnonzero(~lowering):
        memory.pop(names[i], None)

    def propose(due: np.ndarray) -> np.ndarray:
        """Grow at once; shrink clusters whose delay is over, by at most the max fraction."""
        step = np.maximum(1, np.ceil(current * damping.scale_down_max_fraction)).astype(np.int64)
        shrunk = np.where(due, np.maximum(allocated, current - step), current)
        # Asking a platform for workers it cannot place only piles up pending ones.
        grown = np.where(unplaceable, np.minimum(allocated, current), allocated)
        return np.where(lowering, shrunk, np.where(stale, current, grown))

    def guard(target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _guard_pool(capacity, worker, current, target, tier, allocated, weight)

    down_due = lowering & (held_for >= damping.scale_down_delay)
    target, waiting = guard(propose(down_due))
    preempted = np.zeros(len(demands), dtype=bool)
    if waiting.any():
        # Someone below its fair share waits for capacity that a delayed scale-down holds.
        preempted = lowering & ~down_due & (held_for >= damping.preemption_grace)
        if preempted.any():
            target, waiting = guard(propose(down_due | preempted))

    dominant = drf.metrics.dominant_shares(capacity, worker, target, weight)
    used = allocated @ worker
    decisions = []
    for i, d in enumerate(demands):
        if stale[i]:
            reason = HELD_STALE
        elif unplaceable[i] and allocated[i] > current[i]:
            reason = UNSCHEDULABLE
        elif waiting[i]:
            reason = WAITING_FOR_CAPACITY
        elif preempted[i]:
            reason = PREEMPTED
        elif lowering[i] and not down_due[i]:
            reason = SCALE_DOWN_DELAYED
        else:
            reason = _allocation_reason(
                d.spec, int(desired[i]), int(allocated[i]), worker[i], used, capacity, resources
            )
        decisions.append(
            Decision(
                cluster=d.spec.name,
                desired=int(desired[i]),
                allocated=int(allocated[i]),
                target=int(target[i]),
                current=int(current[i]),
                dominant_share=float(dominant[i]),
                reason=reason,
                decided_at=now,
            )
        )
    return Plan(decisions, memory)


def _guard_pool(
    capacity: np.ndarray,
    worker: np.ndarray,
    current: np.ndarray,
    target: np.ndarray,
    tier: np.ndarray,
    allocated: np.ndarray,
    weight: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the applied targets within the pool.

    Scale-downs go first: what every cluster keeps (``min(target, current)``) holds the pool.
    Scale-ups are then granted, tier first and lowest dominant share first, only up to the
    capacity actually free. Returns the guarded targets and who waits for capacity.
    """
    kept = np.minimum(target, current)
    free = capacity - kept @ worker
    growth = target - kept
    guarded = kept.copy()
    waiting = np.zeros(target.shape, dtype=bool)
    dominant = drf.metrics.dominant_shares(capacity, worker, kept, weight)
    for i in np.lexsort((dominant, tier)):
        if growth[i] == 0:
            continue
        needed = worker[i] > 0
        room = np.floor(free[needed] / worker[i][needed]).min() if needed.any() else growth[i]
        grant = int(min(growth[i], max(room, 0)))
        guarded[i] += grant
        free -= grant * worker[i]
        waiting[i] = grant < growth[i] and guarded[i] < allocated[i]
    return guarded, waiting


def _allocation_reason(
    spec: ClusterSpec,
    desired: int,
    allocated: int,
    worker: np.ndarray,
    used: np.ndarray,
    capacity: np.ndarray,
    resources: Sequence[str],
) -> str:
    if spec.maximum is not None and desired > spec.maximum and allocated == spec.maximum:
        return CAPPED_BY_MAXIMUM
    if allocated >= max(desired, spec.minimum):
        return MINIMUM if desired < spec.minimum else SATISFIED
    # Short of its fair cap: name the resource its next worker does not fit in.
    with np.errstate(divide="ignore", invalid="ignore"):
        overrun = np.where(worker > 0, (used + worker - capacity) / capacity, -math.inf)
    return FAIR_SHARE_LIMITED_BY + resources[int(np.argmax(overrun))]
