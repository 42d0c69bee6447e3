"""The ``aurora`` backend: its TJSON codec on byte strings derived from the Thrift spec, and the
backend against an in-process Aurora scheduler (``tests/aurora_fake.py``) and a loopback Dask
scheduler whose workers are named by instance id."""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from autoscaler.domain import ClusterSpec
from autoscaler.errors import BackendError, ConfigError, TransientBackendError
from autoscaler.settings import Settings
from backends import aurora_thrift as thrift
from backends import registry
from backends.aurora import AuroraBackend
from backends.aurora_thrift import ResponseCode, Status
from tests.aurora_fake import FakeAurora
from tests.test_retire import FakeScheduler, fake_scheduler  # noqa: F401 - fixture

JOB = ("www-data", "prod", "dask")
CONFIG = {"process": "dask worker tcp://sched:8786 --name {{mesos.instance}}", "cpu": 1.0}
JOB_KEY_JSON = '{"1":{"str":"www-data"},"2":{"str":"prod"},"3":{"str":"dask"}}'


# --- codec ---------------------------------------------------------------------------------
def test_encode_calls_as_the_spec_writes_them() -> None:
    job = thrift.job_key(*JOB)
    kill = {4: ("rec", job), 5: ("set", ("i32", [2, 4])), 6: ("str", "bye")}
    assert thrift.encode_message("killTasks", thrift.CALL, 7, kill) == (
        b'[1,"killTasks",1,7,{"4":{"rec":' + JOB_KEY_JSON.encode() + b"},"
        b'"5":{"set":["i32",2,2,4]},"6":{"str":"bye"}}]'
    )
    add = {3: ("rec", thrift.instance_key(job, 1)), 4: ("i32", 3)}
    assert thrift.encode_message("addInstances", thrift.CALL, 1, add) == (
        b'[1,"addInstances",1,1,{"3":{"rec":{"1":{"rec":' + JOB_KEY_JSON.encode() + b"},"
        b'"2":{"i32":1}}},"4":{"i32":3}}]'
    )
    query = thrift.task_query([job], [Status.RUNNING, Status.PENDING])
    assert thrift.encode_message("getTasksWithoutConfigs", thrift.CALL, 2, {1: ("rec", query)}) == (
        b'[1,"getTasksWithoutConfigs",1,2,{"1":{"rec":{"5":{"set":["i32",2,0,2]},'
        b'"11":{"set":["rec",1,' + JOB_KEY_JSON.encode() + b"]}}}}]"
    )
    other = {
        1: ("tf", True),
        2: ("dbl", math.inf),
        3: ("i64", 2**40),
        4: ("map", ("i32", "str", {7: "x"})),
        5: ("str", 'é"\n'),
        6: ("lst", ("dbl", [0.5, math.nan])),
    }
    assert thrift.encode_message("m", thrift.ONEWAY, 0, other).decode() == (
        '[1,"m",4,0,{"1":{"tf":1},"2":{"dbl":"Infinity"},"3":{"i64":1099511627776},'
        '"4":{"map":["i32","str",1,{"7":"x"}]},"5":{"str":"é\\"\\n"},'
        '"6":{"lst":["dbl",2,0.5,"NaN"]}}]'
    )


def test_decode_a_reply_as_java_writes_it() -> None:
    reply = (
        b'[1,"getTasksWithoutConfigs",2,5,{"0":{"rec":{"1":{"i32":1},"3":{"rec":{"3":{"rec":'
        b'{"1":{"lst":["rec",1,{"1":{"rec":{"1":{"str":"t-1"},"3":{"str":"h\\u00e9\\/x\\n"},'
        b'"5":{"map":["str","i32",1,{"http":31337}]},"6":{"i32":4}}},"2":{"i32":2},'
        b'"4":{"lst":["rec",0]}}]}}}}},"5":{"rec":{"1":{"str":"c"}}},'
        b'"6":{"lst":["rec",1,{"1":{"str":"note"}}]},'
        b'"9":{"map":["i32","tf",2,{"1":1,"2":0}]},"10":{"dbl":"-Infinity"},'
        b'"11":{"i64":-9007199254740993},"12":{"set":["dbl",2,0.25,"NaN"]}}}}]'
    )
    name, mtype, seqid, body = thrift.decode_message(reply)
    assert (name, mtype, seqid) == ("getTasksWithoutConfigs", thrift.REPLY, 5)
    response = body[0]
    task = response[3][3][1][0]
    assert task == {
        1: {1: "t-1", 3: "hé/x\n", 5: {"http": 31337}, 6: 4},
        2: Status.RUNNING,
        4: [],
    }
    assert response[9] == {1: True, 2: False}
    assert response[10] == -math.inf and response[11] == -9007199254740993
    assert response[12][0] == 0.25 and math.isnan(response[12][1])
    parsed = thrift.parse_response(response)
    assert parsed.code == ResponseCode.OK and parsed.details == ("note",)
    assert thrift.parse_tasks(parsed) == [
        thrift.ScheduledTask(task_id="t-1", instance_id=4, status=Status.RUNNING)
    ]


