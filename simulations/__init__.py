"""Offline fairness simulations: "what would happen if" before changing weights, tiers, pool
size or damping. The DRF policy calls the service's own ``autoscaler.planner.plan``.

No network and no database: scenario files in, ``report.json`` and ``report.html`` out.
"""

from simulations.model import Run, simulate
from simulations.run import run_scenario
from simulations.scenario import Scenario, ScenarioError, load_scenario, parse_scenario

__all__ = [
    "Run",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "parse_scenario",
    "run_scenario",
    "simulate",
]
