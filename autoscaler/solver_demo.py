"""Until the control loop lands, the demo splits an example pool with the solver."""

from __future__ import annotations

import drf

GIB = 2**30


def run() -> int:
    capacity = [64, 512 * GIB]
    names = ["etl (2 CPU, 16 GiB)", "ml (4 CPU, 8 GiB)", "reports (1 CPU, 32 GiB)"]
    worker = [[2, 16 * GIB], [4, 8 * GIB], [1, 32 * GIB]]
    desired = [20, 20, 20]
    alloc = drf.allocate(capacity, worker, desired)
    shares = drf.metrics.dominant_shares(capacity, worker, alloc)
    print("pool: 64 CPU, 512 GiB; every cluster wants 20 workers")
    for name, n, share in zip(names, alloc, shares, strict=True):
        print(f"  {name:<26} {n:>3} workers   dominant share {share:.3f}")
    print(f"Jain's index of dominant shares: {drf.metrics.jain_index(shares):.3f}")
    return 0