@pytest.mark.parametrize(
    "data",
    [
        b"not json",
        b'{"1": 2}',
        b'[2,"m",2,1,{}]',  # version 2
        b'[1,"m",2,1,{"1":{"i32":"x"}}]',
        b'[1,"m",2,1,{"1":{"lst":["i32",3,1]}}]',  # count says 3
        b'[1,"m",2,1,{"1":{"zz":1}}]',  # unknown type
        b'[1,"m",2,1,{"1":{}}]',
        b'[1,"m",2,1,{"x":{"i32":1}}]',
    ],
)
def test_decode_rejects_malformed_messages(data: bytes) -> None:
    with pytest.raises(ValueError):
        thrift.decode_message(data)


@pytest.mark.parametrize(
    ("ttype", "raw"), [("i32", 2**31), ("i8", -129), ("i32", True), ("str", 5), ("x", 1)]
)
def test_encode_rejects_bad_values(ttype: str, raw: Any) -> None:
    with pytest.raises(ValueError):
        thrift.encode_value(ttype, raw)


# --- options -------------------------------------------------------------------------------
def test_options_and_registry() -> None:
    assert registry.get("aurora") is AuroraBackend
    options = {"url": "https://aurora:8081/", "role": "r", "environment": "prod", "job": "d-1"}
    assert AuroraBackend.validate_options(options)["url"] == "https://aurora:8081"
    for bad in (
        {**options, "url": "aurora:8081"},
        {**options, "url": "http://u:p@aurora"},
        {**options, "job": "no spaces"},
        {k: v for k, v in options.items() if k != "role"},
        {**options, "extra": 1},
    ):
        with pytest.raises(ConfigError):
            AuroraBackend.validate_options(bad)


# --- backend against the fakes -------------------------------------------------------------
@pytest.fixture
async def aurora() -> AsyncIterator[FakeAurora]:
    server = FakeAurora()
    await server.start()
    server.create_job(JOB, 2, CONFIG)
    yield server
    await server.stop()


@pytest.fixture
async def backend() -> AsyncIterator[AuroraBackend]:
    backend = AuroraBackend(Settings(), retry_delays=(0.01, 0.01))
    yield backend
    await backend.close()


def spec(aurora: FakeAurora, scheduler: FakeScheduler, **options: Any) -> ClusterSpec:
    job = dict(zip(("role", "environment", "job"), JOB, strict=True))
    return ClusterSpec(
        name="c",
        scheduler_url=scheduler.url,
        backend="aurora",
        backend_options={"url": aurora.url, **job, **options},
        worker={"cpu": 1},
    )


def connect(aurora: FakeAurora, scheduler: FakeScheduler) -> None:
    """Pending instances start; each running worker joins the scheduler named by its id."""
    aurora.settle()
    for instance_id in aurora.active(JOB):
        scheduler.workers[str(instance_id)] = f"tcp://10.1.0.{instance_id}:9000"


