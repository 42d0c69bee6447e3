"""Who gets how many workers each step: our planner and four baselines.

Every policy maps (desired workers, current workers) per cluster to a target per cluster.
``drf`` is the service's own ``autoscaler.planner.plan`` (DRF with tiers, damping, pool guard,
preemption). The baselines scale down at once (no damping):

- ``static``: an equal, fixed slice of the pool per cluster, never exceeded;
- ``greedy``: first come, first served: requests are granted in the order they were made, as
  far as the free pool allows, and nothing is ever taken back;
- ``proportional``: every cluster gets its demand scaled by one factor so the total fits;
- ``unshared``: each cluster's own adaptive scaling with no shared pool (it overcommits).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass

import numpy as np

import drf
from autoscaler.domain import ClusterSpec, Pool
from autoscaler.planner import Demand, plan
from simulations.scenario import Scenario

Floats = np.typing.NDArray[np.float64]
Ints = np.typing.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Fleet:
    """The clusters of a scenario as arrays, plus the specs the planner takes."""

    names: list[str]
    groups: list[str]
    specs: list[ClusterSpec]
    pool: Pool
    capacity: Floats  # (R,)
    worker: Floats  # (N, R)
    threads: Floats  # (N,) tasks a worker runs at once (its CPUs, at least 1)
    minimum: Ints
    maximum: Ints  # drf.NO_CAP when unbounded
    weight: Floats
    tier: Ints

    @classmethod
    def from_scenario(cls, scenario: Scenario) -> Fleet:
        resources = tuple(scenario.pool)
        clusters = scenario.clusters
        specs = [
            ClusterSpec(
                name=c.name,
                scheduler_url=f"sim://{c.name}",
                backend="simulated",
                worker=dict(c.worker),
                minimum=c.minimum,
                maximum=c.maximum,
                weight=c.weight,
                tier=c.tier,
                group=c.group,
            )
            for c in clusters
        ]
        worker = np.array([[c.worker[r] for r in resources] for c in clusters], dtype=np.float64)
        cpu = np.array([c.worker.get("cpu", 1.0) for c in clusters], dtype=np.float64)
        return cls(
            names=[c.name for c in clusters],
            groups=[c.group for c in clusters],
            specs=specs,
            pool=Pool(capacity=dict(scenario.pool)),
            capacity=np.array([scenario.pool[r] for r in resources], dtype=np.float64),
            worker=worker,
            threads=np.maximum(cpu, 1.0),
            minimum=np.array([c.minimum for c in clusters], dtype=np.int64),
            maximum=np.array(
                [drf.NO_CAP if c.maximum is None else c.maximum for c in clusters], dtype=np.int64
            ),
            weight=np.array([c.weight for c in clusters], dtype=np.float64),
            tier=np.array([c.tier for c in clusters], dtype=np.int64),
        )

    @property
    def size(self) -> int:
        return len(self.names)

    def wanted(self, desired: Ints) -> Ints:
        return np.clip(desired, self.minimum, self.maximum)

    def fitting(self, free: Floats) -> Ints:
        """Workers of each cluster that fit in ``free`` resources."""
        with np.errstate(divide="ignore", invalid="ignore"):
            room = np.where(self.worker > 0, np.floor(free / self.worker), np.inf)
        return np.minimum(room.min(axis=1), drf.NO_CAP).astype(np.int64)


class Policy(ABC):
    name: str

    def __init__(self, fleet: Fleet, scenario: Scenario) -> None:
        self.fleet = fleet
        self.scenario = scenario
        self.reasons: Counter[str] = Counter()

    @abstractmethod
    def decide(self, now: float, desired: Ints, current: Ints) -> Ints:
        """Target workers per cluster; ``current`` counts running and starting workers."""


class PlannerPolicy(Policy):
    """The service's planner. Idle clusters (nothing wanted, held or guaranteed) are left out
    of the call: the planner would give them 0 and they change no one else's share."""

    name = "drf"

    def __init__(self, fleet: Fleet, scenario: Scenario) -> None:
        super().__init__(fleet, scenario)
        self.lower_since: dict[str, float] = {}

    def decide(self, now: float, desired: Ints, current: Ints) -> Ints:
        fleet = self.fleet
        involved = np.flatnonzero((desired > 0) | (current > 0) | (fleet.minimum > 0))
        target = np.zeros(fleet.size, dtype=np.int64)
        if not involved.size:
            self.lower_since = {}
            return target
        demands = [
            Demand(spec=fleet.specs[i], desired=int(desired[i]), current=int(current[i]))
            for i in involved.tolist()
        ]
        result = plan(
            fleet.pool,
            demands,
            now=now,
            damping=self.scenario.damping,
            lower_since=self.lower_since,
        )
        self.lower_since = result.lower_since
        target[involved] = [d.target for d in result.decisions]
        self.reasons.update(d.reason for d in result.decisions)
        return target


class StaticPolicy(Policy):
    """An equal slice of the pool per cluster: at most the workers that fit in 1/N of it."""

    name = "static"

    def __init__(self, fleet: Fleet, scenario: Scenario) -> None:
        super().__init__(fleet, scenario)
        self.partition = np.minimum(fleet.fitting(fleet.capacity / fleet.size), fleet.maximum)

    def decide(self, now: float, desired: Ints, current: Ints) -> Ints:
        return np.minimum(self.fleet.wanted(desired), self.partition)


class GreedyPolicy(Policy):
    """First come, first served; a request waits in line until the pool has room for it."""

    name = "greedy"

    def __init__(self, fleet: Fleet, scenario: Scenario) -> None:
        super().__init__(fleet, scenario)
        self.asked_at = np.full(fleet.size, np.inf)

    def decide(self, now: float, desired: Ints, current: Ints) -> Ints:
        fleet = self.fleet
        wanted = fleet.wanted(desired)
        target = np.minimum(wanted, current)
        growing = wanted > current
        self.asked_at = np.where(growing, np.minimum(self.asked_at, now), np.inf)
        free = fleet.capacity - target @ fleet.worker
        line = np.flatnonzero(growing)
        for i in line[np.lexsort((line, self.asked_at[line]))].tolist():
            needs = fleet.worker[i] > 0
            room = np.floor(free[needs] / fleet.worker[i][needs]).min(initial=drf.NO_CAP)
            grant = int(min(wanted[i] - target[i], max(room, 0)))
            if grant > 0:
                target[i] += grant
                free -= grant * fleet.worker[i]
        return target


class ProportionalPolicy(Policy):
    """Each cluster's demand times one factor, the largest that fits the pool (at most 1)."""

    name = "proportional"

    def decide(self, now: float, desired: Ints, current: Ints) -> Ints:
        fleet = self.fleet
        wanted = fleet.wanted(desired)
        total = wanted @ fleet.worker
        with np.errstate(divide="ignore", invalid="ignore"):
            factor = np.where(total > 0, fleet.capacity / total, np.inf).min(initial=np.inf)
        return np.floor(wanted * min(1.0, factor)).astype(np.int64)


class UnsharedPolicy(Policy):
    """Every cluster scales to its own demand, as if it had a pool to itself."""

    name = "unshared"

    def decide(self, now: float, desired: Ints, current: Ints) -> Ints:
        return self.fleet.wanted(desired)


POLICY_CLASSES: dict[str, type[Policy]] = {
    cls.name: cls
    for cls in (PlannerPolicy, StaticPolicy, GreedyPolicy, ProportionalPolicy, UnsharedPolicy)
}


def make_policy(name: str, fleet: Fleet, scenario: Scenario) -> Policy:
    return POLICY_CLASSES[name](fleet, scenario)
