"""``GET /metrics``: parsed with prometheus_client's own parser, checked against the store."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from autoscaler.api import create_app
from autoscaler.demo.processes import SchedulerProcess
from autoscaler.domain import ClusterSpec, Decision, Pool
from autoscaler.loop import CycleReport
from autoscaler.observe import Observation
from autoscaler.service import create_service
from autoscaler.settings import Settings
from autoscaler.store import ObservationRow, Store
from tests.db_fixtures import ADMIN_TOKEN

GIB = 2**30
GRAFANA = Path(__file__).resolve().parent.parent / "docs" / "grafana-dashboard.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def spec(name: str, group: str, tier: int, url: str = "http://127.0.0.1:9") -> ClusterSpec:
    return ClusterSpec(
        name=name,
        scheduler_url=url,
        backend="local",
        worker={"cpu": 2, "memory": 4 * GIB},
        group=group,
        tier=tier,
    )


def decision(name: str, reason: str = "satisfied", error: str | None = None, **kw: int) -> Decision:
    values = {"desired": 3, "allocated": 2, "target": 2, "current": 1, **kw}
    return Decision(
        cluster=name,
        dominant_share=0.25,
        reason=reason,
        decided_at=time.time(),
        error=error,
        **values,
    )


def observation(name: str, error: str | None = None) -> Observation:
    return Observation(
        cluster=name,
        observed_at=time.time(),
        desired=None if error else 2,
        workers={} if error else {"idle": 1},
        tasks={},
        usage=None,
        error=error,
        consecutive_failures=1 if error else 0,
        stale=False,
    )


async def scrape(app: FastAPI, token: str | None = None) -> httpx.Response:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        return await http.get("/metrics", headers=headers)


async def samples(app: FastAPI) -> Samples:
    response = await scrape(app)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def app_over(store: Store) -> FastAPI:
    return create_app(Settings(admin_token=ADMIN_TOKEN), store)


async def test_cluster_and_pool_gauges_match_the_recorded_decisions(store: Store) -> None:
    store.set_pool(Pool(capacity={"cpu": 40, "memory": 100 * GIB}))
    store.create_cluster(spec("alpha", "team-a", 0))
    store.create_cluster(spec("beta", "team-b", 2))
    store.create_cluster(spec("gamma", "team-b", 1))  # never decided: no per-cluster sample
    recorded = [decision("alpha", desired=5, allocated=4, target=3, current=2), decision("beta")]
    store.record_decisions(recorded)
    store.record_observations(
        [
            ObservationRow(cluster="alpha", observed_at=time.time(), desired=5, current=2),
            ObservationRow(cluster="beta", observed_at=time.time(), error="connection refused"),
        ]
    )
    found = await samples(app_over(store))
    labels = {"alpha": ("team-a", "0"), "beta": ("team-b", "2")}
    for d in recorded:
        group, tier = labels[d.cluster]
        key = {"cluster": d.cluster, "group": group, "tier": tier}
        assert value(found, "autoscaler_cluster_desired_workers", **key) == d.desired
        assert value(found, "autoscaler_cluster_allocated_workers", **key) == d.allocated
        assert value(found, "autoscaler_cluster_target_workers", **key) == d.target
        assert value(found, "autoscaler_cluster_current_workers", **key) == d.current
        assert value(found, "autoscaler_cluster_dominant_share", **key) == d.dominant_share
    alpha = {"cluster": "alpha", "group": "team-a", "tier": "0"}
    beta = {"cluster": "beta", "group": "team-b", "tier": "2"}
    assert value(found, "autoscaler_cluster_observation_error", **alpha) == 0
    assert value(found, "autoscaler_cluster_observation_error", **beta) == 1
    assert not [key for key in found if ("cluster", "gamma") in key[1]]
    assert value(found, "autoscaler_clusters") == 3
    assert value(found, "autoscaler_store_up") == 1
    assert value(found, "autoscaler_pool_capacity", resource="cpu") == 40
    assert value(found, "autoscaler_pool_capacity", resource="memory") == 100 * GIB
    # allocated workers x worker size: (4 + 2) x (2 cpu, 4 GiB)
    assert value(found, "autoscaler_pool_allocated", resource="cpu") == 12
    assert value(found, "autoscaler_pool_allocated", resource="memory") == 24 * GIB


async def test_a_cycle_is_counted_by_stage_reason_and_error(store: Store) -> None:
    app = app_over(store)
    report = CycleReport(
        started_at=1_800_000_000.0,
        stages={"load": 0.003, "observe": 0.2, "plan": 0.01},
        decisions=[
            decision("a", "satisfied"),
            decision("b", "satisfied"),
            decision("c", "fair_share_limited_by_cpu", error="BackendError: quota"),
        ],
        observations={
            "a": observation("a"),
            "b": observation("b", "timeout"),
            "c": observation("c", "HTTP 500"),
        },
    )
    app.state.metrics.observe_cycle(report)
    app.state.metrics.observe_cycle(report)
    found = await samples(app)
    assert value(found, "autoscaler_cycles_total") == 2
    assert value(found, "autoscaler_last_cycle_timestamp_seconds") == report.started_at
    assert value(found, "autoscaler_decisions_total", reason="satisfied") == 4
    assert value(found, "autoscaler_decisions_total", reason="fair_share_limited_by_cpu") == 2
    assert value(found, "autoscaler_backend_errors_total") == 2
    assert value(found, "autoscaler_observation_errors_total") == 4
    for stage, seconds in report.stages.items():
        assert value(found, "autoscaler_cycle_stage_seconds_count", stage=stage) == 2
        assert value(found, "autoscaler_cycle_stage_seconds_sum", stage=stage) == pytest.approx(
            2 * seconds
        )
        assert value(found, "autoscaler_cycle_stage_seconds_bucket", stage=stage, le="+Inf") == 2
    assert value(found, "autoscaler_cycle_stage_seconds_bucket", stage="observe", le="0.1") == 0
    assert value(found, "autoscaler_cycle_stage_seconds_bucket", stage="observe", le="0.25") == 2


async def test_each_app_has_its_own_registry(store: Store) -> None:
    first, second = app_over(store), app_over(store)
    first.state.metrics.observe_cycle(CycleReport(started_at=1.0, stages={"load": 0.1}))
    assert value(await samples(first), "autoscaler_cycles_total") == 1
    assert value(await samples(second), "autoscaler_cycles_total") == 0


async def test_the_service_counts_its_real_loop_cycles(
    tmp_path: Path, dask_scheduler_factory: Callable[..., SchedulerProcess]
) -> None:
    scheduler = dask_scheduler_factory()
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        database_url=f"sqlite:///{tmp_path / 'service.db'}",
        dry_run=True,
        interval=3600,  # the first cycle runs at start, the next one after the test
    )
    store = Store(settings.database_url)
    store.upgrade()
    store.set_pool(Pool(capacity={"cpu": 8, "memory": 32 * GIB}))
    store.create_cluster(spec("real", "team-a", 0, url=scheduler.http_url))
    app = create_service(settings, store)
    try:
        async with app.router.lifespan_context(app):
            loop = app.state.loop
            deadline = time.monotonic() + 60
            while loop.last is None:
                assert time.monotonic() < deadline, "the loop never ran a cycle"
                await asyncio.sleep(0.1)
            found = await samples(app)
            (d,) = loop.last.decisions
    finally:
        store.close()
    assert value(found, "autoscaler_cycles_total") == 1
    assert value(found, "autoscaler_decisions_total", reason=d.reason) == 1
    assert value(found, "autoscaler_observation_errors_total") == 0
    for stage in loop.last.stages:
        assert value(found, "autoscaler_cycle_stage_seconds_count", stage=stage) == 1
    key = {"cluster": "real", "group": "team-a", "tier": "0"}
    assert value(found, "autoscaler_cluster_desired_workers", **key) == d.desired
    assert value(found, "autoscaler_cluster_allocated_workers", **key) == d.allocated


async def test_metrics_need_no_token_unless_configured(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await scrape(app_over(store))).status_code == 200
    monkeypatch.setenv("AUTOSCALER_METRICS_AUTH", "true")
    guarded = app_over(store)
    group_token = store.create_token("team-a")
    assert (await scrape(guarded)).status_code == 401
    assert (await scrape(guarded, "wrong")).status_code == 401
    assert (await scrape(guarded, group_token)).status_code == 403
    answer = await scrape(guarded, ADMIN_TOKEN)
    assert answer.status_code == 200 and "autoscaler_store_up 1.0" in answer.text


async def test_the_grafana_dashboard_queries_only_exported_metrics(store: Store) -> None:
    app = app_over(store)
    store.set_pool(Pool(capacity={"cpu": 4}))
    store.create_cluster(
        ClusterSpec(name="a", scheduler_url="http://x", backend="local", worker={"cpu": 1})
    )
    store.record_decisions([decision("a", error="BackendError: x")])
    store.record_observations([ObservationRow(cluster="a", observed_at=1.0)])
    app.state.metrics.observe_cycle(
        CycleReport(started_at=1.0, stages={"load": 0.1}, decisions=[decision("a")])
    )
    exported = {name for name, _ in await samples(app)}
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    assert exprs
    for expr in exprs:
        used = set(re.findall(r"\bautoscaler_[a-z_]+", expr))
        assert used and used <= exported, (expr, used - exported)
