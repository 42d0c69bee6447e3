"""The ``kubernetes`` backend: scales the workers of Dask clusters running on Kubernetes (kr8s).

Options (``backend_options``): ``kind`` (``Deployment``, ``StatefulSet``, ``DaskWorkerGroup`` or
``DaskCluster``), ``name``, ``namespace`` (default ``default``) and the common
``retire_timeout``. Credentials: ``AUTOSCALER_KUBECONFIG`` (a kubeconfig path) if set, else the
pod's service account (in-cluster), else the default kubeconfig (``$KUBECONFIG`` or
``~/.kube/config``). The permissions needed are in ``docs/kubernetes-role.yaml``.

Counting. ``workers()`` and ``ScaleResult.current`` count Ready worker pods only. Replicas asked
but not Ready are ``ScaleResult.pending``; of those, pods the Kubernetes scheduler reported
``Unschedulable`` are ``ScaleResult.unschedulable``: the platform cannot start them now, so a
higher target would not help.

Deployment and StatefulSet: replicas are read and set through the ``/scale`` subresource (JSON
merge patch guarded by the read ``resourceVersion``); its ``status.selector`` finds the pods.
Scale-down first drops replicas that are not running a worker (not created yet, or not Ready),
then asks the scheduler to retire running workers, and removes only the pods of the workers it
retired:

- Deployment: the scheduler retires the workers ``choose_retirees`` picks (least data, newest);
  their pods get ``controller.kubernetes.io/pod-deletion-cost: "-2147483648"`` (the lowest cost
  goes first; a mark left by an interrupted scale-down is removed from other pods), then the
  replicas are lowered by as many pods.
- StatefulSet: the controller removes the highest ordinals, so exactly the workers on ordinals
  ``>= target`` are retired; replicas are lowered down to just above the highest ordinal whose
  worker the scheduler kept (and is left alone if the replicas changed meanwhile).

Mapping pods to workers: see ``backends.kubernetes.pods`` (start workers with
``--name $(POD_NAME)`` from the downward API, or match by pod IP).

DaskWorkerGroup and DaskCluster (``kubernetes.dask.org/v1``): ``spec.worker.replicas`` is set by
merge patch and the operator retires workers itself (so this backend does not). Pods are found by
the operator's labels (``dask.org/workergroup-name``; a DaskCluster's group is
``<name>-default``). A cluster with a ``DaskAutoscaler`` is refused: the two would fight.

Failures: 409 re-reads and retries; 429, 5xx, timeouts and refused connections are retried with
backoff honouring ``Retry-After``, then raise ``TransientBackendError``; 404 raises
``BackendError`` saying the object is gone; 401/403 name the Role; 422 and other errors raise
``BackendError`` with the server's message.
"""

from backends.kubernetes.backend import KubernetesBackend, KubernetesOptions, Workload
from backends.kubernetes.client import ConflictError, KubeClient, ObjectGone, RetryPolicy

__all__ = [
    "ConflictError",
    "KubeClient",
    "KubernetesBackend",
    "KubernetesOptions",
    "ObjectGone",
    "RetryPolicy",
    "Workload",
]
