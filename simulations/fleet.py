"""A production-like fleet from a few generator parameters, instead of hundreds of entries.

Customers own pipelines of 2 to 6 steps; each step runs on its own cluster, one after another,
once or a few times a day, so most clusters idle most of the time. A few clusters also get
interactive (steady) work. Ranges ``[low, high]`` are drawn log-uniformly for sizes.

```yaml
fleet:
  clusters: 500
  steps: [2, 6]                  # clusters (pipeline steps) per customer
  tiers: {production: 0.25, staging: 0.35, development: 0.4}   # share of customers
  weights: {production: 4, staging: 2, development: 1}
  minimum: {production: 1}       # workers kept by every cluster of a tier
  worker_cpu: [1, 2]
  worker_memory: [1GiB, 64GiB]
  maximum: [1, 225]
  runs_per_day: [1, 3]
  window: [0h, 20h]              # first run of the day starts in this window
  jitter: 30m
  step_minutes: [5, 45]          # a step's length when run at its maximum size
  task_duration: [2, 60]
  interactive: {fraction: 0.1, jobs_per_hour: [6, 60], tasks: [4, 200], duration: [1, 10]}
```
"""

from __future__ import annotations

from typing import Any

import numpy as np

from autoscaler.units import parse_quantity
from simulations.scenario import TIERS, ScenarioError, seconds

DEFAULTS: dict[str, Any] = {
    "clusters": 500,
    "steps": [2, 6],
    "tiers": {"production": 0.25, "staging": 0.35, "development": 0.4},
    "weights": {"production": 4, "staging": 2, "development": 1},
    "minimum": {},
    "worker_cpu": [1, 2],
    "worker_memory": ["1GiB", "64GiB"],
    "maximum": [1, 225],
    "runs_per_day": [1, 3],
    "window": ["0h", "20h"],
    "jitter": "30m",
    "step_minutes": [5, 45],
    "task_duration": [2, 60],
    "interactive": {
        "fraction": 0.1,
        "jobs_per_hour": [6, 60],
        "tasks": [4, 200],
        "duration": [1, 10],
    },
}
GIB = 2**30


def _range(params: dict[str, Any], key: str, parse: Any = float) -> tuple[float, float]:
    value = params[key]
    if not (isinstance(value, list) and len(value) == 2):
        raise ScenarioError(f"fleet.{key}: expected [low, high]")
    try:
        low, high = parse(value[0]), parse(value[1])
    except (TypeError, ValueError) as exc:
        raise ScenarioError(f"fleet.{key}: expected [low, high] numbers") from exc
    if not 0 < low <= high:
        raise ScenarioError(f"fleet.{key}: expected 0 < low <= high")
    return low, high


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(np.exp(rng.uniform(np.log(low), np.log(high))))


def expand_fleet(
    raw: Any, resources: tuple[str, ...], seed: int
) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    """Cluster mappings (as in ``clusters:``) and pipelines (as in ``pipelines:``)."""
    if not isinstance(raw, dict) or set(raw) - set(DEFAULTS):
        unknown = sorted(set(raw) - set(DEFAULTS)) if isinstance(raw, dict) else []
        raise ScenarioError(f"fleet: expected a mapping of {sorted(DEFAULTS)}; unknown {unknown}")
    params = {**DEFAULTS, **raw}
    rng = np.random.default_rng([seed, 0xF1EE7])
    count = int(params["clusters"])
    steps = _range(params, "steps", int)
    cpu = _range(params, "worker_cpu", int)
    memory = _range(params, "worker_memory", parse_quantity)
    maximum = _range(params, "maximum", int)
    runs = _range(params, "runs_per_day", int)
    window = _range(params, "window", lambda v: seconds(v, "fleet.window") or 1e-9)
    minutes = _range(params, "step_minutes")
    task_duration = _range(params, "task_duration")
    jitter = seconds(params["jitter"], "fleet.jitter")
    tier_names = list(params["tiers"])
    if any(t not in TIERS for t in tier_names):
        raise ScenarioError(f"fleet.tiers: tiers are {sorted(TIERS)}")
    shares = np.array([float(params["tiers"][t]) for t in tier_names])
    interactive = {**DEFAULTS["interactive"], **params["interactive"]}

    clusters: dict[str, dict[str, Any]] = {}
    pipelines: list[dict[str, Any]] = []
    customer = 0
    while len(clusters) < count:
        tier = tier_names[int(rng.choice(len(tier_names), p=shares / shares.sum()))]
        length = min(int(rng.integers(steps[0], steps[1] + 1)), count - len(clusters))
        name = f"c{customer:03d}"
        pipeline_steps = []
        for s in range(length):
            size = round(_log_uniform(rng, maximum))
            worker_cpu = int(rng.integers(cpu[0], cpu[1] + 1))
            worker = {"cpu": worker_cpu, "memory": round(_log_uniform(rng, memory) / GIB) * GIB}
            duration = round(_log_uniform(rng, task_duration), 1)
            work = size * worker_cpu * rng.uniform(*minutes) * 60
            cluster: dict[str, Any] = {
                "worker": {r: worker.get(r, 0) for r in resources},
                "minimum": int(params["minimum"].get(tier, 0)),
                "maximum": size,
                "weight": params["weights"].get(tier, 1),
                "tier": tier,
                "group": name,
                "demand": [],
            }
            if rng.uniform() < float(interactive["fraction"]):
                cluster["demand"].append(
                    {
                        "kind": "steady",
                        "jobs_per_hour": _log_uniform(rng, _range(interactive, "jobs_per_hour")),
                        "tasks": round(_log_uniform(rng, _range(interactive, "tasks"))),
                        "duration": _log_uniform(rng, _range(interactive, "duration")),
                    }
                )
            clusters[f"{name}-{s}"] = cluster
            pipeline_steps.append(
                {
                    "cluster": f"{name}-{s}",
                    "tasks": max(1, round(work / duration)),
                    "duration": duration,
                }
            )
        per_day = int(rng.integers(runs[0], runs[1] + 1))
        first = rng.uniform(*window)
        for r in range(per_day):
            pipelines.append(
                {
                    "customer": name,
                    "start": first + r * 86400 / per_day,
                    "every": 86400,
                    "jitter": jitter,
                    "steps": pipeline_steps,
                }
            )
        customer += 1
    return clusters, pipelines
