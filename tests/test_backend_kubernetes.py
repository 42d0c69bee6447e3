"""The kubernetes backend through kr8s against kmock (tests/kube_fixtures.py), a fake scheduler
API on loopback for retirement, and one full control-loop cycle against a real scheduler."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from distributed import Client

from autoscaler.demo.processes import SchedulerProcess
from autoscaler.domain import ClusterSpec, Pool
from autoscaler.errors import BackendError, ConfigError, TransientBackendError
from autoscaler.loop import ControlLoop
from autoscaler.observe import Observer
from autoscaler.settings import Settings
from autoscaler.store import Store
from backends import registry
from backends.kubernetes import KubernetesBackend, ObjectGone, RetryPolicy
from tests.kube_fixtures import (
    AUTOSCALERS,
    DASKCLUSTERS,
    DELETION_COST,
    DEPLOYMENTS,
    PODS,
    STATEFULSETS,
    WORKERGROUPS,
    Fault,
    KubeEmulator,
    kube,
)
from tests.test_retire import FakeScheduler

__all__ = ["kube"]  # the fixture, imported so that pytest finds it here
GIB = 2**30
RETIRED_COST = str(-(2**31))


@pytest.fixture
async def scheduler() -> AsyncIterator[FakeScheduler]:
    server = FakeScheduler()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def backend(kube: KubeEmulator) -> AsyncIterator[Callable[..., KubernetesBackend]]:
    """Backends on the emulator; their waits between retries are recorded, not slept."""
    made: list[KubernetesBackend] = []

    def make(**kw: Any) -> KubernetesBackend:
        waits: list[float] = []

        async def sleep(seconds: float) -> None:
            waits.append(seconds)

        instance = KubernetesBackend(Settings(kubeconfig=kube.kubeconfig), sleep=sleep, **kw)
        instance.waits = waits  # type: ignore[attr-defined]
        made.append(instance)
        return instance

    yield make
    for instance in made:
        await instance.close()


def spec(kind: str, name: str, url: str = "http://127.0.0.1:9", **kw: Any) -> ClusterSpec:
    return ClusterSpec(
        name=f"c-{name}",
        scheduler_url=url,
        backend="kubernetes",
        backend_options={"kind": kind, "name": name, **kw},
        worker={"cpu": 1, "memory": GIB},
    )


def register_workers(scheduler: FakeScheduler, pods: dict[str, Any], *, by_ip: bool = False):
    """The scheduler knows one worker per Ready pod: named after it, or only at its IP."""
    for name, pod in pods.items():
        if pod["status"].get("phase") == "Running":
            worker = f"worker-{name[::-1]}" if by_ip else name
            scheduler.workers[worker] = f"tcp://{pod['status']['podIP']}:40000"


def replicas(kube: KubeEmulator, plural: str, name: str) -> int:
    body = kube.obj(plural, name)
    return (body["spec"].get("worker") or body["spec"])["replicas"]


def marked(kube: KubeEmulator) -> set[str]:
    return {
        name
        for name, pod in kube.pods().items()
        if (pod["metadata"].get("annotations") or {}).get(DELETION_COST) == RETIRED_COST
    }


def test_options_are_checked() -> None:
    assert registry.get("kubernetes") is KubernetesBackend
    assert KubernetesBackend.validate_options({"kind": "StatefulSet", "name": "w"}) == {
        "kind": "StatefulSet",
        "name": "w",
    }
    for bad in ({"kind": "Pod", "name": "w"}, {"kind": "Deployment", "name": "W_1"}, {}):
        with pytest.raises(ConfigError, match="invalid backend_options for 'kubernetes'"):
            KubernetesBackend.validate_options(bad)


async def test_deployment_scale_up_counts_ready_pods_and_reports_pending(kube, backend) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 2)
    kube.sync(DEPLOYMENTS, "workers")
    k8s = backend()
    cluster = spec("Deployment", "workers")

    result = await k8s.scale(cluster, 5)
    assert replicas(kube, DEPLOYMENTS, "workers") == 5
    assert (result.current, result.pending, result.unschedulable) == (2, 3, 0)
    (patch,) = kube.patches("/deployments/workers/scale$")
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.data["spec"] == {"replicas": 5}
    assert patch.data["metadata"]["resourceVersion"]  # guarded by the version it read

    kube.sync(DEPLOYMENTS, "workers", ready=False)  # the cluster has no room: Unschedulable
    again = await k8s.scale(cluster, 5)
    assert (again.current, again.pending, again.unschedulable) == (2, 3, 3)
    assert len(kube.patches("/scale$")) == 1  # at target: nothing written
    ready = [n for n, p in kube.pods().items() if p["status"]["phase"] == "Running"]
    assert sorted(await k8s.workers(cluster)) == sorted(ready)


async def test_deployment_scale_down_marks_exactly_the_retired_workers_pods(
    kube, backend, scheduler
) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 4)
    kube.sync(DEPLOYMENTS, "workers")
    names = list(kube.pods())  # oldest first
    register_workers(scheduler, kube.pods())
    scheduler.managed = {scheduler.workers[names[i]]: 10**6 for i in (2, 3)}  # hold data
    stale = names[2]  # marked by an earlier, interrupted scale-down
    kube.change(
        (PODS, "default", stale), {"metadata": {"annotations": {DELETION_COST: RETIRED_COST}}}
    )

    result = await backend().scale(spec("Deployment", "workers", scheduler.url), 2)

    # least data first, then the newest: names[1] and names[0] go
    assert scheduler.retire_requests == [[scheduler_address(kube, n) for n in names[1::-1]]]
    assert sorted(result.retired) == sorted(names[:2])
    assert marked(kube) == set(names[:2])  # and the stale mark on names[2] is gone
    assert replicas(kube, DEPLOYMENTS, "workers") == 2
    # the marks were written before the replicas were lowered
    order = [r.url.path.rsplit("/", 1)[-1] for r in kube.patches("/(pods/|scale$)")]
    assert order[-1] == "scale" and order.count("scale") == 1
    kube.sync(DEPLOYMENTS, "workers")  # the ReplicaSet controller: lowest cost goes first
    assert sorted(kube.pods()) == sorted(names[2:])
    assert (result.current, result.pending) == (2, 0)


def scheduler_address(kube: KubeEmulator, pod: str) -> str:
    return f"tcp://{kube.obj(PODS, pod)['status']['podIP']}:40000"


async def test_deployment_maps_workers_by_pod_ip_and_keeps_what_the_scheduler_keeps(
    kube, backend, scheduler
) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 3)
    kube.sync(DEPLOYMENTS, "workers")
    names = list(kube.pods())
    register_workers(scheduler, kube.pods(), by_ip=True)
    kept = scheduler_address(kube, names[2])
    scheduler.retire = lambda asked: {a: {"name": "x"} for a in asked if a != kept}

    result = await backend().scale(spec("Deployment", "workers", scheduler.url), 1)

    assert scheduler.retire_requests == [[kept, scheduler_address(kube, names[1])]]
    assert result.retired == (f"worker-{names[1][::-1]}",)
    assert result.skipped == (f"worker-{names[2][::-1]}",)
    assert marked(kube) == {names[1]}
    assert replicas(kube, DEPLOYMENTS, "workers") == 2  # only the retired pod goes
    assert "unique data" in result.message


async def test_deployment_drops_pods_that_never_started_before_retiring_anyone(
    kube, backend, scheduler
) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 2)
    kube.sync(DEPLOYMENTS, "workers")
    register_workers(scheduler, kube.pods())
    running = set(kube.pods())
    kube.change((DEPLOYMENTS, "default", "workers"), {"spec": {"replicas": 4}})
    kube.sync(DEPLOYMENTS, "workers", ready=False)
    waiting = set(kube.pods()) - running

    result = await backend().scale(spec("Deployment", "workers", scheduler.url), 2)

    assert scheduler.retire_requests == []
    assert result.retired == () and replicas(kube, DEPLOYMENTS, "workers") == 2
    assert marked(kube) == waiting
    kube.sync(DEPLOYMENTS, "workers")
    assert set(kube.pods()) == running


async def test_statefulset_scales_up_then_retires_its_highest_ordinals(
    kube, backend, scheduler
) -> None:
    kube.add_workload(STATEFULSETS, "db", 2)
    kube.sync(STATEFULSETS, "db")
    k8s = backend()
    cluster = spec("StatefulSet", "db", scheduler.url)
    up = await k8s.scale(cluster, 5)
    assert replicas(kube, STATEFULSETS, "db") == 5 and up.pending == 3
    kube.sync(STATEFULSETS, "db")
    register_workers(scheduler, kube.pods())
    scheduler.managed = {scheduler.workers["db-0"]: 10**9}  # would be picked last by data size

    down = await k8s.scale(cluster, 3)
    assert scheduler.retire_requests == [[scheduler_address(kube, f"db-{i}") for i in (3, 4)]]
    assert sorted(down.retired) == ["db-3", "db-4"]
    assert replicas(kube, STATEFULSETS, "db") == 3
    assert marked(kube) == set()  # the StatefulSet controller ignores deletion costs

    # the scheduler keeps db-1 (unique data): only db-2 above it can go
    kept = scheduler.workers["db-1"]
    scheduler.retire = lambda asked: {a: {"name": "x"} for a in asked if a != kept}
    kube.sync(STATEFULSETS, "db")
    partial = await k8s.scale(cluster, 1)
    assert replicas(kube, STATEFULSETS, "db") == 2
    assert partial.retired == ("db-2",) and partial.skipped == ("db-1",)


async def test_statefulset_retired_worker_below_a_kept_one_is_reported(
    kube, backend, scheduler
) -> None:
    kube.add_workload(STATEFULSETS, "db", 3)
    kube.sync(STATEFULSETS, "db")
    register_workers(scheduler, kube.pods())
    kept = scheduler.workers["db-2"]
    scheduler.retire = lambda asked: {a: {"name": "x"} for a in asked if a != kept}
    result = await backend().scale(spec("StatefulSet", "db", scheduler.url), 1)
    assert replicas(kube, STATEFULSETS, "db") == 3  # db-2 stays, so db-1 cannot go either
    assert "restarting: db-1" in result.message


async def test_dask_workergroup_and_cluster_set_spec_worker_replicas_without_retiring(
    kube, backend, scheduler
) -> None:
    kube.add_workergroup("analysis-gpu", "analysis", 3)
    kube.sync(WORKERGROUPS, "analysis-gpu")
    kube.add(DASKCLUSTERS, {"metadata": {"name": "etl"}, "spec": {"worker": {"replicas": 1}}})
    kube.sync(DASKCLUSTERS, "etl")
    k8s = backend()

    group = spec("DaskWorkerGroup", "analysis-gpu", scheduler.url)
    down = await k8s.scale(group, 1)
    assert replicas(kube, WORKERGROUPS, "analysis-gpu") == 1
    assert (down.current, down.retired) == (3, ())  # the operator retires them, not us
    assert scheduler.retire_requests == []
    (patch,) = kube.patches("/daskworkergroups/analysis-gpu$")
    assert patch.data["spec"] == {"worker": {"replicas": 1}}
    assert kube.obj(WORKERGROUPS, "analysis-gpu")["spec"]["cluster"] == "analysis"  # merged

    up = await k8s.scale(spec("DaskCluster", "etl", scheduler.url), 4)
    assert replicas(kube, DASKCLUSTERS, "etl") == 4
    assert (up.current, up.pending) == (1, 3)  # pods of the default group etl-default
    assert len(await k8s.workers(spec("DaskCluster", "etl"))) == 1


async def test_a_cluster_with_a_dask_autoscaler_is_refused(kube, backend) -> None:
    kube.add(DASKCLUSTERS, {"metadata": {"name": "etl"}, "spec": {"worker": {"replicas": 1}}})
    kube.add_workergroup("etl-big", "etl", 1)
    kube.add_workergroup("other-big", "other", 1)
    body = {"metadata": {"name": "auto"}, "spec": {"cluster": "etl", "minimum": 1, "maximum": 9}}
    kube.add(AUTOSCALERS, body)
    k8s = backend()
    for kind, name in (("DaskCluster", "etl"), ("DaskWorkerGroup", "etl-big")):
        with pytest.raises(BackendError, match="has a DaskAutoscaler"):
            await k8s.scale(spec(kind, name), 5)
    assert kube.patches(".") == []
    await k8s.scale(spec("DaskWorkerGroup", "other-big"), 2)  # another cluster's group
    assert replicas(kube, WORKERGROUPS, "other-big") == 2


async def test_conflicts_are_read_again_and_retried(kube, backend) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 1)
    key = (DEPLOYMENTS, "default", "workers")

    def other_writer() -> None:
        kube.change(key, {"metadata": {"labels": {"touched": "yes"}}})

    kube.injected.append(Fault("PATCH", "/scale$", status=None, before=other_writer))
    kube.injected.append(Fault("PATCH", "/scale$", status=409, times=1))
    k8s = backend()
    await k8s.scale(spec("Deployment", "workers"), 3)
    assert replicas(kube, DEPLOYMENTS, "workers") == 3
    assert len(kube.patches("/scale$")) == 3  # stale version, injected 409, success
    assert k8s.waits == []  # conflicts are re-read at once, not backed off

    kube.injected.append(Fault("PATCH", "/scale$", status=409, times=99))
    with pytest.raises(TransientBackendError, match="kept conflicting"):
        await k8s.scale(spec("Deployment", "workers"), 4)
    assert replicas(kube, DEPLOYMENTS, "workers") == 3


async def test_throttling_and_server_errors_back_off_then_give_up(kube, backend) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 1)
    k8s = backend(retry=RetryPolicy(attempts=4, base_delay=0.5, max_delay=8))
    kube.injected.append(Fault("GET", "/scale$", status=429, times=2, retry_after="3"))
    kube.injected.append(Fault("PATCH", "/scale$", status=503, times=1))
    await k8s.scale(spec("Deployment", "workers"), 2)
    assert k8s.waits == [3.0, 3.0, 0.5]  # Retry-After honoured; else exponential backoff
    assert replicas(kube, DEPLOYMENTS, "workers") == 2

    k8s.waits.clear()
    kube.injected.append(Fault("GET", "/scale$", status=500, times=99))
    with pytest.raises(TransientBackendError, match=r"500.*gave up after 4 attempts"):
        await k8s.scale(spec("Deployment", "workers"), 3)
    assert k8s.waits == [0.5, 1.0, 2.0]
    kube.injected.clear()
    kube.injected.append(Fault("GET", "/scale$", status=429, times=1, retry_after="3600"))
    await k8s.workers(spec("Deployment", "workers"))
    assert k8s.waits[-1] == 8  # a huge Retry-After is capped
    assert replicas(kube, DEPLOYMENTS, "workers") == 2


async def test_missing_object_and_rejected_patch_are_plain_backend_errors(kube, backend) -> None:
    k8s = backend()
    with pytest.raises(ObjectGone, match="Deployment default/gone of cluster 'c-gone' does not"):
        await k8s.scale(spec("Deployment", "gone"), 2)
    kube.add_workload(DEPLOYMENTS, "workers", 1)
    kube.injected.append(Fault("PATCH", "/scale$", status=422))
    with pytest.raises(BackendError, match="422") as caught:
        await k8s.scale(spec("Deployment", "workers"), 2)
    assert not isinstance(caught.value, TransientBackendError)
    assert k8s.waits == []


async def test_unreachable_api_is_transient(tmp_path: Path) -> None:
    from tests.kube_fixtures import write_kubeconfig

    config = write_kubeconfig(tmp_path / "kubeconfig", "http://127.0.0.1:9")  # nothing listens
    k8s = KubernetesBackend(Settings(kubeconfig=str(config)))
    with pytest.raises(TransientBackendError, match="unreachable"):
        await k8s.workers(spec("Deployment", "workers"))
    await k8s.close()
    missing = KubernetesBackend(Settings(kubeconfig=str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="no such file"):
        await missing.workers(spec("Deployment", "workers"))


async def test_the_role_grants_every_request_the_backend_makes(kube, backend, scheduler) -> None:
    kube.add_workload(DEPLOYMENTS, "workers", 2)
    kube.add_workload(STATEFULSETS, "db", 2)
    kube.add_workergroup("etl-big", "etl", 1)
    kube.add(DASKCLUSTERS, {"metadata": {"name": "etl"}, "spec": {"worker": {"replicas": 1}}})
    for plural, name in ((DEPLOYMENTS, "workers"), (STATEFULSETS, "db")):
        kube.sync(plural, name)
    register_workers(scheduler, kube.pods())
    k8s = backend()
    for kind, name in (("Deployment", "workers"), ("StatefulSet", "db")):
        await k8s.scale(spec(kind, name, scheduler.url), 3)
        await k8s.scale(spec(kind, name, scheduler.url), 1)
    await k8s.scale(spec("DaskWorkerGroup", "etl-big"), 2)
    await k8s.scale(spec("DaskCluster", "etl"), 2)
    assert len(scheduler.retire_requests) == 2 and marked(kube)

    role = yaml.safe_load((Path(__file__).parents[1] / "docs/kubernetes-role.yaml").read_text())
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    made = set()
    for served in kube:  # kmock iterates over the requests it served
        if served.resource is None:
            continue  # /version and discovery need no Role
        method = served.method.value.upper()
        verb = "list" if served.name is None and method == "GET" else method.lower()
        sub = f"/{served.subresource}" if served.subresource else ""
        made.add((served.resource.group, served.resource.plural + sub, verb))
    assert made <= granted, made - granted
    assert {v for _, _, v in made} == {"get", "list", "patch"}


# --- a full control-loop cycle ---------------------------------------------------------------
def slow(x: int) -> int:
    time.sleep(0.5)
    return x


async def test_control_loop_scales_a_deployment_for_a_busy_scheduler(
    kube, backend, dask_scheduler: SchedulerProcess, tmp_path: Path
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'loop.db'}", kubeconfig=kube.kubeconfig
    )
    store = Store(settings.database_url)
    store.upgrade()
    store.set_pool(Pool(capacity={"cpu": 3, "memory": 8 * GIB}))
    kube.add_workload(DEPLOYMENTS, "workers", 0)
    cluster = spec("Deployment", "workers", dask_scheduler.http_url)
    store.create_cluster(cluster)
    k8s = backend()
    async with (
        Observer.from_settings(settings) as observer,
        Client(dask_scheduler.address, asynchronous=True) as client,
    ):
        loop = ControlLoop(settings, store, observer, backends={"kubernetes": k8s})
        work = client.map(slow, range(100))
        for _ in range(100):
            report = await loop.run_cycle()
            if report.observations[cluster.name].desired:
                break
            await asyncio.sleep(0.2)
        (decision,) = report.decisions
        assert decision.error is None and decision.applied
        assert decision.target == 3  # the pool's 3 CPUs, all for the only cluster
        assert replicas(kube, DEPLOYMENTS, "workers") == 3
        (stored,) = store.history(cluster.name, limit=1)
        assert stored.target == 3
        await client.cancel(work)
        await loop.stop(shutdown_backends=False)