async def test_scale_up_adds_instances_cloned_from_a_running_one(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    aurora.active(JOB)[0].status = Status.STARTING  # instance 1 is the only running one
    result = await backend.scale(cluster, 5)
    assert result.started == ("2", "3", "4") and result.current == 5
    add = next(c for c in aurora.calls if c.method == "addInstances")
    assert add.args == {3: {1: {1: "www-data", 2: "prod", 3: "dask"}, 2: 1}, 4: 3}
    added = [aurora.active(JOB)[i] for i in (2, 3, 4)]
    assert all(t.status == Status.PENDING and t.config == CONFIG for t in added)
    running = {i.name: i.running for i in await backend.instances(cluster)}
    assert running == {"0": False, "1": True, "2": False, "3": False, "4": False}
    assert (await backend.scale(cluster, 5)).message == "at target"


async def test_which_task_states_count_as_workers(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    aurora.tasks.clear()
    pending = [
        Status.PENDING, Status.THROTTLED, Status.ASSIGNED, Status.STARTING, Status.RESTARTING,
        Status.DRAINING, Status.PREEMPTING, Status.PARTITIONED,
    ]  # fmt: skip
    gone = [Status.KILLING, Status.FINISHED, Status.FAILED, Status.KILLED, Status.LOST]
    for instance_id, status in enumerate([Status.RUNNING, *pending, *gone]):
        aurora._add(JOB, instance_id, status, CONFIG)
    aurora._add(JOB, 11, Status.PENDING, CONFIG)  # instance 11 (FINISHED) was rescheduled
    aurora._add(("other", "prod", "dask"), 0, Status.RUNNING, CONFIG)

    instances = await backend.instances(spec(aurora, fake_scheduler))
    assert [i.instance_id for i in instances] == [*range(9), 11]
    assert [i.instance_id for i in instances if i.running] == [0]
    assert instances[-1].task_id == aurora.tasks[-2].task_id


async def test_scale_down_kills_exactly_the_retired_workers_instances(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    await backend.scale(cluster, 6)
    connect(aurora, fake_scheduler)
    fake_scheduler.managed = {"tcp://10.1.0.5:9000": 10**6}  # instance 5 holds data
    kept = "tcp://10.1.0.4:9000"  # the scheduler cannot move instance 4's data
    fake_scheduler.retire = lambda asked: {
        a: {} for n, a in fake_scheduler.workers.items() if a in asked and a != kept
    }

    result = await backend.scale(cluster, 3)
    assert fake_scheduler.retire_requests == [[f"tcp://10.1.0.{i}:9000" for i in (4, 3, 2)]]
    assert result.retired == ("3", "2") and result.skipped == ("4",)
    assert aurora.kill_requests() == [{2, 3}]
    assert sorted(aurora.active(JOB)) == [0, 1, 2, 3, 4, 5]  # 2 and 3 are KILLING...
    assert await backend.workers(cluster) == ("0", "1", "4", "5")  # ...and no longer count
    assert result.current == 4
    aurora.settle()
    assert sorted(aurora.active(JOB)) == [0, 1, 4, 5]


async def test_no_kill_is_sent_when_the_scheduler_retires_nobody(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    connect(aurora, fake_scheduler)
    fake_scheduler.retire = lambda asked: {}  # every worker holds unique data
    result = await backend.scale(cluster, 1)
    assert fake_scheduler.retire_requests and result.retired == () and result.skipped == ("1",)

    await backend.scale(cluster, 4)  # instances 2 and 3 are pending: unknown to the scheduler
    fake_scheduler.retire_requests.clear()
    result = await backend.scale(cluster, 2)
    assert fake_scheduler.retire_requests == [["tcp://10.1.0.1:9000", "tcp://10.1.0.0:9000"]]
    assert result.retired == () and result.current == 4

    assert [c.method for c in aurora.calls if c.method == "killTasks"] == []
    assert sorted(aurora.active(JOB)) == [0, 1, 2, 3]


async def test_an_empty_kill_set_is_never_sent(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    with pytest.raises(BackendError, match="no instances"):
        await backend.kill_instances(cluster, set(), "test")
    await backend._remove_workers(cluster, ())
    with pytest.raises(BackendError, match="not named by its Aurora instance id"):
        await backend._remove_workers(cluster, ("1", "dask-2"))
    assert aurora.calls == []

    # What the guard prevents: the fake, like Aurora, kills the whole job on an empty set.
    body: thrift.Struct = {
        4: ("rec", thrift.job_key(*JOB)),
        5: ("set", ("i32", [])),
        6: ("str", "oops"),
    }
    async with httpx.AsyncClient() as http:
        await http.post(
            f"{aurora.url}/api",
            content=thrift.encode_message("killTasks", thrift.CALL, 1, body),
            headers={"Content-Type": "application/vnd.apache.thrift.json"},
        )
    assert aurora.active(JOB) and await backend.workers(cluster) == ()


async def test_the_wire_bytes_of_a_kill(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    await backend.kill_instances(spec(aurora, fake_scheduler), {1}, "why")
    assert aurora.calls[0].raw == (
        b'[1,"killTasks",1,1,{"4":{"rec":' + JOB_KEY_JSON.encode() + b"},"
        b'"5":{"set":["i32",1,1]},"6":{"str":"dask-fairshare-autoscaler: why"}}]'
    )


async def test_scale_to_zero_keeps_one_instance_to_clone(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    connect(aurora, fake_scheduler)
    result = await backend.scale(cluster, 0)
    assert (result.target, result.current, result.retired) == (0, 1, ("1",))
    assert "keeps one instance" in result.message
    assert aurora.kill_requests() == [{1}]

    await backend.kill_instances(cluster, {0}, "gone")  # someone else killed the last one
    with pytest.raises(BackendError, match="no active instance to clone"):
        await backend.scale(cluster, 2)


async def test_job_updating_is_retried_then_transient(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    aurora.updating = True
    with pytest.raises(TransientBackendError, match=r"JOB_UPDATING_ERROR.*3 attempts"):
        await backend.scale(cluster, 3)
    assert [c.code for c in aurora.calls if c.method == "addInstances"] == [5, 5, 5]

    aurora.updating = False
    aurora.fail_next = [ResponseCode.ERROR_TRANSIENT]  # the next call, a getTasks, fails once
    assert (await backend.scale(cluster, 3)).started == ("2",)


@pytest.mark.parametrize(
    "code", [ResponseCode.INVALID_REQUEST, ResponseCode.ERROR, ResponseCode.AUTH_FAILED]
)
async def test_other_response_codes_are_backend_errors(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
    code: int,
) -> None:
    aurora.fail_next = [code]
    with pytest.raises(BackendError, match="fake failure") as info:
        await backend.workers(spec(aurora, fake_scheduler))
    assert not isinstance(info.value, TransientBackendError)
    assert len(aurora.calls) == 1  # not retried


async def test_dead_leader_and_unreachable_url_are_transient(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    cluster = spec(aurora, fake_scheduler)
    with socket.socket() as sock:  # a port nobody listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransientBackendError, match="unreachable") as info:
        await backend.workers(spec(aurora, fake_scheduler, url=f"http://127.0.0.1:{port}"))
    assert isinstance(info.value.__cause__, httpx.ConnectError)

    await aurora.stop()  # the leader dies
    with pytest.raises(TransientBackendError, match="unreachable"):
        await backend.scale(cluster, 3)


async def test_a_follower_redirects_to_the_leader(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    follower = FakeAurora(redirect_to=aurora.url)
    await follower.start()
    try:
        cluster = spec(aurora, fake_scheduler, url=follower.url)
        assert (await backend.scale(cluster, 3)).started == ("2",)
        assert len(aurora.active(JOB)) == 3
    finally:
        await follower.stop()


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (503, TransientBackendError, "no leading scheduler"),
        (502, TransientBackendError, "HTTP 502"),
        (429, TransientBackendError, "HTTP 429"),
        (401, BackendError, "HTTP 401: fake HTTP failure"),
        (404, BackendError, "HTTP 404"),
        (200, BackendError, "not a TJSON answer"),
    ],
)
async def test_http_errors(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
    status: int,
    error: type[BackendError],
    message: str,
) -> None:
    aurora.http_status = status
    with pytest.raises(error, match=message) as info:
        await backend.scale(spec(aurora, fake_scheduler), 3)
    assert error is TransientBackendError or not isinstance(info.value, TransientBackendError)


async def test_a_thrift_exception_is_a_backend_error(
    aurora: FakeAurora,
    fake_scheduler: FakeScheduler,  # noqa: F811
    backend: AuroraBackend,
) -> None:
    options = backend._options(spec(aurora, fake_scheduler))
    with pytest.raises(BackendError, match="Invalid method name: 'nope'"):
        await backend._call(options, "nope", {})
