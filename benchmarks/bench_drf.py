"""Fast DRF solver against the reference heap, side by side in one run.

Production-like shapes: workers of 1-2 CPU and 1-64 GiB, desired 0-225 workers, the pool at
60% of the total demand. Run: ``.venv/bin/python -m benchmarks.bench_drf``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import drf
from drf import reference

GIB = 2**30


def production_like(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    worker = np.column_stack([rng.integers(1, 3, n), rng.integers(1, 65, n) * GIB]).astype(float)
    desired = rng.integers(0, 226, n)
    capacity = np.floor(0.6 * (desired @ worker))
    return dict(capacity=capacity, worker=worker, desired=desired)


def median_seconds(solve: Callable[[], np.ndarray], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        solve()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[500, 2_000, 10_000])
    parser.add_argument("--repeat", type=int, default=51, help="runs of the fast solver")
    parser.add_argument("--reference-repeat", type=int, default=3)
    args = parser.parse_args()
    print(f"{'clusters':>9} {'fast ms':>9} {'reference ms':>13} {'ratio':>8}  agree")
    for n in args.sizes:
        problem = production_like(n)
        fast = median_seconds(lambda p=problem: drf.allocate(**p), args.repeat)
        slow = median_seconds(lambda p=problem: reference.allocate(**p), args.reference_repeat)
        agree = np.array_equal(drf.allocate(**problem), reference.allocate(**problem))
        print(f"{n:>9} {fast * 1e3:>9.3f} {slow * 1e3:>13.1f} {slow / fast:>8.0f}  {agree}")
        if not agree:
            raise SystemExit("fast and reference disagree")


if __name__ == "__main__":
    main()
