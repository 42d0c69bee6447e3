"""The demo's live table: one block per cycle, from ``GET /api/v1/allocations``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def render(
    elapsed: float,
    allocations: Sequence[dict[str, Any]],
    timeline: Sequence[tuple[str, float, float]],
) -> str:
    busy = {name: start <= elapsed < stop for name, start, stop in timeline}
    lines = [
        f"t={elapsed:5.0f}s   pool: 4 CPU, 4 GiB (workers of 1 CPU, 1 GiB)",
        f"  {'cluster':<8} {'work':<5} {'desired':>7} {'allocated':>9} {'current':>7}  reason",
    ]
    for row in sorted(allocations, key=lambda r: r["cluster"]):
        work = "busy" if busy.get(row["cluster"]) else "idle"
        lines.append(
            f"  {row['cluster']:<8} {work:<5} {row['desired']:>7} {row['allocated']:>9} "
            f"{row['current']:>7}  {row['reason']}"
        )
    if not allocations:
        lines.append("  (waiting for the first cycle)")
    return "\n".join(lines) + "\n"
