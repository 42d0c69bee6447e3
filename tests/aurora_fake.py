"""An in-process Aurora scheduler on loopback: ``POST /api`` in TJSON, for the calls the backend
makes, with Aurora's semantics where they matter:

- ``addInstances(InstanceKey, count)`` clones the config of the active template instance into
  new PENDING instances numbered after the highest active id; INVALID_REQUEST without one.
- ``killTasks(JobKey, instances, message)``: an empty (or absent) instance set kills every
  active task of the job, exactly like Aurora; killed tasks go to KILLING (``settle()`` moves
  them on to KILLED).
- ``getTasksWithoutConfigs(TaskQuery)`` filters on jobKeys and statuses.
- Failure modes: ``updating`` (every mutation answers JOB_UPDATING_ERROR), ``fail_next``
  (response codes to answer the next calls with), ``http_status`` (every request answers that
  HTTP status, e.g. 503 like a scheduler with no leader), ``redirect_to`` (a follower that
  redirects to the leader with 307), and ``stop()`` for a dead leader.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from backends import aurora_thrift as thrift
from backends.aurora_thrift import ResponseCode, Status

ACTIVE = {
    Status.ASSIGNED, Status.DRAINING, Status.KILLING, Status.PENDING, Status.PREEMPTING,
    Status.RESTARTING, Status.RUNNING, Status.STARTING, Status.PARTITIONED, Status.THROTTLED,
}  # fmt: skip
JobKeyTuple = tuple[str, str, str]
Answer = tuple[int, list[str], thrift.Struct | None]


@dataclass
class FakeTask:
    task_id: str
    job: JobKeyTuple
    instance_id: int
    status: int
    config: dict[str, Any]  # stands for the TaskConfig (never sent: "WithoutConfigs")


@dataclass
class Call:
    method: str
    args: dict[int, Any]
    raw: bytes
    code: int = ResponseCode.OK


@dataclass
class FakeAurora:
    tasks: list[FakeTask] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    updating: bool = False
    fail_next: list[int] = field(default_factory=list)
    http_status: int | None = None
    redirect_to: str | None = None
    on_add: Callable[[FakeTask], None] | None = None
    url: str = ""

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        app = web.Application()
        app.router.add_post("/api", self._api)
        self._runner = web.AppRunner(app)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def stop(self) -> None:
        await self._runner.cleanup()

    # --- state helpers for tests --------------------------------------------------------
    def create_job(self, job: JobKeyTuple, count: int, config: dict[str, Any]) -> None:
        for instance_id in range(count):
            self._add(job, instance_id, Status.RUNNING, config)

    def active(self, job: JobKeyTuple) -> dict[int, FakeTask]:
        return {t.instance_id: t for t in self.tasks if t.job == job and t.status in ACTIVE}

    def settle(self) -> None:
        """Killed tasks finish dying; pending ones start running."""
        for task in self.tasks:
            if task.status == Status.KILLING:
                task.status = Status.KILLED
            elif task.status == Status.PENDING:
                task.status = Status.RUNNING

    def kill_requests(self) -> list[set[int]]:
        return [set(c.args.get(5) or ()) for c in self.calls if c.method == "killTasks"]

    def _add(self, job: JobKeyTuple, instance_id: int, status: int, config: dict) -> FakeTask:
        task = FakeTask(f"task-{next(self._ids)}", job, instance_id, status, dict(config))
        self.tasks.append(task)
        return task

    # --- the API ------------------------------------------------------------------------
    async def _api(self, request: web.Request) -> web.StreamResponse:
        if self.redirect_to is not None:
            raise web.HTTPTemporaryRedirect(f"{self.redirect_to}/api")
        if self.http_status is not None:
            return web.Response(status=self.http_status, text="fake HTTP failure")
        assert request.content_type == "application/vnd.apache.thrift.json"
        raw = await request.read()
        name, mtype, seqid, args = thrift.decode_message(raw)
        assert mtype == thrift.CALL
        call = Call(name, args, raw)
        self.calls.append(call)
        handler = {
            "getTasksWithoutConfigs": self._get_tasks,
            "addInstances": self._add_instances,
            "killTasks": self._kill_tasks,
        }.get(name)
        if handler is None:
            body: thrift.Struct = {1: ("str", f"Invalid method name: '{name}'"), 2: ("i32", 1)}
            reply = thrift.encode_message(name, thrift.EXCEPTION, seqid, body)
        else:
            code, details, result = handler(args)
            if self.fail_next:
                code, details, result = self.fail_next.pop(0), ["fake failure"], None
            call.code = code
            response: thrift.Struct = {
                1: ("i32", code),
                5: ("rec", {1: ("str", "fake-cluster")}),
                6: ("lst", ("rec", [{1: ("str", d)} for d in details])),
            }
            if result is not None:
                response[3] = ("rec", result)
            reply = thrift.encode_message(name, thrift.REPLY, seqid, {0: ("rec", response)})
        return web.Response(body=reply, content_type="application/vnd.apache.thrift.json")

    def _get_tasks(self, args: dict[int, Any]) -> Answer:
        query = args[1]
        jobs = {(k[1], k[2], k[3]) for k in query.get(11, [])}
        statuses = set(query.get(5, []))
        tasks = [
            {
                1: ("rec", {1: ("str", t.task_id), 6: ("i32", t.instance_id)}),
                2: ("i32", t.status),
                3: ("i32", 0),
            }
            for t in self.tasks
            if (not jobs or t.job in jobs) and (not statuses or t.status in statuses)
        ]
        return ResponseCode.OK, [], {3: ("rec", {1: ("lst", ("rec", tasks))})}

    def _add_instances(self, args: dict[int, Any]) -> Answer:
        key, count = args[3], args[4]
        job = (key[1][1], key[1][2], key[1][3])
        if self.updating:
            return ResponseCode.JOB_UPDATING_ERROR, [f"Job {job} is updating"], None
        active = self.active(job)
        if count <= 0:
            return ResponseCode.INVALID_REQUEST, ["Instance count must be positive."], None
        if key[2] not in active:
            return ResponseCode.INVALID_REQUEST, ["No active task found for a given id."], None
        template, last = active[key[2]], max(active)
        for instance_id in range(last + 1, last + 1 + count):
            task = self._add(job, instance_id, Status.PENDING, template.config)
            if self.on_add is not None:
                self.on_add(task)
        return ResponseCode.OK, [], None

    def _kill_tasks(self, args: dict[int, Any]) -> Answer:
        job = (args[4][1], args[4][2], args[4][3])
        if self.updating:
            return ResponseCode.JOB_UPDATING_ERROR, [f"Job {job} is updating"], None
        wanted = set(args.get(5) or ())
        active = self.active(job)
        killed = [t for i, t in active.items() if (not wanted or i in wanted)]
        killed = [t for t in killed if t.status != Status.KILLING]
        for task in killed:
            task.status = Status.KILLING
        return ResponseCode.OK, [] if killed else ["No tasks found to kill"], None
