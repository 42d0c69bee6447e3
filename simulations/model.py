"""The simulated clusters and clock: numpy over clusters, one iteration per step, no sleeping.

Each step (``now = t * step``):
1. jobs arriving by now join their cluster's FIFO backlog (task-seconds and tasks);
2. started workers whose start-up delay is over begin running, retired ones leave the pool;
3. each cluster asks for workers as Dask's adaptive target does: its backlog over a target
   duration (5 s), capped by its runnable tasks, in threads, divided by threads per worker;
4. the policy sets targets from (desired, running + starting); growth starts workers, a
   shrink cancels starting workers first, then retires running ones (they hold the pool for
   the retire delay, outside the planner's view, as a retired Dask worker whose pod lingers);
5. running workers process the backlog for one step at ``threads`` tasks each, never more
   tasks at once than remain (a fluid model of tasks); jobs complete in order, and a finished
   pipeline step releases the next one.

Delays are rounded up to whole steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from simulations.demand import Floats, Workload, build_workload
from simulations.policies import Fleet, make_policy
from simulations.scenario import Scenario

Progress = Callable[[int], None]  # called with the number of steps done since the last call
Matrix = np.typing.NDArray[np.int32]


@dataclass(slots=True)
class Run:
    """What happened in one simulation: per step and cluster, and per job."""

    policy: str
    step: float
    desired: Matrix  # (T, N) Dask's desired workers, before any clamp
    running: Matrix  # (T, N) after the step's decision
    starting: Matrix  # (T, N)
    retiring: Matrix  # (T, N)
    work_done: Floats  # (T,) task-seconds done in each step, all clusters
    arrival: Floats  # (J,) NaN for pipeline steps never released
    joined: np.typing.NDArray[np.bool_]  # (J,) reached its cluster's backlog before the end
    started: Floats  # (J,) first work on the job, NaN if none
    finished: Floats  # (J,) NaN if not finished by the end
    arrived_work: float = 0.0
    done_work: float = 0.0
    backlog_work: float = 0.0
    workers_started: int = 0
    workers_retired: int = 0
    starts_cancelled: int = 0
    scale_actions: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def _steps(delay: float, step: float) -> int:
    return max(0, math.ceil(delay / step - 1e-9))


def simulate(
    scenario: Scenario,
    policy: str,
    *,
    fleet: Fleet | None = None,
    workload: Workload | None = None,
    progress: Progress | None = None,
) -> Run:
    """Run ``policy`` over the scenario; deterministic for the scenario's seed."""
    fleet = fleet or Fleet.from_scenario(scenario)
    workload = workload or build_workload(scenario)
    policy_object = make_policy(policy, fleet, scenario)
    decide = policy_object.decide
    dt, steps, n = scenario.step, scenario.steps, fleet.size
    up, down = _steps(scenario.startup_delay, dt), _steps(scenario.retire_delay, dt)
    pending = np.zeros((up + 1, n), dtype=np.int64)  # starting workers by arrival slot
    leaving = np.zeros((down + 1, n), dtype=np.int64)  # retiring workers by exit slot
    running, starting, retiring = (np.zeros(n, dtype=np.int64) for _ in range(3))
    backlog, tasks_left = np.zeros(n), np.zeros(n)  # task-seconds, tasks
    arrived_cum, done_cum = np.zeros(n), np.zeros(n)
    threads, target_duration = fleet.threads, scenario.target_duration

    run = Run(
        policy=policy,
        step=dt,
        desired=np.zeros((steps, n), dtype=np.int32),
        running=np.zeros((steps, n), dtype=np.int32),
        starting=np.zeros((steps, n), dtype=np.int32),
        retiring=np.zeros((steps, n), dtype=np.int32),
        work_done=np.zeros(steps),
        arrival=workload.arrival.copy(),
        joined=np.zeros(workload.size, dtype=bool),
        started=np.full(workload.size, np.nan),
        finished=np.full(workload.size, np.nan),
    )
    known = np.flatnonzero(~np.isnan(workload.arrival))
    join = np.ceil(workload.arrival[known] / dt - 1e-9).astype(np.int64)
    order = np.argsort(join, kind="stable")
    static_jobs, static_join = known[order], join[order]
    cursor = 0
    released: list[int] = []
    job_work = workload.tasks * workload.duration
    # Jobs in flight: id, cluster, cumulative work of the cluster at their start and end.
    fl_job = np.zeros(0, dtype=np.int64)
    fl_cluster = np.zeros(0, dtype=np.int64)
    fl_begin, fl_end = np.zeros(0), np.zeros(0)

    for t in range(steps):
        now = t * dt
        stop = int(np.searchsorted(static_join, t, side="right"))
        jobs = static_jobs[cursor:stop]
        cursor = stop
        if released:
            jobs = np.concatenate([jobs, np.array(released, dtype=np.int64)])
            released = []
        if jobs.size:
            run.joined[jobs] = True
            cluster = workload.cluster[jobs]
            by_cluster = np.argsort(cluster, kind="stable")
            jobs, cluster = jobs[by_cluster], cluster[by_cluster]
            work = job_work[jobs]
            ahead = np.cumsum(work) - work
            first = np.r_[True, cluster[1:] != cluster[:-1]]
            ahead -= ahead[first][np.cumsum(first) - 1]  # work ahead of it within this step
            begin = arrived_cum[cluster] + ahead
            np.add.at(arrived_cum, cluster, work)
            np.add.at(backlog, cluster, work)
            np.add.at(tasks_left, cluster, workload.tasks[jobs])
            fl_job = np.concatenate([fl_job, jobs])
            fl_cluster = np.concatenate([fl_cluster, cluster])
            fl_begin = np.concatenate([fl_begin, begin])
            fl_end = np.concatenate([fl_end, begin + work])

        slot = t % (up + 1)
        running += pending[slot]
        starting -= pending[slot]
        pending[slot] = 0
        retiring -= leaving[t % (down + 1)]
        leaving[t % (down + 1)] = 0

        runnable = np.ceil(tasks_left - 1e-9)
        wanted_threads = np.ceil(np.minimum(backlog / target_duration, runnable) - 1e-9)
        desired = np.ceil(np.maximum(wanted_threads, 0) / threads - 1e-9).astype(np.int64)
        current = running + starting
        delta = decide(now, desired, current) - current
        grow, shrink = np.maximum(delta, 0), np.maximum(-delta, 0)
        run.scale_actions += int(np.count_nonzero(delta))
        run.workers_started += int(grow.sum())
        if up:
            pending[(t + up) % (up + 1)] += grow
            starting += grow
        else:
            running += grow
        if shrink.any():
            for ahead_slots in range(up, 0, -1):  # cancel the latest starts first
                s = (t + ahead_slots) % (up + 1)
                cancel = np.minimum(pending[s], shrink)
                pending[s] -= cancel
                starting -= cancel
                shrink -= cancel
                run.starts_cancelled += int(cancel.sum())
            running -= shrink
            run.workers_retired += int(shrink.sum())
            if down:
                retiring += shrink
                leaving[(t + down) % (down + 1)] += shrink
        run.desired[t], run.running[t] = desired, running
        run.starting[t], run.retiring[t] = starting, retiring

        work = np.minimum(backlog, dt * np.minimum(running * threads, runnable))
        emptied = backlog - work <= 1e-9 * np.maximum(backlog, 1.0)
        work = np.where(emptied, backlog, work)
        with np.errstate(divide="ignore", invalid="ignore"):
            tasks_left = np.where(emptied, 0.0, tasks_left * (1 - work / backlog))
        backlog = np.where(emptied, 0.0, backlog - work)
        before = done_cum[fl_cluster]
        done_cum += work
        run.work_done[t] = float(work.sum())

        if fl_job.size:
            after = done_cum[fl_cluster]
            gained = np.maximum(after - before, 1e-300)
            tolerance = 1e-9 * np.maximum(fl_end, 1.0)
            began = np.isnan(run.started[fl_job]) & (after > fl_begin + tolerance)
            at = now + dt * np.clip((fl_begin - before) / gained, 0.0, 1.0)
            run.started[fl_job[began]] = at[began]
            done = after >= fl_end - tolerance
            if done.any():
                finish = now + dt * np.clip((fl_end - before) / gained, 0.0, 1.0)
                done_jobs = fl_job[done]
                run.finished[done_jobs] = finish[done]
                unstarted = np.isnan(run.started[done_jobs])
                run.started[done_jobs[unstarted]] = at[done][unstarted]
                followers = workload.successor[done_jobs]
                has = followers >= 0
                run.arrival[followers[has]] = finish[done][has]
                released = followers[has].tolist()
                keep = ~done
                fl_job, fl_cluster = fl_job[keep], fl_cluster[keep]
                fl_begin, fl_end = fl_begin[keep], fl_end[keep]
        if progress is not None and (t + 1) % 256 == 0:
            progress(256)
    if progress is not None and steps % 256:
        progress(steps % 256)
    run.arrived_work = float(arrived_cum.sum())
    run.done_work = float(done_cum.sum())
    run.backlog_work = float(backlog.sum())
    run.reasons = dict(sorted(policy_object.reasons.items()))
    return run
