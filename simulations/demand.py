"""Work arriving over time: jobs of equal tasks, from generators, pipelines and CSV traces.

A job is ``tasks`` tasks of ``duration`` seconds each, on one cluster. Jobs of a pipeline run one
after another on separate clusters: a step arrives when the step before it finishes, so its
arrival time is only known while simulating (``arrival`` is NaN, ``successor`` links the steps).

Generators, one mapping each in a cluster's ``demand`` list (times are durations, "10m"):
- ``{kind: steady, jobs_per_hour, tasks, duration, start?, end?}``: Poisson arrivals.
- ``{kind: bursty, bursts_per_hour, jobs?, tasks, duration, spread?, start?, end?}``: bursts of
  ``jobs`` jobs at Poisson times; task counts log-normal around ``tasks`` (sigma ``spread``).
- ``{kind: ramp, start, end, from_rate, to_rate, tasks, duration}``: the job rate (per hour)
  grows linearly from ``from_rate`` to ``to_rate`` between ``start`` and ``end``.
- ``{kind: batch, at, tasks, duration}``: one job (a very large one is "unlimited demand").
"""

from __future__ import annotations

import csv
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from simulations.scenario import Scenario, ScenarioError, seconds

Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
Jobs = list[tuple[float, float, float]]  # (arrival, tasks, duration)


@dataclass(frozen=True, slots=True)
class Workload:
    arrival: Floats  # (J,) seconds; NaN for a pipeline step that waits for the one before
    cluster: Ints  # (J,) cluster index
    tasks: Floats  # (J,)
    duration: Floats  # (J,) seconds per task
    successor: Ints  # (J,) job released when this one finishes, -1 for none
    pipeline: Ints  # (J,) pipeline run of the job, -1 for none

    @property
    def size(self) -> int:
        return int(self.arrival.shape[0])


def _rng(seed: int, *keys: str | int) -> np.random.Generator:
    words = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng([seed, *words])


def _positive(spec: dict[str, Any], key: str, where: str, default: float | None = None) -> float:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ScenarioError(f"{where}.{key}: expected a number > 0, got {value!r}")
    return float(value)


def _window(spec: dict[str, Any], where: str, horizon: float) -> tuple[float, float]:
    start = seconds(spec.get("start", 0), f"{where}.start")
    end = min(seconds(spec.get("end", horizon), f"{where}.end"), horizon)
    return start, end


def _poisson_times(rng: np.random.Generator, rate: float, start: float, end: float) -> Floats:
    count = rng.poisson(rate * max(end - start, 0.0))
    return np.sort(rng.uniform(start, end, count))


def _steady(spec: dict[str, Any], where: str, rng: np.random.Generator, horizon: float) -> Jobs:
    start, end = _window(spec, where, horizon)
    rate = _positive(spec, "jobs_per_hour", where) / 3600
    tasks, duration = _positive(spec, "tasks", where), _positive(spec, "duration", where)
    return [(t, tasks, duration) for t in _poisson_times(rng, rate, start, end)]


def _bursty(spec: dict[str, Any], where: str, rng: np.random.Generator, horizon: float) -> Jobs:
    start, end = _window(spec, where, horizon)
    rate = _positive(spec, "bursts_per_hour", where) / 3600
    jobs = int(_positive(spec, "jobs", where, 1))
    tasks, duration = _positive(spec, "tasks", where), _positive(spec, "duration", where)
    sigma = float(spec.get("spread", 1.0))
    result: Jobs = []
    for t in _poisson_times(rng, rate, start, end):
        sizes = rng.lognormal(np.log(tasks) - sigma**2 / 2, sigma, jobs)
        result += [(t, max(1.0, round(s)), duration) for s in sizes]
    return result


def _ramp(spec: dict[str, Any], where: str, rng: np.random.Generator, horizon: float) -> Jobs:
    start, end = _window(spec, where, horizon)
    low = float(spec.get("from_rate", 0)) / 3600
    high = float(spec.get("to_rate", 0)) / 3600
    tasks, duration = _positive(spec, "tasks", where), _positive(spec, "duration", where)
    peak = max(low, high)
    if peak <= 0 or end <= start:
        return []
    times = _poisson_times(rng, peak, start, end)  # thinning of a homogeneous process
    rate = low + (high - low) * (times - start) / (end - start)
    kept = times[rng.uniform(0, peak, times.size) < rate]
    return [(t, tasks, duration) for t in kept]


