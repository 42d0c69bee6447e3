"""Scenario files: YAML in, a validated ``Scenario`` out; dotted-path overrides for sweeps.

Every error is a ``ScenarioError`` (a ``ConfigError``) with a one-line message naming the key.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from autoscaler.errors import ConfigError
from autoscaler.planner import Damping
from autoscaler.units import parse_quantity

TIERS = {"production": 0, "staging": 1, "development": 2}
POLICIES = ("drf", "static", "greedy", "proportional", "unshared")
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(s|m|h|d)?\s*$")
_SECONDS = {None: 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class ScenarioError(ConfigError):
    """The scenario file or an override is invalid; the message is safe to show."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    name: str
    worker: dict[str, float]
    minimum: int = 0
    maximum: int | None = None
    weight: float = 1.0
    tier: int = 0
    group: str = "default"
    demand: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    pool: dict[str, float]
    clusters: list[ClusterConfig]
    pipelines: list[dict[str, Any]] = field(default_factory=list)
    trace: Path | None = None
    step: float = 10.0
    duration: float = 3600.0
    seed: int = 0
    target_duration: float = 5.0
    startup_delay: float = 30.0
    retire_delay: float = 10.0
    damping: Damping = field(default_factory=Damping)
    policies: tuple[str, ...] = POLICIES

    @property
    def steps(self) -> int:
        return round(self.duration / self.step)


