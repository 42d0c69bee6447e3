"""A Kubernetes API on loopback for the kubernetes backend's tests: kmock, plus what it lacks.

``kmock.KubernetesEmulator`` stores objects, serves discovery and merges patches. It does not
model a few things the backend relies on, added here:

- ``/version``: kmock answers v1.26, which kr8s warns about (warnings fail tests): v1.33 here;
- the ``scale`` subresource: GET answers an ``autoscaling/v1`` Scale (``spec.replicas``,
  ``status.selector``), PATCH merges into the object and answers the Scale;
- optimistic locking: every change bumps ``metadata.resourceVersion``; a patch carrying a stale
  one is refused with 409 (kmock would merge it);
- PATCH without ``application/merge-patch+json`` is refused with 415, like the real API;
- ``labelSelector`` on pod lists (kmock lists every pod of the namespace);
- faults (``Fault``): answered before kmock sees the request, because kmock changes its stored
  objects even when a reaction intercepts the request;
- controllers: ``KubeEmulator.sync`` plays the Deployment/StatefulSet/Dask operator controllers
  once: it creates or deletes pods to match the replicas (Deployment: unready pods first, then
  lowest pod-deletion-cost, then newest; StatefulSet: highest ordinals).
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp.web
import attrs
import kmock
import pytest

DEPLOYMENTS = "apps/v1/deployments"
STATEFULSETS = "apps/v1/statefulsets"
PODS = "v1/pods"
WORKERGROUPS = "kubernetes.dask.org/v1/daskworkergroups"
DASKCLUSTERS = "kubernetes.dask.org/v1/daskclusters"
AUTOSCALERS = "kubernetes.dask.org/v1/daskautoscalers"
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.1", "platform": "linux/amd64"}

Json = dict[str, Any]


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``path`` (a regex) with
    ``status``; or, with ``status=None``, run ``before`` and then serve them normally."""

    method: str
    path: str
    status: int | None = 500
    times: int = 1
    retry_after: str | None = None
    before: Callable[[], None] | None = None
    hits: int = 0

    def take(self, request: kmock.Request) -> bool:
        if self.hits >= self.times or request.method.value.upper() != self.method.upper():
            return False
        if not re.search(self.path, request.url.path):
            return False
        self.hits += 1
        return True


def status_response(code: int, message: str, headers: dict[str, str] | None = None) -> Any:
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    body |= {"message": message, "reason": {409: "Conflict", 404: "NotFound"}.get(code, "")}
    return aiohttp.web.json_response(body, status=code, headers=headers)


