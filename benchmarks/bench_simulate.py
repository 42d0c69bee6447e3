"""The production-like day: 500 clusters, 24 h at 10 s steps (8,640 steps), every policy.

Budget: the DRF planner policy in 60 s or less on this machine. Prints the wall time of each
policy's simulation and its metrics, and the simulated-to-real speed.
Run: ``.venv/bin/python -m benchmarks.bench_simulate [--policies drf static ...]``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from simulations.demand import build_workload
from simulations.metrics import summarize
from simulations.model import simulate
from simulations.policies import Fleet
from simulations.scenario import POLICIES, load_scenario

SCENARIO = Path(__file__).parent.parent / "simulations" / "scenarios" / "production_day.yaml"
BUDGET = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default=str(SCENARIO))
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    args = parser.parse_args()
    start = time.perf_counter()
    scenario = load_scenario(args.scenario)
    fleet = Fleet.from_scenario(scenario)
    workload = build_workload(scenario)
    setup = time.perf_counter() - start
    print(
        f"{scenario.name}: {fleet.size} clusters, {workload.size} jobs, {scenario.steps} steps of "
        f"{scenario.step:g} s; setup {setup:.2f} s"
    )
    print(f"{'policy':>13} {'simulate s':>11} {'metrics s':>10} {'sim/real':>9}  budget")
    for name in args.policies:
        start = time.perf_counter()
        run = simulate(scenario, name, fleet=fleet, workload=workload)
        simulated = time.perf_counter() - start
        summarize(run, fleet, workload)
        total = time.perf_counter() - start
        verdict = ("ok" if total <= BUDGET else "OVER") if name == "drf" else ""
        speed = scenario.duration / total
        print(f"{name:>13} {simulated:11.1f} {total - simulated:10.1f} {speed:8,.0f}x  {verdict}")


if __name__ == "__main__":
    main()
