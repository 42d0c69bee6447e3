"""The simulator: determinism, conservation of work, the DRF paper, policies' defining behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoscaler.domain import ClusterSpec, Pool
from autoscaler.planner import Demand, plan
from drf.metrics import jain_index
from simulations.demand import build_workload
from simulations.metrics import jain_over_time, summarize
from simulations.model import simulate
from simulations.policies import Fleet, GreedyPolicy, ProportionalPolicy, StaticPolicy
from simulations.run import run_scenario
from simulations.scenario import POLICIES, Scenario, load_scenario, parse_scenario

SCENARIOS = Path(__file__).parent.parent / "simulations" / "scenarios"


def small() -> Scenario:
    return load_scenario(SCENARIOS / "small.yaml")


def two_clusters(pool_cpu: float, **extra: object) -> Scenario:
    raw = {
        "pool": {"cpu": pool_cpu},
        "duration": 100,
        "clusters": {"a": {"worker": {"cpu": 1}}, "b": {"worker": {"cpu": 1}}},
        **extra,
    }
    return parse_scenario(raw)


def test_same_seed_gives_the_same_report_and_another_seed_another() -> None:
    first, _ = run_scenario(small(), show_progress=False)
    second, _ = run_scenario(small(), show_progress=False)
    other, _ = run_scenario(
        load_scenario(SCENARIOS / "small.yaml", {"seed": 8}), show_progress=False
    )
    assert json.dumps(first) == json.dumps(second)
    assert json.dumps(first) != json.dumps(other)


@pytest.mark.parametrize("policy", POLICIES)
def test_work_done_equals_work_arrived_minus_backlog(policy: str) -> None:
    scenario = small()
    workload = build_workload(scenario)
    run = simulate(scenario, policy, workload=workload)
    arrived = run.joined
    expected = float((workload.tasks * workload.duration)[arrived].sum())
    assert run.arrived_work == pytest.approx(expected, rel=1e-12)
    assert run.done_work + run.backlog_work == pytest.approx(run.arrived_work, rel=1e-9)
    assert run.done_work == pytest.approx(run.work_done.sum(), rel=1e-9)
    assert run.done_work > 0


def test_the_drf_paper_example_gives_a_three_workers_and_b_two() -> None:
    report, _ = run_scenario(load_scenario(SCENARIOS / "drf_paper.yaml"), show_progress=False)
    drf = report["policies"]["drf"]
    assert drf["final_workers"] == {"A": 3, "B": 2}
    assert drf["mean_workers"] == {"A": 3.0, "B": 2.0}
    assert drf["jain"]["mean"] == pytest.approx(1.0)


def test_drf_beats_the_static_partition_on_completion_time_when_bursty() -> None:
    scenario = load_scenario(SCENARIOS / "bursty.yaml", {"policies": ["drf", "static"]})
    report, _ = run_scenario(scenario, show_progress=False)
    drf, static = report["policies"]["drf"], report["policies"]["static"]
    assert drf["jobs"]["completed"] >= static["jobs"]["completed"]
    assert drf["jobs"]["mean"] < static["jobs"]["mean"] / 2
    assert drf["jobs"]["p95"] < static["jobs"]["p95"]


def test_static_never_exceeds_its_partition() -> None:
    scenario = small()
    fleet = Fleet.from_scenario(scenario)
    partition = StaticPolicy(fleet, scenario).partition
    run = simulate(scenario, "static", fleet=fleet)
    granted = run.running.astype(np.int64) + run.starting
    assert (granted <= partition).all()
    assert (granted.max(axis=0) == partition).any()  # the partition does bind
    assert (partition @ fleet.worker <= fleet.capacity).all()


def test_greedy_serves_the_first_come_and_takes_nothing_back() -> None:
    scenario = two_clusters(4)
    greedy = GreedyPolicy(Fleet.from_scenario(scenario), scenario)
    first = greedy.decide(0.0, np.array([0, 4]), np.array([0, 0]))
    assert first.tolist() == [0, 4]  # b asked first
    later = greedy.decide(10.0, np.array([4, 4]), first)
    assert later.tolist() == [0, 4]  # a waits in line, b keeps everything
    freed = greedy.decide(20.0, np.array([4, 1]), later)
    assert freed.tolist() == [3, 1]


def test_proportional_follows_demand() -> None:
    scenario = two_clusters(4)
    proportional = ProportionalPolicy(Fleet.from_scenario(scenario), scenario)
    zero = np.zeros(2, dtype=np.int64)
    assert proportional.decide(0.0, np.array([2, 6]), zero).tolist() == [1, 3]
    assert proportional.decide(0.0, np.array([6, 2]), zero).tolist() == [3, 1]
    assert proportional.decide(0.0, np.array([1, 2]), zero).tolist() == [1, 2]  # all fits


def test_no_shared_pool_overcommits_the_pool() -> None:
    scenario = load_scenario(SCENARIOS / "bursty.yaml", {"policies": ["unshared", "drf"]})
    report, _ = run_scenario(scenario, show_progress=False)
    assert max(report["policies"]["unshared"]["peak_granted"].values()) > 1.5
    assert report["policies"]["unshared"]["overcommitted_seconds"] > 0
    assert max(report["policies"]["drf"]["peak_granted"].values()) <= 1.0
    assert report["policies"]["drf"]["overcommitted_seconds"] == 0


def test_the_drf_policy_goes_through_the_service_planner() -> None:
    scenario = small()
    run = simulate(scenario, "drf")
    assert {"satisfied", "scale_down_delayed"} <= set(run.reasons)
    assert any(reason.startswith("fair_share_limited_by_") for reason in run.reasons)


def test_leaving_idle_clusters_out_of_the_plan_changes_no_target() -> None:
    def spec(name: str, minimum: int = 0) -> ClusterSpec:
        worker = {"cpu": 1.0, "memory": 2.0}
        return ClusterSpec(
            name=name, scheduler_url="x", backend="b", worker=worker, minimum=minimum
        )

    pool = Pool(capacity={"cpu": 6, "memory": 10})
    busy = [
        Demand(spec=spec("a"), desired=5, current=1),
        Demand(spec=spec("b", 1), desired=4, current=3),
    ]
    idle = [Demand(spec=spec(f"idle{i}"), desired=0, current=0) for i in range(3)]
    alone = plan(pool, busy, now=0).decisions
    mixed = plan(pool, idle[:2] + busy + idle[2:], now=0).decisions
    assert [d.target for d in alone] == [
        d.target for d in mixed if not d.cluster.startswith("idle")
    ]
    assert all(d.target == 0 for d in mixed if d.cluster.startswith("idle"))


def test_jain_over_time_equals_drf_metrics_row_by_row() -> None:
    scenario = small()
    fleet = Fleet.from_scenario(scenario)
    rng = np.random.default_rng(0)
    active = rng.integers(0, 6, (20, fleet.size))
    wants = rng.random((20, fleet.size)) < 0.7
    values = jain_over_time(fleet, active, wants)
    shares = active * (fleet.worker / fleet.capacity).max(axis=1) / fleet.weight
    for t in range(20):
        if wants[t].sum() >= 2:
            assert values[t] == pytest.approx(jain_index(shares[t][wants[t]]))
        else:
            assert np.isnan(values[t])


def test_a_pipeline_step_arrives_when_the_step_before_finishes() -> None:
    scenario = small()
    workload = build_workload(scenario)
    run = simulate(scenario, "unshared", workload=workload)
    leaders = np.flatnonzero(workload.successor >= 0)
    assert leaders.size
    for leader in leaders:
        follower = workload.successor[leader]
        assert np.isnan(workload.arrival[follower])
        if not np.isnan(run.finished[leader]):
            assert run.arrival[follower] == run.finished[leader]
            assert run.started[follower] >= run.arrival[follower]


def test_a_csv_trace_drives_demand(tmp_path: Path) -> None:
    (tmp_path / "trace.csv").write_text("time,cluster,tasks,duration\n0,a,20,5\n30,b,10,2\n")
    scenario = parse_scenario(
        {"pool": {"cpu": 8}, "duration": 300, "trace": "trace.csv", "startup_delay": 0,
         "clusters": {"a": {"worker": {"cpu": 1}}, "b": {"worker": {"cpu": 1}}}},
        tmp_path,
    )  # fmt: skip
    run = simulate(scenario, "drf")
    assert run.arrived_work == 20 * 5 + 10 * 2
    assert run.backlog_work == 0
    fleet, workload = Fleet.from_scenario(scenario), build_workload(scenario)
    summary, _ = summarize(run, fleet, workload)
    assert summary["jobs"]["completed"] == 2
    assert summary["final_workers"] == {"a": 0, "b": 0}
