"""Worker pods as the backend sees them, and how they map to the scheduler's workers.

Naming convention (either is enough, the first wins):

1. the worker is started with ``--name $(POD_NAME)``, ``POD_NAME`` coming from the downward API
   (``valueFrom: {fieldRef: {fieldPath: metadata.name}}``): the scheduler's worker name is the
   pod name;
2. otherwise the host of the worker's address (``tcp://10.1.2.3:40000``) is the pod's IP.
   A pod IP shared by several workers (``--nworkers``, host network) is ambiguous and matches
   nothing: such workers are never chosen for retirement.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from backends.retire import SchedulerWorker

# The ReplicaSet controller removes the pods of lowest cost first (after unready ones).
DELETION_COST = "controller.kubernetes.io/pod-deletion-cost"
RETIRED_COST = str(-(2**31))  # int32 minimum: below any cost a user may have set


@dataclass(frozen=True, slots=True, kw_only=True)
class PodInfo:
    name: str
    created: str  # RFC 3339, sorts chronologically
    ips: tuple[str, ...]
    ready: bool
    unschedulable: bool  # the scheduler said it cannot place it
    deletion_cost: str | None

    @property
    def ordinal(self) -> int:
        """A StatefulSet pod's ordinal (``name-<ordinal>``), -1 if it has none."""
        match = re.search(r"-(\d+)$", self.name)
        return int(match.group(1)) if match else -1


def parse_pods(items: Iterable[Mapping[str, Any]]) -> list[PodInfo]:
    """Live pods (not terminating, not finished), oldest first."""
    pods = []
    for item in items:
        meta, status = item.get("metadata", {}), item.get("status", {})
        if meta.get("deletionTimestamp") or status.get("phase") in ("Succeeded", "Failed"):
            continue
        conditions = {c.get("type"): c for c in status.get("conditions") or ()}
        scheduled = conditions.get("PodScheduled", {})
        ips = [entry.get("ip") for entry in status.get("podIPs") or ()] + [status.get("podIP")]
        pods.append(
            PodInfo(
                name=str(meta.get("name", "")),
                created=str(meta.get("creationTimestamp", "")),
                ips=tuple(dict.fromkeys(ip for ip in ips if ip)),
                ready=status.get("phase") == "Running"
                and conditions.get("Ready", {}).get("status") == "True",
                unschedulable=scheduled.get("status") == "False"
                and scheduled.get("reason") == "Unschedulable",
                deletion_cost=(meta.get("annotations") or {}).get(DELETION_COST),
            )
        )
    pods.sort(key=lambda p: (p.created, p.name))
    return pods


def match_workers(
    pods: Iterable[PodInfo], known: Mapping[str, SchedulerWorker]
) -> dict[str, SchedulerWorker]:
    """The scheduler's worker in each pod, by pod name (pods without one are left out)."""
    by_host: dict[str, list[SchedulerWorker]] = defaultdict(list)
    for worker in known.values():
        try:
            host = urlsplit(worker.address).hostname
        except ValueError:
            host = None
        if host:
            by_host[host].append(worker)
    matched = {}
    for pod in pods:
        if pod.name in known:
            matched[pod.name] = known[pod.name]
            continue
        candidates = [w for ip in pod.ips for w in by_host.get(ip, ())]
        if len(candidates) == 1:
            matched[pod.name] = candidates[0]
    return matched


def selector_string(match_labels: Mapping[str, str]) -> str:
    return ",".join(f"{key}={value}" for key, value in sorted(match_labels.items()))
