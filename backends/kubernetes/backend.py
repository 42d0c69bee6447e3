"""The ``kubernetes`` backend; see the package docstring for conventions and failure modes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast

import httpx
from pydantic import Field

from autoscaler.domain import ClusterSpec
from autoscaler.errors import BackendError, ConfigError, RetireMismatch
from autoscaler.settings import Settings
from backends.base import Backend, BackendOptions, ScaleResult
from backends.kubernetes.client import Json, KubeClient, ObjectGone, RetryPolicy, Sleep
from backends.kubernetes.pods import (
    DELETION_COST,
    RETIRED_COST,
    PodInfo,
    match_workers,
    parse_pods,
    selector_string,
)
from backends.registry import register
from backends.retire import RetireOutcome, SchedulerAPI, SchedulerWorker, choose_retirees

log = logging.getLogger(__name__)

Kind = Literal["Deployment", "StatefulSet", "DaskWorkerGroup", "DaskCluster"]
DASK_GROUP = "/apis/kubernetes.dask.org/v1"
PATHS: dict[str, str] = {
    "Deployment": "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
    "StatefulSet": "/apis/apps/v1/namespaces/{namespace}/statefulsets/{name}",
    "DaskWorkerGroup": DASK_GROUP + "/namespaces/{namespace}/daskworkergroups/{name}",
    "DaskCluster": DASK_GROUP + "/namespaces/{namespace}/daskclusters/{name}",
}
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$"


class KubernetesOptions(BackendOptions):
    kind: Kind = Field(
        description="What runs the workers: Deployment, StatefulSet, "
        "DaskWorkerGroup or DaskCluster (the Dask operator's resources)."
    )
    name: str = Field(pattern=DNS_SUBDOMAIN, description="The object's name.")
    namespace: str = Field("default", pattern=DNS_LABEL, description="The object's namespace.")


@dataclass(frozen=True, slots=True, kw_only=True)
class Workload:
    """The observed state of a cluster's workers on Kubernetes."""

    replicas: int  # asked of the platform
    pods: tuple[PodInfo, ...]  # live pods, oldest first (StatefulSet: by ordinal)

    @property
    def ready(self) -> tuple[PodInfo, ...]:
        return tuple(p for p in self.pods if p.ready)

    def result(
        self,
        target: int,
        current: int,
        replicas: int,
        *,
        message: str,
        retired: tuple[str, ...] = (),
        skipped: tuple[str, ...] = (),
    ) -> ScaleResult:
        """``current`` Ready workers of ``replicas`` asked; the rest are pending."""
        pending = max(0, replicas - current)
        stuck = sum(p.unschedulable for p in self.pods)
        return ScaleResult(
            target=target,
            current=current,
            retired=retired,
            skipped=skipped,
            message=message,
            pending=pending,
            unschedulable=min(pending, stuck),
        )


