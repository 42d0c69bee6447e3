"""Measures of one run, in total and over time (downsampled series for the plots).

- utilization: resources held (running, starting and retiring workers) over the pool; the
  peak granted counts only running and starting workers (what the policy handed out);
- Jain's index of weighted dominant shares among the clusters that want more than they have;
- allocated over desired: per cluster, the mean of min(allocated, wanted) / wanted over the
  steps it wants workers (wanted = Dask's desired clamped to minimum and maximum);
- unmet demand: worker-seconds wanted but not running;
- job completion (finish - arrival), task completion (fluid: a job's tasks finish evenly between
  its first possible task end and its finish), pipeline makespan;
- churn: scale actions, workers started, retired, starts cancelled;
- time from demand to workers: from the step a cluster starts wanting more than it runs, to
  the first step it runs more (an episode that ends without that counts as never served).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from drf.metrics import dominant_shares
from simulations.demand import Floats, Workload
from simulations.model import Run
from simulations.policies import Fleet

SIZES = {"small": 8, "medium": 64}  # by cluster maximum: <= 8, <= 64, larger
SERIES_POINTS = 600
TOP = 10  # clusters or groups drawn separately in the stacked plots


def _stats(values: Floats, weights: Floats | None = None) -> dict[str, float | int]:
    values = np.asarray(values, dtype=np.float64)
    if not values.size:
        return {"count": 0, "mean": float("nan"), "p50": float("nan"), "p95": float("nan")}
    if weights is None:
        p50, p95 = np.percentile(values, [50, 95])
        return {
            "count": int(values.size),
            "mean": float(values.mean()),
            "p50": float(p50),
            "p95": float(p95),
        }
    order = np.argsort(values)
    values, weights = values[order], weights[order]
    cumulative = np.cumsum(weights) / weights.sum()
    p50, p95 = (
        float(values[min(np.searchsorted(cumulative, q), values.size - 1)]) for q in (0.5, 0.95)
    )
    return {
        "count": round(float(weights.sum())),
        "mean": float(np.average(values, weights=weights)),
        "p50": p50,
        "p95": p95,
    }


def jain_over_time(fleet: Fleet, active: np.ndarray, wants: np.ndarray) -> Floats:
    """Jain's index per step over the weighted dominant shares of the clusters that want more;
    NaN when fewer than two want more. Equals ``drf.metrics.jain_index`` row by row."""
    per_worker = dominant_shares(fleet.capacity, fleet.worker, np.ones(fleet.size), fleet.weight)
    x = np.where(wants, active * per_worker, 0.0)
    count = wants.sum(axis=1)
    total, squares = x.sum(axis=1), (x * x).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        index = np.where(squares > 0, total**2 / (count * squares), 1.0)
    return np.where(count >= 2, index, np.nan)


def _time_to_workers(wanted: np.ndarray, running: np.ndarray, step: float) -> tuple[Floats, int]:
    delays: list[Floats] = []
    never = 0
    gap = wanted > running
    for c in range(gap.shape[1]):
        g = np.r_[False, gap[:, c], False].astype(np.int8)
        edges = np.diff(g)
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        if not starts.size:
            continue
        column = running[:, c]
        rises = np.flatnonzero(np.diff(column) > 0) + 1
        # first rise above the level at the episode's start, at the latest when it ends
        levels = column[starts]
        found = np.full(starts.size, -1)
        for k, (s, e) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
            later = rises[np.searchsorted(rises, s, side="right") :]
            later = later[later <= min(e, column.size - 1)]
            above = later[column[later] > levels[k]]
            if above.size:
                found[k] = above[0]
        served = found >= 0
        never += int((~served).sum())
        delays.append((found[served] - starts[served]) * step)
    return (np.concatenate(delays) if delays else np.zeros(0)), never


def _downsample(values: np.ndarray, points: int = SERIES_POINTS) -> np.ndarray:
    """Means over equal windows along the first axis, at most ``points`` of them."""
    width = max(1, -(-values.shape[0] // points))
    usable = values.shape[0] // width * width
    head = values[:usable].reshape(usable // width, width, *values.shape[1:])
    if not np.isnan(head).any():
        return head.mean(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows with no value stay NaN
        return np.nanmean(head, axis=1)


def summarize(run: Run, fleet: Fleet, workload: Workload) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's figures (JSON-ready) and its series for plots."""
    dt = run.step
    active = run.running.astype(np.int64) + run.starting
    held = active + run.retiring
    wanted = fleet.wanted(run.desired.astype(np.int64))
    resources = fleet.pool.resources
    used = held @ fleet.worker  # (T, R)
    utilization = used / fleet.capacity
    wants = wanted > active
    jain = jain_over_time(fleet, active, wants)
    granted = (active @ fleet.worker) / fleet.capacity  # what the policy handed out
    over = (granted > 1 + 1e-9).any(axis=1)

    wanting = wanted > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(wanting, np.minimum(active, wanted) / wanted, 0.0).sum(axis=0)
        per_cluster = ratio / wanting.sum(axis=0)  # NaN for a cluster that never wanted any
    unmet = (np.maximum(wanted - run.running, 0) * dt).sum(axis=0)

    finished = ~np.isnan(run.finished)
    latency = run.finished - run.arrival
    size_class = np.select(
        [fleet.maximum <= SIZES["small"], fleet.maximum <= SIZES["medium"]],
        ["small", "medium"],
        "large",
    )[workload.cluster]
    jobs = {
        **_stats(latency[finished]),
        "arrived": int(run.joined.sum()),
        "completed": int(finished.sum()),
        "by_size": {
            s: _stats(latency[finished & (size_class == s)]) for s in ("small", "medium", "large")
        },
    }
    k = 5
    first_end = np.minimum(run.started + workload.duration, run.finished)[finished]
    quantiles = (np.arange(k) + 0.5) / k
    ends = first_end[:, None] + (run.finished[finished] - first_end)[:, None] * quantiles
    task_latency = (ends - run.arrival[finished][:, None]).ravel()
    task_weight = np.repeat(workload.tasks[finished] / k, k)

    pipelines: dict[str, Any] = {"runs": 0}
    if (workload.pipeline >= 0).any():
        runs = workload.pipeline[workload.pipeline >= 0]
        count = int(runs.max()) + 1
        begin = np.full(count, np.nan)
        end = np.full(count, -np.inf)
        members = np.flatnonzero(workload.pipeline >= 0)
        np.fmin.at(begin, runs, run.arrival[members])
        np.maximum.at(end, runs, np.where(finished[members], run.finished[members], np.inf))
        done = np.isfinite(end) & ~np.isnan(begin)
        pipelines = {"runs": count, **_stats(end[done] - begin[done])}
        pipelines["completed"] = pipelines.pop("count")

    delays, never = _time_to_workers(wanted, run.running, dt)
    hours = run.desired.shape[0] * dt / 3600
    names = fleet.names
    small = fleet.size <= 50
    summary: dict[str, Any] = {
        "utilization": {r: float(utilization[:, i].mean()) for i, r in enumerate(resources)},
        "peak_utilization": {r: float(utilization[:, i].max()) for i, r in enumerate(resources)},
        "peak_granted": {r: float(granted[:, i].max()) for i, r in enumerate(resources)},
        "overcommitted_seconds": float(over.sum() * dt),
        "busy_cpu": float(
            run.work_done.sum() / (fleet.capacity[resources.index("cpu")] * dt * len(run.work_done))
        )
        if "cpu" in resources
        else None,
        "jain": {
            "mean": float(np.nanmean(jain)) if np.isfinite(jain).any() else None,
            "min": float(np.nanmin(jain)) if np.isfinite(jain).any() else None,
            "contended_steps": int(np.isfinite(jain).sum()),
        },
        "allocated_over_desired": {
            "mean": float(np.nanmean(per_cluster)) if np.isfinite(per_cluster).any() else None,
            "min": float(np.nanmin(per_cluster)) if np.isfinite(per_cluster).any() else None,
            **(
                {"per_cluster": dict(zip(names, map(float, per_cluster), strict=True))}
                if small
                else {}
            ),
        },
        "unmet_worker_seconds": {
            "total": float(unmet.sum()),
            **({"per_cluster": dict(zip(names, map(float, unmet), strict=True))} if small else {}),
        },
        "jobs": jobs,
        "tasks": _stats(task_latency, task_weight),
        "pipelines": pipelines,
        "scale": {
            "actions": run.scale_actions,
            "workers_started": run.workers_started,
            "workers_retired": run.workers_retired,
            "starts_cancelled": run.starts_cancelled,
            "actions_per_cluster_hour": run.scale_actions / max(fleet.size * hours, 1e-9),
        },
        "time_to_workers": {**_stats(delays), "never": never},
        "work": {"arrived": run.arrived_work, "done": run.done_work, "backlog": run.backlog_work},
        "reasons": run.reasons,
    }
    if small:
        summary["mean_workers"] = dict(zip(names, map(float, active.mean(axis=0)), strict=True))
        summary["final_workers"] = dict(zip(names, map(int, active[-1]), strict=True))
    return summary, _series(run, fleet, active, utilization, jain, latency[finished])