def _batch(spec: dict[str, Any], where: str, rng: np.random.Generator, horizon: float) -> Jobs:
    at = seconds(spec.get("at", 0), f"{where}.at")
    return [(at, _positive(spec, "tasks", where), _positive(spec, "duration", where))]


GENERATORS: dict[str, Callable[[dict[str, Any], str, np.random.Generator, float], Jobs]] = {
    "steady": _steady,
    "bursty": _bursty,
    "ramp": _ramp,
    "batch": _batch,
}


def build_workload(scenario: Scenario) -> Workload:
    """All jobs of the scenario, deterministic for its seed."""
    index = {c.name: i for i, c in enumerate(scenario.clusters)}
    horizon = scenario.duration
    rows: list[tuple[float, int, float, float, int, int]] = []  # arrival, cluster, ..., pipeline
    for c in scenario.clusters:
        for g, spec in enumerate(c.demand):
            where = f"clusters.{c.name}.demand.{g}"
            kind = spec.get("kind")
            if kind not in GENERATORS:
                raise ScenarioError(f"{where}.kind: expected one of {sorted(GENERATORS)}")
            jobs = GENERATORS[kind](spec, where, _rng(scenario.seed, c.name, g), horizon)
            rows += [(t, index[c.name], n, d, -1, -1) for t, n, d in jobs if t < horizon]
    if scenario.trace is not None:
        rows += [
            (t, index_of(index, name, "trace"), n, d, -1, -1) for t, name, n, d in _trace(scenario)
        ]
    successors: dict[int, int] = {}
    runs = 0
    for p, spec in enumerate(scenario.pipelines):
        where = f"pipelines.{p}"
        steps = spec.get("steps")
        if not isinstance(spec, dict) or not isinstance(steps, list) or not steps:
            raise ScenarioError(f"{where}: expected {{start, every, steps: [...]}}")
        every = seconds(spec.get("every", "24h"), f"{where}.every") or horizon
        jitter = seconds(spec.get("jitter", 0), f"{where}.jitter")
        rng = _rng(scenario.seed, "pipeline", p)
        first = seconds(spec.get("start", 0), f"{where}.start")
        for start in np.arange(first, horizon, every):
            begin = float(start + rng.uniform(0, jitter))
            if begin >= horizon:
                continue
            for s, step in enumerate(steps):
                at = f"{where}.steps.{s}"
                cluster = index_of(index, step.get("cluster"), at)
                arrival = begin if s == 0 else float("nan")
                tasks, duration = _positive(step, "tasks", at), _positive(step, "duration", at)
                if s:
                    successors[len(rows) - 1] = len(rows)
                rows.append((arrival, cluster, tasks, duration, -1, runs))
            runs += 1
    table = np.array([r[:4] for r in rows], dtype=np.float64).reshape(-1, 4)
    successor = np.full(len(rows), -1, dtype=np.int64)
    for leader, follower in successors.items():
        successor[leader] = follower
    return Workload(
        arrival=table[:, 0],
        cluster=table[:, 1].astype(np.int64),
        tasks=table[:, 2],
        duration=table[:, 3],
        successor=successor,
        pipeline=np.array([r[5] for r in rows], dtype=np.int64),
    )


def index_of(index: dict[str, int], name: Any, where: str) -> int:
    if name not in index:
        raise ScenarioError(f"{where}: unknown cluster {name!r}")
    return index[name]


def _trace(scenario: Scenario) -> list[tuple[float, str, float, float]]:
    """Rows of a CSV trace with the header ``time,cluster,tasks,duration``."""
    path = scenario.trace
    assert path is not None
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            missing = {"time", "cluster", "tasks", "duration"} - set(reader.fieldnames or [])
            if missing:
                raise ScenarioError(f"trace {path.name}: missing column(s) {sorted(missing)}")
            rows = []
            for line, row in enumerate(reader, start=2):
                try:
                    t, n, d = (
                        seconds(row["time"], "time"),
                        float(row["tasks"]),
                        float(row["duration"]),
                    )
                except (ValueError, ScenarioError) as exc:
                    raise ScenarioError(f"trace {path.name} line {line}: bad number") from exc
                if n <= 0 or d <= 0:
                    raise ScenarioError(f"trace {path.name} line {line}: tasks and duration > 0")
                rows.append((t, row["cluster"], n, d))
            return rows
    except OSError as exc:
        raise ScenarioError(f"cannot read trace {str(path)!r}: {exc.strerror}") from exc
