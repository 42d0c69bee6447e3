"""Run every policy of a scenario on the same workload, with a progress bar for long runs."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from simulations.demand import build_workload
from simulations.metrics import summarize
from simulations.model import Progress, simulate
from simulations.policies import Fleet
from simulations.scenario import Scenario

Series = dict[str, Any]


@contextmanager
def progress_bar(total: int, description: str, enabled: bool | None = None) -> Iterator[Progress]:
    """A tqdm bar on stderr; off when stderr is not a terminal (unless ``enabled``)."""
    show = sys.stderr.isatty() if enabled is None else enabled
    if not show:
        yield lambda _done: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="step", file=sys.stderr, leave=False) as bar:
        yield bar.update


def describe(scenario: Scenario) -> dict[str, Any]:
    return {
        "name": scenario.name,
        "clusters": len(scenario.clusters),
        "pipelines": len(scenario.pipelines),
        "pool": scenario.pool,
        "step": scenario.step,
        "duration": scenario.duration,
        "seed": scenario.seed,
        "target_duration": scenario.target_duration,
        "startup_delay": scenario.startup_delay,
        "retire_delay": scenario.retire_delay,
        "damping": {
            "scale_down_delay": scenario.damping.scale_down_delay,
            "scale_down_max_fraction": scenario.damping.scale_down_max_fraction,
            "preemption_grace": scenario.damping.preemption_grace,
        },
        "policies": list(scenario.policies),
    }


def run_scenario(
    scenario: Scenario, *, show_progress: bool | None = None
) -> tuple[dict[str, Any], dict[str, Series]]:
    """The report (JSON-ready, deterministic for the seed) and the series for plots, by policy."""
    fleet = Fleet.from_scenario(scenario)
    workload = build_workload(scenario)
    results: dict[str, Any] = {}
    series: dict[str, Series] = {}
    total = scenario.steps * len(scenario.policies)
    with progress_bar(total, scenario.name, show_progress) as advance:
        for name in scenario.policies:
            run = simulate(scenario, name, fleet=fleet, workload=workload, progress=advance)
            results[name], series[name] = summarize(run, fleet, workload)
            del run
    report = {"scenario": describe(scenario), "policies": _clean(results)}
    return report, series


def _clean(value: Any) -> Any:
    """NaN and infinities become null, so the JSON is standard."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