def _series(
    run: Run,
    fleet: Fleet,
    active: np.ndarray,
    utilization: np.ndarray,
    jain: Floats,
    latency: Floats,
) -> dict[str, Any]:
    """Downsampled series: shares of the pool stacked by cluster (or group when many)."""
    per_worker = dominant_shares(fleet.capacity, fleet.worker, np.ones(fleet.size))
    share = active * per_worker  # unweighted dominant share of the pool each cluster holds
    weighted = share / fleet.weight
    labels = fleet.names if fleet.size <= TOP else fleet.groups
    keys, inverse = np.unique(np.array(labels), return_inverse=True)
    stacked = np.zeros((share.shape[0], keys.size))
    np.add.at(stacked.T, inverse, share.T)
    top = np.argsort(-stacked.sum(axis=0), kind="stable")[:TOP]
    rest = np.delete(stacked, top, axis=1).sum(axis=1, keepdims=True)
    names = [str(keys[i]) for i in top] + (["other"] if keys.size > TOP else [])
    stack = np.hstack([stacked[:, top], rest]) if keys.size > TOP else stacked[:, top]
    lines = np.zeros((share.shape[0], keys.size))
    np.maximum.at(lines.T, inverse, weighted.T)  # per group: its largest weighted share
    return {
        "time": _downsample(np.arange(active.shape[0]) * run.step),
        "utilization": _downsample(utilization),
        "jain": _downsample(jain),
        "stack_labels": names,
        "stack": _downsample(stack),
        "share_labels": [str(keys[i]) for i in top],
        "shares": _downsample(lines[:, top]),
        "completion": np.sort(latency),
    }