def seconds(value: Any, key: str) -> float:
    """A duration: seconds as a number, or a string such as "30s", "10m", "24h", "1d"."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ScenarioError(f"{key}: expected a duration such as 30, '10m' or '24h'")
    if isinstance(value, str):
        match = _DURATION.match(value)
        if match is None:
            raise ScenarioError(f"{key}: not a duration: {value!r} (examples: 30, '10m', '24h')")
        return float(match.group(1)) * _SECONDS[match.group(2)]
    if value < 0:
        raise ScenarioError(f"{key}: must be >= 0")
    return float(value)


def _quantity(value: Any, key: str) -> float:
    try:
        return parse_quantity(value)
    except ConfigError as exc:
        raise ScenarioError(f"{key}: {exc}") from exc


def _number(raw: dict[str, Any], key: str, where: str, default: float, low: float = 0.0) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
        raise ScenarioError(f"{where}.{key}: expected a number >= {low}, got {value!r}")
    return float(value)


def _check_keys(raw: Any, allowed: set[str], where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping")
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise ScenarioError(f"{where}: unknown key {unknown[0]!r} (allowed: {sorted(allowed)})")
    return raw


def _tier(value: Any, where: str) -> int:
    if isinstance(value, str) and value in TIERS:
        return TIERS[value]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ScenarioError(f"{where}.tier: expected {sorted(TIERS)} or an integer >= 0")


def _cluster(name: str, raw: Any, resources: tuple[str, ...]) -> ClusterConfig:
    where = f"clusters.{name}"
    keys = {"worker", "minimum", "maximum", "weight", "tier", "group", "demand"}
    raw = _check_keys(raw, keys, where)
    worker_raw = _check_keys(raw.get("worker"), set(resources), f"{where}.worker")
    worker = {r: _quantity(worker_raw.get(r, 0), f"{where}.worker.{r}") for r in resources}
    if not any(worker.values()):
        raise ScenarioError(f"{where}.worker: a worker needs some resource")
    minimum = int(_number(raw, "minimum", where, 0))
    maximum = raw.get("maximum")
    if maximum is not None:
        maximum = int(_number(raw, "maximum", where, 0))
        if maximum < minimum:
            raise ScenarioError(f"{where}: maximum below minimum")
    weight = _number(raw, "weight", where, 1.0)
    if weight <= 0:
        raise ScenarioError(f"{where}.weight: must be > 0")
    demand = raw.get("demand", [])
    if not isinstance(demand, list) or not all(isinstance(d, dict) for d in demand):
        raise ScenarioError(f"{where}.demand: expected a list of generators")
    return ClusterConfig(
        name=name,
        worker=worker,
        minimum=minimum,
        maximum=maximum,
        weight=weight,
        tier=_tier(raw.get("tier", 0), where),
        group=str(raw.get("group", "default")),
        demand=demand,
    )


SCENARIO_KEYS = {
    "name", "pool", "clusters", "fleet", "pipelines", "trace", "step", "duration", "seed",
    "target_duration", "startup_delay", "retire_delay", "damping", "policies",
}  # fmt: skip


def parse_scenario(raw: Any, base: Path = Path()) -> Scenario:
    """Validate a scenario mapping; ``base`` is where relative trace paths start."""
    from simulations.fleet import expand_fleet

    raw = _check_keys(raw, SCENARIO_KEYS, "scenario")
    pool_raw = _check_keys(raw.get("pool"), {"cpu", "memory", "gpu"}, "pool")
    pool = {r: _quantity(v, f"pool.{r}") for r, v in pool_raw.items()}
    if not pool:
        raise ScenarioError("pool: give at least one resource, e.g. {cpu: 64, memory: 256GiB}")
    resources = tuple(pool)
    clusters_raw = raw.get("clusters") or {}
    if not isinstance(clusters_raw, dict):
        raise ScenarioError("clusters: expected a mapping of name to cluster")
    clusters = [_cluster(str(n), c, resources) for n, c in clusters_raw.items()]
    pipelines = list(raw.get("pipelines") or [])
    seed = raw.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ScenarioError(f"seed: expected an integer, got {seed!r}")
    if "fleet" in raw:
        more, more_pipelines = expand_fleet(raw["fleet"], resources, seed)
        clusters += [_cluster(n, c, resources) for n, c in more.items()]
        pipelines += more_pipelines
    if not clusters:
        raise ScenarioError("clusters: a scenario needs at least one cluster")
    names = [c.name for c in clusters]
    if len(set(names)) != len(names):
        raise ScenarioError("clusters: duplicate cluster names")
    damping_raw = _check_keys(
        raw.get("damping", {}),
        {"scale_down_delay", "scale_down_max_fraction", "preemption_grace"},
        "damping",
    )
    fraction = _number(damping_raw, "scale_down_max_fraction", "damping", 0.5)
    if not 0 < fraction <= 1:
        raise ScenarioError("damping.scale_down_max_fraction: must be in (0, 1]")
    damping = Damping(
        scale_down_delay=seconds(
            damping_raw.get("scale_down_delay", 60), "damping.scale_down_delay"
        ),
        scale_down_max_fraction=fraction,
        preemption_grace=seconds(
            damping_raw.get("preemption_grace", 15), "damping.preemption_grace"
        ),
    )
    chosen = raw.get("policies", POLICIES)
    policies = (chosen,) if isinstance(chosen, str) else tuple(chosen or ())
    bad = [p for p in policies if p not in POLICIES]
    if bad or not policies:
        raise ScenarioError(f"policies: unknown {bad} (choose from {list(POLICIES)})")
    step = seconds(raw.get("step", 10), "step")
    duration = seconds(raw.get("duration", 3600), "duration")
    if step <= 0 or duration < step:
        raise ScenarioError("step must be > 0 and duration at least one step")
    trace = raw.get("trace")
    return Scenario(
        name=str(raw.get("name", "scenario")),
        pool=pool,
        clusters=clusters,
        pipelines=pipelines,
        trace=None if trace is None else (base / str(trace)),
        step=step,
        duration=duration,
        seed=seed,
        target_duration=seconds(raw.get("target_duration", 5), "target_duration") or 5.0,
        startup_delay=seconds(raw.get("startup_delay", 30), "startup_delay"),
        retire_delay=seconds(raw.get("retire_delay", 10), "retire_delay"),
        damping=damping,
        policies=policies,
    )


def read_raw(path: str | Path) -> dict[str, Any]:
    """The YAML mapping of a scenario file."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario {str(path)!r}: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise ScenarioError(f"scenario {str(path)!r} is not valid YAML{line}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"scenario {str(path)!r}: expected a mapping at the top")
    return raw


def override(raw: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """A copy of ``raw`` with the dotted ``key`` (``clusters.etl.weight``, ``demand.0``) set."""
    result = copy.deepcopy(raw)
    parts = key.split(".")
    node: Any = result
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ScenarioError(f"override {key}: no item {part!r} in the list")
            index: Any = int(part)
        elif isinstance(node, dict):
            index = part
            if not last and index not in node:
                if parts[0] == "clusters" and i == 1:
                    raise ScenarioError(f"override {key}: no cluster {part!r}")
                node[index] = {}
        else:
            raise ScenarioError(f"override {key}: {'.'.join(parts[:i])} is not a mapping")
        if last:
            node[index] = value
        else:
            node = node[index]
    return result


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    raw = read_raw(path)
    for key, value in (overrides or {}).items():
        raw = override(raw, key, value)
    return parse_scenario(raw, Path(path).parent)
