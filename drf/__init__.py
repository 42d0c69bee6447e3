"""Dominant Resource Fairness for worker pools: a fast solver, its reference, and metrics.

No I/O, clocks or configuration here: arrays in, arrays out.
"""

from drf import metrics, reference
from drf.fast import allocate
from drf.problem import NO_CAP, dominant_shares

__all__ = ["NO_CAP", "allocate", "dominant_shares", "metrics", "reference"]