@register
class KubernetesBackend(Backend):
    """Scales a Deployment, a StatefulSet or a Dask operator resource; see the package docs."""

    name = "kubernetes"
    Options = KubernetesOptions

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        retry: RetryPolicy | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        super().__init__(settings, http=http)
        self.kube = KubeClient(settings, retry=retry, sleep=sleep)

    def _options(self, cluster: ClusterSpec) -> KubernetesOptions:
        return cast(KubernetesOptions, self.parse_options(cluster.backend_options))

    # --- reading ---------------------------------------------------------------------------
    async def observe(self, cluster: ClusterSpec) -> Workload:
        """Replicas asked and live pods of ``cluster``'s workload."""
        options = self._options(cluster)
        path = PATHS[options.kind].format(namespace=options.namespace, name=options.name)
        try:
            if options.kind in ("Deployment", "StatefulSet"):
                scale = await self.kube.get(path + "/scale")
                replicas = int(scale.get("spec", {}).get("replicas") or 0)
                selector = str(scale.get("status", {}).get("selector") or "")
                if not selector:
                    raise BackendError(f"{options.kind} {options.name} has no pod selector")
            else:
                body = await self.kube.get(path)
                replicas = int(body.get("spec", {}).get("worker", {}).get("replicas") or 0)
                group = options.name
                if options.kind == "DaskCluster":
                    group = f"{options.name}-default"  # the operator's default worker group
                selector = selector_string(
                    {"dask.org/component": "worker", "dask.org/workergroup-name": group}
                )
        except ObjectGone as exc:
            raise ObjectGone(
                f"{options.kind} {options.namespace}/{options.name} of cluster "
                f"{cluster.name!r} does not exist (deleted, or wrong backend_options): {exc}"
            ) from exc
        listed = await self.kube.get(
            f"/api/v1/namespaces/{options.namespace}/pods", params={"labelSelector": selector}
        )
        pods = parse_pods(listed.get("items") or ())
        if options.kind == "StatefulSet":
            pods.sort(key=lambda p: p.ordinal)
        return Workload(replicas=replicas, pods=tuple(pods))

    async def workers(self, cluster: ClusterSpec) -> tuple[str, ...]:
        """Names of the Ready worker pods (pods still starting are counted as pending)."""
        return tuple(p.name for p in (await self.observe(cluster)).ready)

    async def _refuse_if_autoscaled(self, options: KubernetesOptions) -> None:
        """The operator's DaskAutoscaler would fight us over the replicas: refuse."""
        path = PATHS[options.kind].format(namespace=options.namespace, name=options.name)
        dask_cluster = options.name
        if options.kind == "DaskWorkerGroup":
            dask_cluster = str((await self.kube.get(path)).get("spec", {}).get("cluster", ""))
        listed = await self.kube.get(f"{DASK_GROUP}/namespaces/{options.namespace}/daskautoscalers")
        for item in listed.get("items") or ():
            if item.get("spec", {}).get("cluster") == dask_cluster:
                raise BackendError(
                    f"DaskCluster {options.namespace}/{dask_cluster} has a DaskAutoscaler "
                    f"({item.get('metadata', {}).get('name')}); delete it to let this service "
                    "scale the cluster, or unregister the cluster here: the two would fight"
                )

    # --- writing ---------------------------------------------------------------------------
    async def _set_replicas(
        self, options: KubernetesOptions, compute: Callable[[int], int | None]
    ) -> int:
        """Set replicas to ``compute(current replicas)`` (None: leave), re-reading on 409."""
        path = PATHS[options.kind].format(namespace=options.namespace, name=options.name)
        dask = options.kind in ("DaskWorkerGroup", "DaskCluster")
        if not dask:
            path += "/scale"

        def change(obj: Json) -> Json | None:
            spec = obj.get("spec", {})
            now = int((spec.get("worker", {}) if dask else spec).get("replicas") or 0)
            wanted = compute(now)
            if wanted is None or wanted == now:
                return None
            return {"spec": {"worker": {"replicas": wanted}} if dask else {"replicas": wanted}}

        written = await self.kube.update(path, change)
        spec = (written or {}).get("spec", {})
        return int((spec.get("worker", {}) if dask else spec).get("replicas") or 0)

    async def _mark(
        self, options: KubernetesOptions, pods: tuple[PodInfo, ...], doomed: set[str]
    ) -> None:
        """Lowest deletion cost on the doomed pods; our mark removed from any other pod."""
        for pod in pods:
            if pod.name in doomed and pod.deletion_cost != RETIRED_COST:
                cost: str | None = RETIRED_COST
            elif pod.name not in doomed and pod.deletion_cost == RETIRED_COST:
                cost = None  # a stale mark from an earlier, interrupted scale-down
            else:
                continue
            await self.kube.patch(
                f"/api/v1/namespaces/{options.namespace}/pods/{pod.name}",
                {"metadata": {"annotations": {DELETION_COST: cost}}},
            )

    async def _start_workers(self, cluster: ClusterSpec, count: int) -> tuple[str, ...]:
        """Raise the replicas by ``count``; pod names are chosen by the controller."""
        await self._set_replicas(self._options(cluster), lambda now: now + count)
        return ()

    async def _remove_workers(self, cluster: ClusterSpec, names: tuple[str, ...]) -> None:
        """Remove these pods: mark them deletion-cost lowest, lower the replicas by as many.

        For a StatefulSet they must be its highest ordinals; for the Dask operator's kinds the
        operator picks (and retires) the workers itself.
        """
        options = self._options(cluster)
        state = await self.observe(cluster)
        if options.kind == "Deployment":
            await self._mark(options, state.pods, set(names))
        await self._set_replicas(options, lambda now: max(0, now - len(names)))

    # --- scaling ---------------------------------------------------------------------------
    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        if target < 0:
            raise ConfigError(f"target must be >= 0, got {target}")
        options = self._options(cluster)
        dask = options.kind in ("DaskWorkerGroup", "DaskCluster")
        async with self._locks.setdefault(cluster.name, asyncio.Lock()):
            if dask:
                await self._refuse_if_autoscaled(options)
            state = await self.observe(cluster)
            if dask or target >= state.replicas:
                # Scale-up, or the operator's kinds, which retire workers themselves.
                replicas, note = state.replicas, "at target"
                if target != state.replicas:
                    replicas = await self._set_replicas(options, lambda now: target)
                    note = f"replicas {state.replicas} -> {replicas}"
                return state.result(target, len(state.ready), replicas, message=note)
            if options.kind == "StatefulSet":
                return await self._shrink_statefulset(cluster, options, state, target)
            return await self._shrink_deployment(cluster, options, state, target)

    def _scheduler(self, cluster: ClusterSpec) -> SchedulerAPI:
        timeout = self._options(cluster).retire_timeout
        return SchedulerAPI(self.http, cluster.scheduler_url, retire_timeout=timeout)

    async def _known(
        self, cluster: ClusterSpec, pods: Sequence[PodInfo]
    ) -> dict[str, SchedulerWorker]:
        """The scheduler's worker in each of ``pods``, by pod name."""
        if not pods:
            return {}
        return match_workers(pods, await self._scheduler(cluster).get_workers())

    async def _shrink_deployment(
        self, cluster: ClusterSpec, options: KubernetesOptions, state: Workload, target: int
    ) -> ScaleResult:
        surplus = state.replicas - target
        missing = min(surplus, max(0, state.replicas - len(state.pods)))  # not even created
        waiting = sorted(
            (p for p in state.pods if not p.ready),
            key=lambda p: (p.unschedulable, p.created, p.name),
            reverse=True,  # unschedulable first, then the newest
        )[: surplus - missing]
        need = surplus - missing - len(waiting)  # running workers that must be retired
        outcome = RetireOutcome(asked=(), retired=(), skipped=())
        pod_of: dict[str, str] = {}
        if need:
            matched = await self._known(cluster, state.ready)
            pod_of = {w.address: name for name, w in matched.items()}
            chosen = choose_retirees([p.name for p in state.ready], matched, need)
            outcome = await self._scheduler(cluster).retire(chosen)
        retired_pods = {pod_of[w.address] for w in outcome.retired}
        doomed = {p.name for p in waiting} | retired_pods
        drop = missing + len(doomed)
        await self._mark(options, state.pods, doomed)
        replicas = state.replicas
        if drop:
            replicas = await self._set_replicas(options, lambda now: max(0, now - drop))
        return self._shrunk(cluster, state, target, replicas, outcome, doomed, need)

    async def _shrink_statefulset(
        self, cluster: ClusterSpec, options: KubernetesOptions, state: Workload, target: int
    ) -> ScaleResult:
        by_ordinal = {p.ordinal: p for p in state.pods}
        tail = [p for p in state.pods if p.ordinal >= target]  # the controller removes these
        running = [p for p in tail if p.ready]
        matched = await self._known(cluster, running)
        pod_of = {w.address: name for name, w in matched.items()}
        outcome = await self._scheduler(cluster).retire(list(matched.values()))
        retired_pods = {pod_of[w.address] for w in outcome.retired}
        new = target
        for ordinal in range(state.replicas - 1, target - 1, -1):
            pod = by_ordinal.get(ordinal)
            if pod is not None and pod.ready and pod.name not in retired_pods:
                new = ordinal + 1  # a worker the scheduler kept (or does not know yet) stays
                break
        planned = state.replicas
        replicas = await self._set_replicas(
            options,
            lambda now: new if now == planned else None,  # changed meanwhile: next cycle
        )
        doomed = {p.name for p in tail if p.ordinal >= replicas}
        result = self._shrunk(cluster, state, target, replicas, outcome, doomed, len(running))
        stranded = sorted(retired_pods - doomed)
        if stranded:
            note = f"; retired but below a kept worker, restarting: {', '.join(stranded)}"
            result = replace(result, message=result.message + note)
        return result

    def _shrunk(
        self,
        cluster: ClusterSpec,
        state: Workload,
        target: int,
        replicas: int,
        outcome: RetireOutcome,
        doomed: set[str],
        asked: int,
    ) -> ScaleResult:
        current = sum(p.ready and p.name not in doomed for p in state.pods)
        retired = tuple(w.name for w in outcome.retired)
        notes = [f"replicas {state.replicas} -> {replicas}", f"retired {len(retired)}"]
        if len(outcome.asked) < asked:
            notes.append(f"{asked - len(outcome.asked)} running pods not known to the scheduler")
        if outcome.skipped:
            kept = ", ".join(w.name for w in outcome.skipped)
            notes.append(f"scheduler kept {kept} (unique data could not move)")
        if outcome.unexpected:
            raise RetireMismatch(
                f"scheduler {cluster.scheduler_url} retired workers that were not asked: "
                f"{', '.join(outcome.unexpected)}; removed only {', '.join(retired) or 'none'}"
            )
        return state.result(
            target,
            current,
            replicas,
            retired=retired,
            skipped=tuple(w.name for w in outcome.skipped),
            message="; ".join(notes),
        )

    async def close(self) -> None:
        await self.kube.close()
        await super().close()
