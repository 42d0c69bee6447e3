"""Fast DRF: the same answer as ``drf.reference``, computed with array operations.

The heap in the reference pops (key, index) pairs in increasing order, and a cluster's key
``k * dom / weight`` only grows, so a fill grants the events (cluster i, its k-th worker) in the
order of the sorted keys, until an event does not fit. That cluster is blocked, the others go
on. Instead of popping events one by one, each round:

1. blocks every cluster whose next worker no longer fits (free capacity only shrinks, so it
   never will: the heap would block it when its turn came, with no effect on anyone else);
2. grants everything at once if all remaining events fit;
3. else bisects on the key level with approximate worker counts until few events lie in the
   bracket, then enumerates those events with their exact float keys, sorts them as the heap
   would, and grants the longest prefix that fits. The first event that does not fit blocks its
   cluster in the next round.

Rounds are bounded by the number of distinct worker sizes that get blocked, not by workers.
Exact equality with the reference holds when sums of resources are exact in float64 (integer
sizes below 2**53, such as bytes and CPU counts).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from drf.problem import Floats, Ints, Problem, prepare

WINDOW_EVENTS = 2048  # stop narrowing once this few events remain between the brackets
MAX_BISECTIONS = 200
SAFETY = 1e-12  # relative margin between approximate and exact key counts


def allocate(
    capacity: ArrayLike,
    worker: ArrayLike,
    desired: ArrayLike,
    minimum: ArrayLike | None = None,
    maximum: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    tier: ArrayLike | None = None,
) -> Ints:
    """Workers per cluster under weighted, tiered Dominant Resource Fairness.

    ``capacity`` (R,) is the pool, ``worker`` (N, R) the resources of one worker of each
    cluster; ``desired``, ``minimum``, ``maximum`` (N,) are worker counts (defaults 0, 0, no
    cap), ``weight`` (N,) > 0 (default 1), ``tier`` (N,) ints, 0 served first (default 0).
    Guarantees (up to ``min(minimum, maximum)``) are filled tier by tier, then fair shares (up to
    ``clip(desired, minimum, maximum)``) tier by tier.
    """
    problem = prepare(capacity, worker, desired, minimum, maximum, weight, tier)
    alloc = np.zeros(problem.size, dtype=np.int64)
    used = np.zeros_like(problem.capacity)
    placeable = np.isfinite(problem.dominant)
    tiers = problem.tiers()
    for caps in (problem.guarantee_caps(), problem.fair_caps()):
        for tier_value in tiers:
            wanted = placeable & (alloc < caps)
            if len(tiers) > 1:
                wanted &= problem.tier == tier_value
            members = np.flatnonzero(wanted)
            if members.size:
                used = _fill(problem, members, caps[members], alloc, used)
    return alloc


def _fill(problem: Problem, members: Ints, caps: Ints, alloc: Ints, used: Floats) -> Floats:
    """Progressive filling of ``members`` up to ``caps``; updates ``alloc``, returns ``used``."""
    capacity = problem.capacity
    free_riders = problem.dominant[members] == 0  # need no resource: always fit
    alloc[members[free_riders]] = caps[free_riders]
    members, caps = members[~free_riders], caps[~free_riders]

    index = members
    start = alloc[members].astype(np.float64)
    stop = caps.astype(np.float64)
    worker = problem.worker[members]
    dom = problem.dominant[members]
    weight = problem.weight[members]
    while index.size:
        fits = np.all(used + worker <= capacity, axis=1)
        if not fits.all():
            alloc[index] = start
            index, start, stop, worker, dom, weight = (
                a[fits] for a in (index, start, stop, worker, dom, weight)
            )
            if not index.size:
                break
        total = used + (stop - start) @ worker
        if np.all(total <= capacity):
            alloc[index] = stop
            return total
        start, used = _grant_prefix(capacity, used, index, start, stop, worker, dom, weight)
    alloc[index] = start
    return used


def _grant_prefix(
    capacity: Floats,
    used: Floats,
    index: Ints,
    start: Floats,
    stop: Floats,
    worker: Floats,
    dom: Floats,
    weight: Floats,
) -> tuple[Floats, Floats]:
    """Grant the longest run of events, in heap order, that fits; return new counts and usage."""
    per_level = weight / dom  # events per unit of key level
    spare = capacity - used

    def excess(level: float) -> tuple[float, Floats]:
        """Largest relative overrun of the pool if every event below ``level`` were granted."""
        counts = np.minimum(np.maximum(np.ceil(level * per_level), start), stop)
        over = ((counts - start) @ worker - spare) / np.maximum(capacity, 1e-300)
        return float(over.max()), counts

    # Regula falsi (Illinois) on the level, bracketing the first misfit: fast on the nearly
    # linear usage curve, and never worse than bisection on its steps.
    low, high = 0.0, float(np.max(stop / per_level)) * (1 + 1e-9) + 1e-300
    low_excess, low_counts = excess(low)
    high_excess, high_counts = excess(high)
    side = 0
    for _ in range(MAX_BISECTIONS):
        if (high_counts - low_counts).sum() <= WINDOW_EVENTS:
            break
        middle = (low * high_excess - high * low_excess) / (high_excess - low_excess)
        if not low < middle < high:
            middle = 0.5 * (low + high)
            if not low < middle < high:
                break
        middle_excess, counts = excess(middle)
        if middle_excess <= 0:
            low, low_excess, low_counts = middle, middle_excess, counts
            high_excess = high_excess / 2 if side == -1 else high_excess
            side = -1
        else:
            high, high_excess, high_counts = middle, middle_excess, counts
            low_excess = low_excess / 2 if side == 1 else low_excess
            side = 1

    # Exact counts just outside the bracket: the first misfit lies between them.
    first = _exact_counts(low * (1 - SAFETY), start, stop, dom, weight)
    last = _exact_counts(high * (1 + SAFETY), start, stop, dom, weight)
    span = (last - first).astype(np.int64)
    owner = np.repeat(np.arange(index.size), span)
    offsets = np.cumsum(span) - span
    k = first[owner] + (np.arange(owner.size) - offsets[owner])
    keys = k * dom[owner] / weight[owner]
    order = np.lexsort((k, index[owner], keys))
    owner = owner[order]
    base = used + (first - start) @ worker
    running = base + np.cumsum(worker[owner], axis=0)
    granted = int(np.argmin(np.all(running <= capacity, axis=1)))  # first misfit
    counts = first + np.bincount(owner[:granted], minlength=index.size)
    return counts, (running[granted - 1] if granted else base)


def _exact_counts(level: float, start: Floats, stop: Floats, dom: Floats, weight: Floats) -> Floats:
    """For each cluster, the first count k in [start, stop] whose key ``k*dom/weight`` >= level."""
    counts = np.clip(np.ceil(level * weight / dom), start, stop)
    while True:
        lower = (counts > start) & ((counts - 1) * dom / weight >= level)
        higher = (counts < stop) & (counts * dom / weight < level)
        if not (lower.any() or higher.any()):
            return counts
        counts = counts - lower + higher
