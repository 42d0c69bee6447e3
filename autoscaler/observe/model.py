"""What the observer hands to the loop: one `Observation` per cluster per cycle."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Worker states of the older label set (distributed before the new states were added).
OLD_WORKER_STATES = frozenset({"connected", "idle", "saturated"})


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerUsage:
    """Resources of one worker, as the scheduler last heard them (memory in bytes)."""

    name: str
    address: str
    nthreads: int
    memory_limit: int
    memory: int


@dataclass(slots=True, kw_only=True)
class Observation:
    """One cluster as seen by one poll of its scheduler; read-only by convention.

    Not ``frozen``: a frozen dataclass sets each field through ``object.__setattr__``, which
    made building one cost 1.6 us instead of 0.4 us, thousands of times per cycle.

    A failed poll has ``error`` set, ``desired`` None, empty ``workers`` and ``tasks``, and
    keeps the last known ``usage``. After ``stale_after`` failures in a row it is ``stale``:
    the planner holds the cluster's size (never scale down on missing data).
    """

    cluster: str
    observed_at: float  # time.time() of the poll
    desired: int | None  # clamped; None when the poll failed
    workers: Mapping[str, int]  # by state, as reported
    tasks: Mapping[str, int]  # by state
    usage: tuple[WorkerUsage, ...] | None  # last known usage (may be from an earlier poll)
    error: str | None  # None on success; a short readable message otherwise
    consecutive_failures: int  # 0 on success
    stale: bool  # consecutive_failures >= stale_after
    # --- extensions ---
    # Which endpoint answered: "metrics" (/metrics), "counts" (/json/counts.json), None if failed.
    source: str | None = None
    # False when the scheduler did not report desired workers (no gauge, old counts.json):
    # ``desired`` is then set to ``current`` so the planner holds the size.
    desired_reported: bool = True
    usage_observed_at: float | None = None  # when ``usage`` was polled
    usage_error: str | None = None  # why the latest usage poll failed (usage kept from before)

    @property
    def current(self) -> int:
        """Workers that count: all but "retiring" (new label set), or "connected" (old set)."""
        return current_workers(self.workers)


def current_workers(workers: Mapping[str, int]) -> int:
    if "connected" in workers:
        return workers["connected"]
    return sum(n for state, n in workers.items() if state != "retiring")
