"""The textbook DRF progressive filling with a heap: slow, plain and obviously right.

It is the oracle that ``drf.allocate`` must match element for element.
"""

from __future__ import annotations

import heapq
import math

import numpy as np
from numpy.typing import ArrayLike

from drf.problem import Ints, Problem, prepare


def allocate(
    capacity: ArrayLike,
    worker: ArrayLike,
    desired: ArrayLike,
    minimum: ArrayLike | None = None,
    maximum: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    tier: ArrayLike | None = None,
) -> Ints:
    problem = prepare(capacity, worker, desired, minimum, maximum, weight, tier)
    alloc = np.zeros(problem.size, dtype=np.int64)
    used = np.zeros_like(problem.capacity)
    for caps in (problem.guarantee_caps(), problem.fair_caps()):
        for tier_value in problem.tiers():
            members = [i for i in range(problem.size) if problem.tier[i] == tier_value]
            _fill(problem, members, caps, alloc, used)
    return alloc


def _fill(problem: Problem, members: list[int], caps: Ints, alloc: Ints, used: np.ndarray) -> None:
    dom, weight = problem.dominant, problem.weight
    worker, capacity = problem.worker, problem.capacity
    heap = [
        (float(alloc[i] * dom[i] / weight[i]), i)
        for i in members
        if alloc[i] < caps[i] and math.isfinite(dom[i])
    ]
    heapq.heapify(heap)
    while heap:
        _, i = heapq.heappop(heap)
        if np.all(used + worker[i] <= capacity):
            used += worker[i]
            alloc[i] += 1
            if alloc[i] < caps[i]:
                heapq.heappush(heap, (float(alloc[i] * dom[i] / weight[i]), i))
        # else: blocked for the rest of this fill
