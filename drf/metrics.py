"""Fairness and efficiency measures of an allocation."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from drf.problem import dominant_shares as per_worker_dominant_shares


def dominant_shares(
    capacity: ArrayLike, worker: ArrayLike, alloc: ArrayLike, weight: ArrayLike | None = None
) -> NDArray[np.float64]:
    """Weighted dominant share of each cluster: ``alloc * dom / weight`` (0 for no workers)."""
    cap = np.asarray(capacity, dtype=np.float64)
    work = np.asarray(worker, dtype=np.float64)
    counts = np.asarray(alloc, dtype=np.float64)
    weights = np.ones_like(counts) if weight is None else np.asarray(weight, dtype=np.float64)
    dom = per_worker_dominant_shares(cap, work)
    with np.errstate(invalid="ignore"):
        shares = counts * dom / weights
    return np.where(counts > 0, shares, 0.0)


def jain_index(values: ArrayLike) -> float:
    """Jain's fairness index: 1 when all values are equal, 1/n when one holds everything.

    An empty input or all zeros count as perfectly fair (1.0).
    """
    x = np.asarray(values, dtype=np.float64)
    total = float(np.sum(x * x))
    if x.size == 0 or total == 0.0:
        return 1.0
    return float(np.sum(x) ** 2 / (x.size * total))


def utilization(capacity: ArrayLike, worker: ArrayLike, alloc: ArrayLike) -> NDArray[np.float64]:
    """Fraction of each resource allocated (0 for a resource of zero capacity)."""
    cap = np.asarray(capacity, dtype=np.float64)
    used = np.asarray(alloc, dtype=np.float64) @ np.asarray(worker, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(cap > 0, used / cap, 0.0)