def labels_match(selector: str, labels: dict[str, str]) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value.lstrip("="):
            return False
    return True


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    injected: list[Fault] = attrs.field(factory=list)
    kubeconfig: str = ""
    _clock: itertools.count = attrs.field(factory=lambda: itertools.count(1))

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for plural, kind in [
            (DEPLOYMENTS, "Deployment"),
            (STATEFULSETS, "StatefulSet"),
            (PODS, "Pod"),
            (WORKERGROUPS, "DaskWorkerGroup"),
            (DASKCLUSTERS, "DaskCluster"),
            (AUTOSCALERS, "DaskAutoscaler"),
        ]:
            subresources = {"scale"} if kind in ("Deployment", "StatefulSet") else set()
            self.resources[plural] = kmock.ResourceInfo(
                kind=kind, namespaced=True, subresources=subresources
            )

    # --- serving ---------------------------------------------------------------------------
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        fault = next((f for f in self.injected if f.take(request)), None)
        if fault is not None and fault.before is not None:
            fault.before()
        if fault is not None and fault.status is not None:
            headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
            return status_response(fault.status, "injected fault", headers)
        if request.url.path.rstrip("/") == "/version":
            return aiohttp.web.json_response(VERSION)
        if request.resource is not None and request.name is not None:
            if request.method == kmock.method.PATCH:
                return await self._patch(request)
            if request.method == kmock.method.GET and request.subresource == "scale":
                obj = self._get(request)
                return aiohttp.web.json_response(scale_view(obj)) if obj else _not_found()
        if request.action == kmock.action.LIST and request.resource is not None:
            return self._list(request)
        return await super()._handle(request)

    def _get(self, request: kmock.Request) -> Json | None:
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    async def _patch(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        if not request.headers.get("Content-Type", "").startswith("application/merge-patch+json"):
            return status_response(415, "only merge patches are served here")
        key = (request.resource, request.namespace, request.name)
        if key not in self.objects or self.objects[key].deleted:
            return _not_found()
        current = self.objects[key].raw.get("metadata", {}).get("resourceVersion", "1")
        asked = (request.data.get("metadata") or {}).get("resourceVersion")
        if asked is not None and asked != current:
            return status_response(409, "the object has been modified; please apply your changes")
        self.change(key, copy.deepcopy(request.data))
        raw = self.objects[key].raw
        return aiohttp.web.json_response(scale_view(raw) if request.subresource == "scale" else raw)

    def _list(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        selector = request.params.get("labelSelector", "")
        items = [
            obj.raw
            for (resource, namespace, _), obj in self.objects.items()
            if resource == request.resource
            and request.namespace in (None, namespace)
            and not obj.deleted
            and labels_match(selector, obj.raw.get("metadata", {}).get("labels") or {})
        ]
        return aiohttp.web.json_response({"metadata": {"resourceVersion": "1"}, "items": items})

    # --- test-side helpers -----------------------------------------------------------------
    def change(self, key: tuple[Any, ...], patch: Json) -> None:
        """Merge ``patch`` into a stored object and bump its resourceVersion."""
        obj = self.objects[key]
        version = int(obj.raw.get("metadata", {}).get("resourceVersion", "1")) + 1
        patch.setdefault("metadata", {})["resourceVersion"] = str(version)
        obj.patch(patch)

    def obj(self, plural: str, name: str, namespace: str = "default") -> Json:
        return self.objects[plural, namespace, name].raw

    def add(self, plural: str, body: Json, namespace: str = "default") -> None:
        body = copy.deepcopy(body)
        body["metadata"] = {"namespace": namespace, "resourceVersion": "1"} | body["metadata"]
        self.objects[plural, namespace, body["metadata"]["name"]] = body

    def add_workload(
        self, plural: str, name: str, replicas: int, namespace: str = "default"
    ) -> dict[str, str]:
        labels = {"app": name}
        spec = {"replicas": replicas, "selector": {"matchLabels": labels}}
        body = {"metadata": {"name": name}, "spec": spec, "status": {"replicas": 0}}
        self.add(plural, body, namespace)
        return labels

    def add_workergroup(self, name: str, cluster: str, replicas: int) -> None:
        spec = {"cluster": cluster, "worker": {"replicas": replicas, "spec": {"containers": []}}}
        self.add(WORKERGROUPS, {"metadata": {"name": name}, "spec": spec})

    def pods(self, namespace: str = "default") -> dict[str, Json]:
        """Live pods by name."""
        return {
            name: obj.raw
            for (resource, ns, name), obj in self.objects.items()
            if resource == kmock.resource(PODS) and ns == namespace and not obj.deleted
        }

    def add_pod(
        self, name: str, labels: dict[str, str], *, ready: bool = True, namespace: str = "default"
    ) -> Json:
        tick = next(self._clock)
        status: Json = {"phase": "Pending"}
        status["conditions"] = [
            {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}
        ]
        if ready:
            status = {"phase": "Running", "podIP": f"10.0.{tick // 250}.{tick % 250 + 1}"}
            status["podIPs"] = [{"ip": status["podIP"]}]
            status["conditions"] = [
                {"type": "PodScheduled", "status": "True"},
                {"type": "Ready", "status": "True"},
            ]
        meta = {"name": name, "labels": labels, "creationTimestamp": f"2026-01-01T00:{tick:05d}Z"}
        self.add(PODS, {"metadata": meta, "status": status}, namespace)
        return self.obj(PODS, name, namespace)

    def sync(self, plural: str, name: str, *, ready: bool = True, ns: str = "default") -> None:
        """One pass of the workload's controller: pods created or deleted to match replicas."""
        body = self.obj(plural, name, ns)
        if plural in (WORKERGROUPS, DASKCLUSTERS):
            replicas = body["spec"]["worker"]["replicas"]
            group = name if plural == WORKERGROUPS else f"{name}-default"
            labels = {"dask.org/component": "worker", "dask.org/workergroup-name": group}
        else:
            replicas = body["spec"]["replicas"]
            labels = body["spec"]["selector"]["matchLabels"]
        selector = ",".join(f"{k}={v}" for k, v in labels.items())
        pods = [
            p for p in self.pods(ns).values() if labels_match(selector, p["metadata"]["labels"])
        ]
        if plural == STATEFULSETS:
            have = {int(p["metadata"]["name"].rsplit("-", 1)[1]) for p in pods}
            for ordinal in range(replicas):
                if ordinal not in have:
                    self.add_pod(f"{name}-{ordinal}", labels, ready=ready, namespace=ns)
            for ordinal in have:
                if ordinal >= replicas:
                    self.objects[PODS, ns, f"{name}-{ordinal}"].delete()
        else:
            for _ in range(replicas - len(pods)):
                self.add_pod(f"{name}-{next(self._clock):05x}", labels, ready=ready, namespace=ns)
            for pod in sorted(pods, key=deletion_rank)[: max(0, len(pods) - replicas)]:
                self.objects[PODS, ns, pod["metadata"]["name"]].delete()
        if plural in (DEPLOYMENTS, STATEFULSETS):
            self.change((kmock.resource(plural), ns, name), {"status": {"replicas": replicas}})

    def patches(self, path_regex: str) -> list[kmock.Request]:
        """PATCH requests served so far whose path matches ``path_regex``, in order."""
        return [
            r
            for r in self  # kmock iterates over the requests it served
            if r.method == kmock.method.PATCH and re.search(path_regex, r.url.path)
        ]


def _ready(pod: Json) -> bool:
    return any(
        c["type"] == "Ready" and c["status"] == "True"
        for c in pod.get("status", {}).get("conditions", [])
    )


def deletion_rank(pod: Json) -> tuple[bool, int, str]:
    """The ReplicaSet controller's order (simplified): unready, lowest cost, newest first."""
    cost = int((pod["metadata"].get("annotations") or {}).get(DELETION_COST, "0"))
    return (_ready(pod), cost, _negate(pod["metadata"]["creationTimestamp"]))


def _negate(text: str) -> str:
    return "".join(chr(0x10FFFF - ord(c)) for c in text)


def scale_view(obj: Json) -> Json:
    meta, spec = obj.get("metadata", {}), obj.get("spec", {})
    labels = spec.get("selector", {}).get("matchLabels", {})
    return {
        "apiVersion": "autoscaling/v1",
        "kind": "Scale",
        "metadata": {k: meta[k] for k in ("name", "namespace", "resourceVersion") if k in meta},
        "spec": {"replicas": spec.get("replicas", 0)},
        "status": {
            "replicas": obj.get("status", {}).get("replicas", 0),
            "selector": ",".join(f"{k}={v}" for k, v in labels.items()),
        },
    }


def _not_found() -> aiohttp.web.StreamResponse:
    return status_response(404, "not found")


def write_kubeconfig(path: Path, server: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kmock", "cluster": {"server": server}}],
        "users": [{"name": "tester", "user": {"token": "not-checked"}}],
        "contexts": [{"name": "kmock", "context": {"cluster": "kmock", "user": "tester"}}],
        "current-context": "kmock",
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.fixture
async def kube(tmp_path: Path) -> AsyncIterator[KubeEmulator]:
    """The emulator on a loopback port; ``kube.kubeconfig`` points at it."""
    async with KubeEmulator() as emulator, kmock.Server(emulator) as server:
        emulator.kubeconfig = str(write_kubeconfig(tmp_path / "kubeconfig", str(server.url)))
        yield emulator


__all__ = ["Fault", "KubeEmulator", "kube"]
