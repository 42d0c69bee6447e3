"""The planner's damping, pool guard and reasons, on plain data: no I/O, no clock."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.domain import ClusterSpec, Pool
from autoscaler.planner import Damping, Demand, plan

POOL = Pool(capacity={"cpu": 8, "memory": 8})
DAMPING = Damping(scale_down_delay=60, scale_down_max_fraction=0.5, preemption_grace=15)


def spec(name: str, **kw) -> ClusterSpec:
    kw.setdefault("worker", {"cpu": 1, "memory": 1})
    return ClusterSpec(name=name, scheduler_url="http://x", backend="local", **kw)


def demand(name: str, desired: int | None, current: int, stale: bool = False, **kw) -> Demand:
    return Demand(spec=spec(name, **kw), desired=desired, current=current, stale=stale)


def by_name(result):
    return {d.cluster: d for d in result.decisions}


def test_two_busy_clusters_split_the_pool_and_name_the_binding_resource():
    result = by_name(plan(POOL, [demand("a", 10, 0), demand("b", 10, 0)], now=0))
    assert (result["a"].target, result["b"].target) == (4, 4)
    assert result["a"].reason == "fair_share_limited_by_cpu"
    assert result["a"].dominant_share == 0.5


def test_binding_resource_is_memory_when_memory_runs_out():
    demands = [demand("a", 10, 0, worker={"cpu": 1, "memory": 2})]
    assert by_name(plan(POOL, demands, now=0))["a"].reason == "fair_share_limited_by_memory"


def test_satisfied_minimum_and_maximum_reasons():
    result = by_name(
        plan(
            POOL,
            [demand("sat", 2, 0), demand("min", 0, 0, minimum=1), demand("max", 5, 0, maximum=2)],
            now=0,
        )
    )
    assert (result["sat"].reason, result["sat"].target) == ("satisfied", 2)
    assert (result["min"].reason, result["min"].target) == ("minimum", 1)
    assert (result["max"].reason, result["max"].target) == ("capped_by_maximum", 2)


def test_scale_up_is_immediate_scale_down_waits_then_steps():
    memory: dict[str, float] = {}
    steps = []
    for now in (0, 30, 59, 60, 70):
        result = plan(
            POOL,
            [demand("a", 1, steps[-1] if steps else 6)],
            now=now,
            damping=DAMPING,
            lower_since=memory,
        )
        memory = result.lower_since
        decision = result.decisions[0]
        steps.append(decision.target)
        if now < 60:
            assert decision.reason == "scale_down_delayed"
    # held for 60 s, then at most half the workers per cycle: 6 -> 3 -> 1 (its allocation)
    assert steps == [6, 6, 6, 3, 1]


def test_a_scale_down_that_stops_being_lower_resets_its_delay():
    first = plan(POOL, [demand("a", 1, 6)], now=0, damping=DAMPING)
    assert first.lower_since == {"a": 0}
    again = plan(POOL, [demand("a", 6, 6)], now=30, damping=DAMPING, lower_since=first.lower_since)
    assert again.lower_since == {}
    later = plan(POOL, [demand("a", 1, 6)], now=70, damping=DAMPING, lower_since=again.lower_since)
    assert later.decisions[0].reason == "scale_down_delayed"


def test_stale_cluster_keeps_its_size_and_still_holds_its_workers():
    result = by_name(plan(POOL, [demand("a", None, 6, stale=True), demand("b", 10, 0)], now=0))
    assert (result["a"].target, result["a"].reason) == (6, "held_stale")
    assert result["b"].target == 2  # only what the stale cluster leaves free


def test_scale_up_waits_for_capacity_held_by_a_delayed_scale_down_then_preempts():
    memory: dict[str, float] = {}
    # a holds 8 workers but now wants 1; b wants 8: DRF gives a 1... b 7
    result = plan(POOL, [demand("a", 1, 8), demand("b", 8, 0)], now=0, damping=DAMPING)
    first = by_name(result)
    assert (first["a"].target, first["a"].reason) == (8, "scale_down_delayed")
    assert (first["b"].target, first["b"].reason) == (0, "waiting_for_capacity")
    assert first["b"].allocated == 7
    memory = result.lower_since
    # after the preemption grace (15 s, not the full 60 s), a gives back half its workers
    result = plan(
        POOL, [demand("a", 1, 8), demand("b", 8, 0)], now=15, damping=DAMPING, lower_since=memory
    )
    second = by_name(result)
    assert (second["a"].target, second["a"].reason) == (4, "preempted")
    assert (second["b"].target, second["b"].reason) == (4, "waiting_for_capacity")


def test_lower_tier_yields_to_a_higher_tier():
    demands = [demand("dev", 8, 8, tier=2), demand("prod", 8, 0, tier=0)]
    first = by_name(plan(POOL, demands, now=0, damping=DAMPING))
    assert first["prod"].allocated == 8 and first["dev"].allocated == 0
    assert first["prod"].reason == "waiting_for_capacity"
    later = by_name(plan(POOL, demands, now=20, damping=DAMPING, lower_since={"dev": 0}))
    assert later["dev"].reason == "preempted" and later["dev"].target == 4
    assert later["prod"].target == 4


@st.composite
def fleets(draw):
    n = draw(st.integers(1, 8))
    demands = []
    for i in range(n):
        demands.append(
            demand(
                f"c{i}",
                draw(st.none() | st.integers(0, 12)),
                draw(st.integers(0, 6)),
                stale=draw(st.booleans()),
                worker={"cpu": draw(st.integers(0, 3)), "memory": draw(st.integers(1, 3))},
                tier=draw(st.integers(0, 2)),
            )
        )
    capacity = {"cpu": draw(st.integers(0, 30)), "memory": draw(st.integers(0, 30))}
    return Pool(capacity=capacity), demands, draw(st.floats(0, 200))


@settings(max_examples=200, deadline=None)
@given(fleets())
def test_targets_never_take_more_than_the_free_pool(fleet):
    pool, demands, now = fleet
    result = plan(pool, demands, now=now, damping=DAMPING, lower_since={"c0": 0.0})
    capacity = np.array(list(pool.capacity.values()), dtype=float)
    worker = np.array([[d.spec.worker["cpu"], d.spec.worker["memory"]] for d in demands], float)
    current = np.array([d.current for d in demands])
    target = np.array([d.target for d in result.decisions])
    kept = np.minimum(current, target)
    # growth only into capacity that is free once every scale-down of this cycle is done
    assert np.all(target @ worker <= np.maximum(capacity, kept @ worker))
    for d, decision in zip(demands, result.decisions, strict=True):
        if d.stale or d.desired is None:
            assert decision.target == d.current
        if decision.target < d.current:  # never below the fair allocation in one step
            assert decision.target >= decision.allocated


def test_a_cluster_the_platform_cannot_place_is_not_grown_further():
    demands = [
        Demand(spec=spec("a"), desired=8, current=2, unschedulable=True),
        demand("b", 8, 0),
    ]
    result = by_name(plan(POOL, demands, now=0, damping=DAMPING))
    assert (result["a"].allocated, result["a"].target) == (4, 2)
    assert result["a"].reason == "unschedulable"
    assert result["b"].target == 4
    # it is never shrunk for it: the workers it runs stay
    alone = plan(POOL, [Demand(spec=spec("a"), desired=8, current=6, unschedulable=True)], now=0)
    assert alone.decisions[0].target == 6
