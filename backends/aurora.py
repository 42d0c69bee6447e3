"""The ``aurora`` backend: Dask workers as the instances of one Apache Aurora service job.

Options (``backend_options``): ``url`` (the Aurora scheduler, ``http(s)://host:port``; any
scheduler of the quorum: a follower redirects to the leader), ``role``, ``environment`` and
``job`` (the job key), plus the common ``retire_timeout``.

The job is created beforehand (``aurora job create``, a service job) with at least one
instance and a process running ``dask worker <scheduler address> --name {{mesos.instance}}``:
**a worker's name is its instance id**, which is how a worker the Dask scheduler retired maps
back to the instance to kill. Talks to the scheduler's Thrift API (``POST {url}/api``, TJSON):

- ``workers``: ``getTasksWithoutConfigs(TaskQuery{jobKeys, statuses})``, one name per instance,
  by instance id (start order). Counted: RUNNING (the worker is up) and the states of an
  instance that is starting or being replaced by Aurora: PENDING, THROTTLED, ASSIGNED,
  STARTING, RESTARTING, DRAINING, PREEMPTING, PARTITIONED; ``instances()`` tells the running
  apart from the pending. KILLING is not counted (that instance is going away for good), nor
  are the terminal states.
- scale-up: ``addInstances(InstanceKey{job, id}, count)`` clones the config of an active
  instance (the newest running one); Aurora numbers the new instances after the highest id.
- scale-down: the base class has the Dask scheduler retire workers first; then
  ``killTasks(job, {their instance ids}, message)`` kills exactly those (also a replacement
  task Aurora may already have started for an instance whose worker exited: a service job
  restarts its tasks, which is why the instance must be killed). An empty instance set would
  make Aurora kill the whole job: it is never sent.
- Aurora cannot add an instance to a job that has none (``addInstances`` needs one to clone),
  so a target of 0 is served as 1: the job keeps one instance. Register Aurora clusters with
  ``minimum >= 1``.

Failures: JOB_UPDATING_ERROR (an update is in progress) and ERROR_TRANSIENT are retried a few
times with backoff, then raised as ``TransientBackendError``; so are an unreachable scheduler
(dead leader, refused connection, timeout) and HTTP 429/5xx (503: no leader elected). Other
response codes and HTTP errors raise ``BackendError`` with Aurora's messages (``details``).
Transport errors are not retried here: a failed ``addInstances`` may have been applied, and
the loop's next ``scale`` recounts the instances before acting again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

import httpx
from pydantic import Field, field_validator

from autoscaler.domain import ClusterSpec
from autoscaler.errors import BackendError, TransientBackendError
from autoscaler.settings import Settings
from backends import aurora_thrift as thrift
from backends.aurora_thrift import ResponseCode, Status
from backends.base import Backend, BackendOptions, ScaleResult
from backends.registry import register
from backends.retire import translated_http_errors

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/vnd.apache.thrift.json"
REQUEST_TIMEOUT = 10.0
RETRY_DELAYS = (0.25, 0.5, 1.0)  # seconds before each retry of a retryable response code
RETRYABLE = frozenset({ResponseCode.JOB_UPDATING_ERROR, ResponseCode.ERROR_TRANSIENT})
RUNNING_STATES = frozenset({Status.RUNNING})
PENDING_STATES = frozenset(
    {
        Status.PENDING,
        Status.THROTTLED,
        Status.ASSIGNED,
        Status.STARTING,
        Status.RESTARTING,  # the instances below are being replaced, under the same id
        Status.DRAINING,
        Status.PREEMPTING,
        Status.PARTITIONED,
    }
)
COUNTED_STATES = RUNNING_STATES | PENDING_STATES
INSTANCE_NAME = re.compile(r"[0-9]+")
IDENTIFIER = re.compile(r"^[\w\-\.]+$")  # api.thrift GOOD_IDENTIFIER_PATTERN


class AuroraOptions(BackendOptions):
    url: str = Field(description="The Aurora scheduler, http(s)://host:port.")
    role: str = Field(description="Role of the job key.")
    environment: str = Field(description="Environment of the job key.")
    job: str = Field(description="Name of the job key.")

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as exc:
            raise ValueError(f"must look like http(s)://host:port, got {value!r}") from exc
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must look like http(s)://host:port, got {value!r}")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must have no query, fragment or credentials")
        return value.rstrip("/")

    @field_validator("role", "environment", "job")
    @classmethod
    def _check_identifier(cls, value: str) -> str:
        if not IDENTIFIER.match(value):
            raise ValueError(f"must match {IDENTIFIER.pattern}, got {value!r}")
        return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Instance:
    """One counted instance of the job."""

    instance_id: int
    status: int
    task_id: str

    @property
    def name(self) -> str:
        return str(self.instance_id)

    @property
    def running(self) -> bool:
        return self.status in RUNNING_STATES


@register
class AuroraBackend(Backend):
    name = "aurora"
    Options = AuroraOptions

    def __init__(
        self,
        settings: Settings,
        *,
        http: httpx.AsyncClient | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
    ) -> None:
        super().__init__(settings, http=http)
        self.retry_delays = tuple(retry_delays)
        self._seqids = itertools.count(1)

    # --- interface -----------------------------------------------------------------------
    async def workers(self, cluster: ClusterSpec) -> tuple[str, ...]:
        return tuple(i.name for i in await self.instances(cluster))

    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        if target != 0:
            return await super().scale(cluster, target)
        result = await super().scale(cluster, 1)
        note = "Aurora keeps one instance (addInstances clones an active one)"
        return dataclasses.replace(result, target=0, message=f"{result.message}; {note}")

    async def instances(self, cluster: ClusterSpec) -> tuple[Instance, ...]:
        """The counted instances of the cluster's job, by instance id."""
        options = self._options(cluster)
        query = thrift.task_query([self._job(options)], COUNTED_STATES)
        response = await self._call(options, "getTasksWithoutConfigs", {1: ("rec", query)})
        try:
            tasks = thrift.parse_tasks(response)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BackendError(
                f"unexpected getTasksWithoutConfigs answer from {options.url}"
            ) from exc
        by_id = {
            t.instance_id: Instance(instance_id=t.instance_id, status=t.status, task_id=t.task_id)
            for t in tasks
            if t.status in COUNTED_STATES
        }
        return tuple(by_id[i] for i in sorted(by_id))

    async def _start_workers(self, cluster: ClusterSpec, count: int) -> tuple[str, ...]:
        options = self._options(cluster)
        before = await self.instances(cluster)
        if not before:
            raise BackendError(
                f"Aurora job {self._job_path(options)} has no active instance to clone: "
                "create it with at least one instance"
            )
        template = max(before, key=lambda i: (i.running, i.instance_id))
        key = thrift.instance_key(self._job(options), template.instance_id)
        await self._call(options, "addInstances", {3: ("rec", key), 4: ("i32", count)})
        known = {i.instance_id for i in before}
        return tuple(i.name for i in await self.instances(cluster) if i.instance_id not in known)

    async def _remove_workers(self, cluster: ClusterSpec, names: tuple[str, ...]) -> None:
        ids = set()
        for name in names:
            if not INSTANCE_NAME.fullmatch(name):  # only names from workers() reach here
                raise BackendError(f"worker {name!r} is not named by its Aurora instance id")
            ids.add(int(name))
        if ids:
            await self.kill_instances(
                cluster, ids, f"retired by the Dask scheduler of {cluster.name}"
            )

    async def kill_instances(self, cluster: ClusterSpec, ids: set[int], reason: str) -> None:
        """``killTasks`` for exactly ``ids``; refuses an empty set (Aurora would kill the job)."""
        if not ids:
            raise BackendError("refusing to send killTasks with no instances: Aurora kills all")
        options = self._options(cluster)
        args: thrift.Struct = {
            4: ("rec", self._job(options)),
            5: ("set", ("i32", sorted(ids))),
            6: ("str", f"dask-fairshare-autoscaler: {reason}"),
        }
        await self._call(options, "killTasks", args)
        log.info("killed instances %s of %s", sorted(ids), self._job_path(options))

    # --- Thrift over HTTP ----------------------------------------------------------------
    async def _call(
        self, options: AuroraOptions, method: str, args: thrift.Struct
    ) -> thrift.AuroraResponse:
        """Call ``method``; retry the retryable response codes; any other than OK raises."""
        for attempt in range(len(self.retry_delays) + 1):
            response = await self._post(options, method, args)
            if response.code == ResponseCode.OK:
                return response
            problem = (
                f"Aurora {method} on {self._job_path(options)} answered {response.code_name}: "
                f"{'; '.join(response.details) or 'no details'}"
            )
            if response.code not in RETRYABLE:
                raise BackendError(problem)
            if attempt == len(self.retry_delays):
                raise TransientBackendError(f"{problem} (after {attempt + 1} attempts)")
            log.info("%s; retrying", problem)
            await asyncio.sleep(self.retry_delays[attempt])
        raise AssertionError("unreachable")

    async def _post(
        self, options: AuroraOptions, method: str, args: thrift.Struct
    ) -> thrift.AuroraResponse:
        url = f"{options.url}/api"
        seqid = next(self._seqids) % 2**31
        body = thrift.encode_message(method, thrift.CALL, seqid, args)
        headers = {"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE}
        with translated_http_errors(f"Aurora {method} at {url}", "Aurora", options.url):
            answer = await self.http.post(
                url, content=body, headers=headers, timeout=REQUEST_TIMEOUT, follow_redirects=True
            )
        status = answer.status_code
        if status != 200:
            problem = f"Aurora {method} at {url} answered HTTP {status}"
            if status == 503:
                raise TransientBackendError(f"{problem} (no leading scheduler)")
            if status == 429 or status >= 500:
                raise TransientBackendError(problem)
            raise BackendError(f"{problem}: {answer.text[:200]}")
        return self._reply(method, seqid, answer.content, url)

    @staticmethod
    def _reply(method: str, seqid: int, content: bytes, url: str) -> thrift.AuroraResponse:
        try:
            name, mtype, answered_seqid, struct = thrift.decode_message(content)
        except ValueError as exc:
            raise BackendError(f"Aurora {method} at {url}: not a TJSON answer ({exc})") from exc
        if mtype == thrift.EXCEPTION:  # TApplicationException{1: message, 2: type}
            raise BackendError(f"Aurora {method} at {url} failed: {struct.get(1, 'no message')}")
        if name != method or mtype != thrift.REPLY or answered_seqid != seqid:
            raise BackendError(f"Aurora {method} at {url}: a reply to another call")
        try:
            return thrift.parse_response(cast(dict[int, Any], struct.get(0)))
        except (ValueError, TypeError, AttributeError) as exc:
            raise BackendError(f"Aurora {method} at {url}: no Response in the reply") from exc

    # --- helpers -------------------------------------------------------------------------
    def _options(self, cluster: ClusterSpec) -> AuroraOptions:
        return cast(AuroraOptions, self.parse_options(cluster.backend_options))

    @staticmethod
    def _job(options: AuroraOptions) -> thrift.Struct:
        return thrift.job_key(options.role, options.environment, options.job)

    @staticmethod
    def _job_path(options: AuroraOptions) -> str:
        return f"{options.role}/{options.environment}/{options.job}"
