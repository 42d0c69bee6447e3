"""Validated solver inputs, shared by the fast solver and the reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

NO_CAP = np.iinfo(np.int64).max // 4  # "no maximum"; far above any real worker count

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Problem:
    capacity: Floats  # (R,)
    worker: Floats  # (N, R) resources of one worker of each cluster
    desired: Ints  # (N,)
    minimum: Ints  # (N,)
    maximum: Ints  # (N,), NO_CAP where uncapped
    weight: Floats  # (N,)
    tier: Ints  # (N,)
    dominant: Floats  # (N,) dominant share of ONE worker; inf when a needed resource is absent

    @property
    def size(self) -> int:
        return int(self.desired.shape[0])

    def guarantee_caps(self) -> Ints:
        """Phase A caps: the guaranteed minimum, never above the maximum."""
        return np.minimum(self.minimum, self.maximum)

    def fair_caps(self) -> Ints:
        """Phase B caps: what the cluster wants, within its minimum and maximum."""
        return np.minimum(np.maximum(self.desired, self.minimum), self.maximum)

    def tiers(self) -> list[int]:
        return [int(t) for t in np.unique(self.tier)]


def _floats(name: str, value: ArrayLike, ndim: int) -> Floats:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimension(s), got shape {array.shape}")
    if np.isnan(array).any():
        raise ValueError(f"{name} contains NaN")
    if (array < 0).any():
        raise ValueError(f"{name} must be >= 0")
    return array


def _counts(name: str, value: ArrayLike | None, n: int, default: int) -> Ints:
    if value is None:
        return np.full(n, default, dtype=np.int64)
    raw = np.asarray(value)
    if raw.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {raw.shape}")
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all() or (raw != np.round(raw)).any():
            raise ValueError(f"{name} must hold whole, finite worker counts")
    elif raw.dtype.kind not in "iub":
        raise ValueError(f"{name} must be numeric, got dtype {raw.dtype}")
    counts = raw.astype(np.int64)
    if (counts < 0).any():
        raise ValueError(f"{name} must be >= 0")
    return counts


def dominant_shares(capacity: Floats, worker: Floats) -> Floats:
    """Per-worker dominant share; resources a worker does not use are ignored.

    A worker that needs a resource of zero capacity gets ``inf``: it can never be placed.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        shares = np.where(worker > 0, worker / capacity, 0.0)
    return shares.max(axis=1, initial=0.0)


def prepare(
    capacity: ArrayLike,
    worker: ArrayLike,
    desired: ArrayLike,
    minimum: ArrayLike | None = None,
    maximum: ArrayLike | None = None,
    weight: ArrayLike | None = None,
    tier: ArrayLike | None = None,
) -> Problem:
    """Check shapes and values and return the arrays the solvers work on."""
    cap = _floats("capacity", capacity, 1)
    if not np.isfinite(cap).all():
        raise ValueError("capacity must be finite")
    work = _floats("worker", worker, 2)
    if work.shape[1] != cap.shape[0]:
        raise ValueError(
            f"worker must have shape (N, {cap.shape[0]}) to match capacity, got {work.shape}"
        )
    if not np.isfinite(work).all():
        raise ValueError("worker must be finite")
    n = work.shape[0]
    want = _counts("desired", desired, n, 0)
    low = _counts("minimum", minimum, n, 0)
    high = _counts("maximum", maximum, n, NO_CAP)
    high = np.minimum(high, NO_CAP)
    if (low > high).any():
        first = int(np.argmax(low > high))
        raise ValueError(f"minimum above maximum for cluster {first}")
    if weight is None:
        weights = np.ones(n, dtype=np.float64)
    else:
        weights = np.asarray(weight, dtype=np.float64)
        if weights.shape != (n,):
            raise ValueError(f"weight must have shape ({n},), got {weights.shape}")
        if not (np.isfinite(weights).all() and (weights > 0).all()):
            raise ValueError("weight must be finite and > 0")
    if tier is None:
        tiers = np.zeros(n, dtype=np.int64)
    else:
        raw_tier = np.asarray(tier)
        if raw_tier.shape != (n,) or raw_tier.dtype.kind not in "iu":
            raise ValueError(f"tier must be integers of shape ({n},)")
        tiers = raw_tier.astype(np.int64)
    return Problem(cap, work, want, low, high, weights, tiers, dominant_shares(cap, work))
