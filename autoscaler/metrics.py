"""Prometheus metrics of the service: ``GET /metrics``, in a ``CollectorRegistry`` per app.

Two sources:

- read from the store at each scrape, so they hold across restarts and match ``/allocations``:
  per cluster (labels ``cluster``, ``group``, ``tier``) the latest decision's desired,
  allocated, target and current workers, its weighted dominant share, and whether the latest
  poll of its scheduler failed; per resource the pool's capacity and allocation;
- counted after each cycle by ``Metrics.observe_cycle`` (a ``ControlLoop.on_cycle`` listener):
  seconds per stage, cycles, observation errors, backend errors, decisions by reason.

Access: ``/metrics`` needs no token by default (scrapers rarely send bearer tokens); with
``AUTOSCALER_METRICS_AUTH=true`` it needs the admin token (group tokens get 403: the metrics
cover every group).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

from autoscaler.api.deps import Credentials, SettingsDep, StoreDep, authenticate
from autoscaler.loop import CycleReport
from autoscaler.store import Store

log = logging.getLogger(__name__)

STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
CLUSTER_LABELS = ("cluster", "group", "tier")


class Metrics:
    """The registry of one app, and the listener that feeds it from the control loop."""

    def __init__(self, store: Store, *, require_token: bool = False) -> None:
        self.require_token = require_token
        self.registry = CollectorRegistry()
        self.registry.register(_StoreCollector(store))
        self.stage_seconds = Histogram(
            "autoscaler_cycle_stage_seconds",
            "Seconds spent in each stage of a control loop cycle.",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.cycles = Counter(
            "autoscaler_cycles", "Control loop cycles run.", registry=self.registry
        )
        self.last_cycle = Gauge(
            "autoscaler_last_cycle_timestamp_seconds",
            "Start of the latest cycle (unix seconds).",
            registry=self.registry,
        )
        self.observation_errors = Counter(
            "autoscaler_observation_errors",
            "Polls of a scheduler that failed.",
            registry=self.registry,
        )
        self.backend_errors = Counter(
            "autoscaler_backend_errors",
            "Decisions whose backend call failed (after retries).",
            registry=self.registry,
        )
        self.decisions = Counter(
            "autoscaler_decisions",
            "Decisions made, by reason.",
            ["reason"],
            registry=self.registry,
        )

    def observe_cycle(self, report: CycleReport) -> None:
        """Count one cycle; never raises (a loop listener must not)."""
        try:
            for stage, seconds in report.stages.items():
                self.stage_seconds.labels(stage=stage).observe(seconds)
            self.cycles.inc()
            self.last_cycle.set(report.started_at)
            self.observation_errors.inc(
                sum(o.error is not None for o in report.observations.values())
            )
            self.backend_errors.inc(sum(d.error is not None for d in report.decisions))
            for decision in report.decisions:
                self.decisions.labels(reason=decision.reason).inc()
        except Exception:
            log.exception("metrics: a cycle could not be counted")

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoreCollector(Collector):
    """Per-cluster and pool gauges, read from the store at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("autoscaler_store_up", "1 if the store answered this scrape.")
        try:
            specs = {spec.name: spec for spec in self.store.list_clusters()}
            decisions = self.store.latest_decisions()
            observations = self.store.latest_observations()
            pool = self.store.get_pool()
        except SQLAlchemyError:
            log.exception("metrics: the store could not be read")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up

        def family(name: str, doc: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(name, doc, labels=CLUSTER_LABELS)

        desired = family("autoscaler_cluster_desired_workers", "Workers the scheduler asked for.")
        allocated = family("autoscaler_cluster_allocated_workers", "The fair (DRF) allocation.")
        target = family("autoscaler_cluster_target_workers", "Workers applied after damping.")
        current = family("autoscaler_cluster_current_workers", "Workers seen when deciding.")
        share = family("autoscaler_cluster_dominant_share", "Weighted dominant share.")
        failing = family("autoscaler_cluster_observation_error", "1 if the latest poll failed.")
        used: dict[str, float] = dict.fromkeys(pool.resources if pool else (), 0.0)
        for d in decisions:
            spec = specs.get(d.cluster)
            if spec is None:
                continue
            labels = [d.cluster, spec.group, str(spec.tier)]
            desired.add_metric(labels, d.desired)
            allocated.add_metric(labels, d.allocated)
            target.add_metric(labels, d.target)
            current.add_metric(labels, d.current)
            share.add_metric(labels, d.dominant_share)
            for resource, size in spec.worker.items():
                used[resource] = used.get(resource, 0.0) + d.allocated * size
        for o in observations:
            spec = specs.get(o.cluster)
            if spec is not None:
                failing.add_metric([o.cluster, spec.group, str(spec.tier)], float(bool(o.error)))
        yield from (desired, allocated, target, current, share, failing)

        clusters = GaugeMetricFamily("autoscaler_clusters", "Registered clusters.")
        clusters.add_metric([], len(specs))
        capacity = GaugeMetricFamily(
            "autoscaler_pool_capacity", "Pool capacity (memory in bytes).", labels=["resource"]
        )
        pool_allocated = GaugeMetricFamily(
            "autoscaler_pool_allocated",
            "Pool resources allocated to clusters (allocated workers x worker size).",
            labels=["resource"],
        )
        for resource, value in pool.capacity.items() if pool else ():
            capacity.add_metric([resource], value)
        for resource, value in used.items():
            pool_allocated.add_metric([resource], value)
        yield from (clusters, capacity, pool_allocated)


def _guard(request: Request, store: StoreDep, settings: SettingsDep, creds: Credentials) -> None:
    if request.app.state.metrics.require_token:
        authenticate(store, settings, creds).require_admin("read /metrics")


router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
def metrics(
    request: Request, store: StoreDep, settings: SettingsDep, creds: Credentials
) -> Response:
    """Prometheus metrics (text exposition format); no token unless AUTOSCALER_METRICS_AUTH."""
    _guard(request, store, settings, creds)
    body = request.app.state.metrics.exposition()
    return Response(body, media_type=CONTENT_TYPE_LATEST)
