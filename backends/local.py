"""The ``local`` backend: real ``dask worker`` processes on this machine.

Options (``backend_options``): ``scheduler_address`` (``tcp://host:port`` or ``tls://...``,
required), ``nanny`` (default true: a nanny restarts a worker that dies, e.g. past its
memory limit), ``exit_timeout`` (seconds a retired worker may take to exit on its own before
it is terminated, default 10) and the common ``retire_timeout``. Each worker gets
``--nthreads ceil(worker["cpu"])`` (at least 1), ``--memory-limit worker["memory"]`` bytes
(dask's ``auto`` when absent) and ``--name <cluster>-<seq>``.

Ownership and crashes. Workers start in their own session (``setsid``), so a Ctrl-C in the
service's terminal or a crash of the service does not take them down behind its back. Every
worker is recorded in ``<local_state_dir>/<cluster>/<name>.json`` (default folder
``<tmp>/dask-fairshare-autoscaler-<uid>``; the worker's output goes to ``<name>.log``): pid,
start time from ``/proc/<pid>/stat``, boot id, cluster, name, scheduler. The records are the
only source of truth: ``workers()`` lists those whose process is alive *with the recorded
start time* (a reused pid never counts) and deletes the others. So a service restarted after
SIGKILL, or a second instance on the same folder, adopts the running workers and never counts
one twice. We chose this over a parent-death signal or a watchdog because a crash or an
upgrade of the service must not throw away the results the workers hold; ``shutdown()``
(SIGTERM/SIGINT of the service) is the one place where workers are ended on purpose: retired,
then stopped. A lock file per cluster refuses two instances scaling one cluster at once.

Known gap: a crash between starting a process and writing its record (microseconds) leaves
an untracked worker; the scheduler still shows it by its ``<cluster>-<seq>`` name.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import math
import os
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast
from urllib.parse import quote, unquote, urlsplit

import httpx
from pydantic import Field, field_validator

from autoscaler.domain import ClusterSpec
from autoscaler.errors import BackendError, TransientBackendError
from autoscaler.settings import Settings
from backends.base import Backend, BackendOptions, ScaleResult
from backends.registry import register
from backends.retire import SchedulerAPI

log = logging.getLogger(__name__)
SHUTDOWN_RETIRE_TIMEOUT = 30.0
TERMINATE_TIMEOUT = 10.0
SHUTDOWN_EXIT_GRACE = 10.0  # seconds a retired worker may take to exit at shutdown


class LocalOptions(BackendOptions):
    scheduler_address: str = Field(description="The scheduler's tcp:// (or tls://) address.")
    nanny: bool = Field(True, description="Run each worker under a nanny.")
    exit_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds a retired worker may take to exit."
    )

    @field_validator("scheduler_address")
    @classmethod
    def _check_address(cls, value: str) -> str:
        try:
            parts = urlsplit(value)
            port = parts.port
        except ValueError:
            port = None
        extra = parts.path not in ("", "/") or parts.query or parts.fragment
        if parts.scheme not in ("tcp", "tls") or not parts.hostname or port is None or extra:
            raise ValueError(f"must look like tcp://host:port, got {value!r}")
        return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True, slots=True, kw_only=True)
class WorkerRecord:
    """One worker process, as written to its state file."""

    cluster: str
    name: str
    seq: int
    pid: int
    start_time: int  # clock ticks since boot, field 22 of /proc/<pid>/stat
    scheduler_address: str
    scheduler_url: str
    started_at: float  # unix seconds
    boot_id: str = ""  # pids and start times only mean something within one boot


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of a process, or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[19])


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


BOOT_ID = _boot_id()


def _alive(record: WorkerRecord) -> bool:
    """Is the recorded process running: same pid, start time and boot, and not a zombie?"""
    if record.boot_id != BOOT_ID:
        return False
    stat = _proc_stat(record.pid)
    if stat is None or stat[1] != record.start_time:
        return False
    if stat[0] in ("Z", "X"):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(record.pid, os.WNOHANG)  # our own child: reap it
        return False
    return True


@register
class LocalBackend(Backend):
    """Runs ``dask worker`` processes on this machine; see the module docstring."""

    name = "local"
    Options = LocalOptions

    def __init__(self, settings: Settings, *, http: httpx.AsyncClient | None = None) -> None:
        super().__init__(settings, http=http)
        default = Path(tempfile.gettempdir()) / f"dask-fairshare-autoscaler-{os.getuid()}"
        self.state_dir = Path(settings.local_state_dir or default)
        self._next_seq: dict[str, int] = {}

    # --- records -------------------------------------------------------------------------
    def _cluster_dir(self, cluster: str) -> Path:
        return self.state_dir / quote(cluster, safe="")

    def _records(self, cluster: str) -> list[WorkerRecord]:
        """Live records of ``cluster``, oldest first; records of dead processes are deleted."""
        live = []
        folder = self._cluster_dir(cluster)
        for path in folder.glob("*.json") if folder.is_dir() else ():
            try:
                record = WorkerRecord(**json.loads(path.read_text()))
            except (OSError, ValueError, TypeError):
                log.warning("ignoring unreadable worker record %s", path)
                continue
            self._next_seq[cluster] = max(self._next_seq.get(cluster, 0), record.seq + 1)
            if _alive(record):
                live.append(record)
            else:
                path.unlink(missing_ok=True)
        return sorted(live, key=lambda r: r.seq)

    def _write(self, record: WorkerRecord) -> None:
        path = self._cluster_dir(record.cluster) / f"{quote(record.name, safe='')}.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(record)))
        os.replace(tmp, path)

    def _forget(self, record: WorkerRecord) -> None:
        path = self._cluster_dir(record.cluster) / f"{quote(record.name, safe='')}.json"
        path.unlink(missing_ok=True)
        path.with_suffix(".log").unlink(missing_ok=True)  # kept only for workers that died

    @contextlib.contextmanager
    def _exclusive(self, cluster: str) -> Iterator[None]:
        folder = self._cluster_dir(cluster)
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(folder / ".lock", "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise TransientBackendError(
                    f"another autoscaler is scaling cluster {cluster!r} ({folder})"
                ) from exc
            yield

    # --- interface -----------------------------------------------------------------------
    async def workers(self, cluster: ClusterSpec) -> tuple[str, ...]:
        records = await asyncio.to_thread(self._records, cluster.name)
        return tuple(r.name for r in records)

    async def scale(self, cluster: ClusterSpec, target: int) -> ScaleResult:
        with self._exclusive(cluster.name):
            return await super().scale(cluster, target)

    async def _start_workers(self, cluster: ClusterSpec, count: int) -> tuple[str, ...]:
        options = cast(LocalOptions, self.parse_options(cluster.backend_options))
        await asyncio.to_thread(self._records, cluster.name)  # learn the sequence numbers
        names = []
        for _ in range(count):
            seq = self._next_seq.get(cluster.name, 1)
            self._next_seq[cluster.name] = seq + 1
            record = self._spawn(cluster, options, seq)
            names.append(record.name)
        return tuple(names)

    def _spawn(self, cluster: ClusterSpec, options: LocalOptions, seq: int) -> WorkerRecord:
        name = f"{cluster.name}-{seq}"
        argv = [sys.executable, "-m", "distributed.cli.dask_worker", options.scheduler_address]
        argv += ["--name", name, "--nthreads", str(max(1, math.ceil(cluster.worker.get("cpu", 1))))]
        if cluster.worker.get("memory"):
            argv += ["--memory-limit", str(int(cluster.worker["memory"]))]
        argv += ["--nanny" if options.nanny else "--no-nanny", "--no-dashboard"]
        log_path = self._cluster_dir(cluster.name) / f"{quote(name, safe='')}.log"
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        try:
            # posix_spawn, not Popen: a Popen object dropped while its process runs warns,
            # and these processes outlive this object by design.
            pid = os.posix_spawn(
                sys.executable,
                argv,
                dict(os.environ),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_OPEN, 1, str(log_path), flags, 0o600),
                    (os.POSIX_SPAWN_DUP2, 1, 2),
                ],
                setsid=True,
            )
        except OSError as exc:
            raise BackendError(f"could not start a dask worker for {cluster.name!r}") from exc
        stat = _proc_stat(pid)
        record = WorkerRecord(
            cluster=cluster.name,
            name=name,
            seq=seq,
            pid=pid,
            start_time=stat[1] if stat else -1,
            scheduler_address=options.scheduler_address,
            scheduler_url=cluster.scheduler_url,
            started_at=time.time(),
            boot_id=BOOT_ID,
        )
        self._write(record)
        log.info("started worker %s (pid %d), log in %s", name, pid, log_path)
        return record

    async def _remove_workers(self, cluster: ClusterSpec, names: tuple[str, ...]) -> None:
        options = cast(LocalOptions, self.parse_options(cluster.backend_options))
        records = await asyncio.to_thread(self._records, cluster.name)
        wanted = set(names)
        await asyncio.gather(
            *(self._end(r, options.exit_timeout) for r in records if r.name in wanted)
        )

    async def _end(self, record: WorkerRecord, grace: float) -> None:
        """Wait ``grace`` seconds for a retired worker to exit, then terminate, then kill."""
        for sig, timeout in ((None, grace), (signal.SIGTERM, TERMINATE_TIMEOUT)):
            if sig is not None and _alive(record):
                log.info("worker %s (pid %d) lingers: %s", record.name, record.pid, sig.name)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(record.pid, sig)  # it leads its own session and group
            if await _wait_exit(record, timeout):
                self._forget(record)
                return
        if _alive(record):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
        await _wait_exit(record, TERMINATE_TIMEOUT)
        self._forget(record)

    async def shutdown(self) -> None:
        """Retire every worker this service runs through its scheduler, then stop them."""
        folders = list(self.state_dir.iterdir()) if self.state_dir.is_dir() else []
        clusters = [unquote(p.name) for p in folders if p.is_dir()]
        records = [r for c in clusters for r in await asyncio.to_thread(self._records, c)]
        retired: set[tuple[str, str]] = set()
        for url in {r.scheduler_url for r in records}:
            mine = {r.name for r in records if r.scheduler_url == url}
            api = SchedulerAPI(self.http, url, retire_timeout=SHUTDOWN_RETIRE_TIMEOUT)
            try:
                known = await api.get_workers()
                outcome = await api.retire([w for n, w in known.items() if n in mine])
                retired |= {(url, w.name) for w in outcome.retired}
            except BackendError as exc:
                log.warning("could not retire workers through %s: %s", url, exc)
        ends = [
            self._end(r, SHUTDOWN_EXIT_GRACE if (r.scheduler_url, r.name) in retired else 0.0)
            for r in records
        ]
        await asyncio.gather(*ends)
        await self.close()


async def _wait_exit(record: WorkerRecord, within: float) -> bool:
    deadline = time.monotonic() + within
    while _alive(record):
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.1)
    return True
