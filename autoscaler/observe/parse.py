"""Pure parsers of a scheduler's HTTP answers. Every failure is an `ObserveError`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from autoscaler.errors import ObserveError
from autoscaler.observe.model import WorkerUsage

DESIRED = "dask_scheduler_desired_workers"
WORKERS = "dask_scheduler_workers"
TASKS = "dask_scheduler_tasks"

_FAMILIES = (DESIRED.encode(), WORKERS.encode(), TASKS.encode())

# A parsed sample line: (metric name, "state" label or None, value).
Sample = tuple[str, str | None, float]


# /json/counts.json keys that are task counts, and the task state each one stands for.
_COUNTS_TASK_STATES = {
    "processing": "processing",
    "memory": "memory",
    "waiting": "waiting",
    "released": "released",
    "erred": "erred",
    "unrunnable": "no-worker",
}


@dataclass(frozen=True, slots=True)
class SchedulerState:
    """The part of one poll the loop needs."""

    desired: int | None  # clamped; None when the scheduler does not report it
    workers: dict[str, int]
    tasks: dict[str, int]


def clamp_desired(value: float, max_desired: int) -> int:
    if math.isnan(value):
        raise ObserveError("desired workers is NaN")
    if value >= max_desired:
        return max_desired
    return max(0, int(value))


def _count(value: float, what: str) -> int:
    if not math.isfinite(value) or value < 0:
        raise ObserveError(f"{what} is not a count: {value!r}")
    return int(value)


def _run_patterns(name: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    run = rb"(?:" + re.escape(name) + rb"[ {][^\n]*(?:\n|\Z))+"
    # The literal "\nname" prefix lets `search` skip through the payload at C speed.
    return re.compile(run), re.compile(rb"\n(" + run + rb")")


_RUNS = tuple((name.decode(), *_run_patterns(name)) for name in _FAMILIES)


class MetricsParser:
    """Parse /metrics payloads with prometheus_client's parser, each series once.

    The parser costs ~10 us per labelled line (~2 ms for a whole busy payload), and the
    series of the three families are few and the same everywhere
    (``dask_scheduler_workers{state="paused"}``...). So the first line of each series goes
    through prometheus_client's parser, which gives its name and ``state`` label; when the
    parsed value equals the text after the line's last blank read with ``float()`` (what the
    parser does for a value without a timestamp), the series is memoised and its later lines
    only have their value read. Lines of any other shape are parsed whole every time.
    """

    def __init__(self, *, max_desired: int, memo_size: int = 10_000) -> None:
        self.max_desired = max_desired
        self.memo_size = memo_size
        self._states: dict[bytes, str | None] = {}  # series -> its "state" label

    @staticmethod
    def _parse_line(line: bytes) -> Sample:
        try:
            sample = next(iter(text_string_to_metric_families(line.decode()))).samples[0]
        except (ValueError, IndexError, StopIteration, UnicodeDecodeError) as exc:
            raise ObserveError(f"unparseable /metrics line {line[:80]!r}: {exc}") from exc
        return sample.name, sample.labels.get("state"), sample.value

    def _learn(self, family: str, line: bytes, series: bytes, text: bytes) -> Sample:
        name, state, value = self._parse_line(line)
        try:
            same = float(text) == value or (math.isnan(value) and math.isnan(float(text)))
        except ValueError:
            same = False
        if same and name == family:
            if len(self._states) >= self.memo_size:
                self._states.clear()
            self._states[series] = state
        return name, state, value

    def parse(self, body: bytes) -> SchedulerState:
        """Read desired workers, workers and tasks by state from a /metrics payload.

        Only the sample lines of the three families are read. The text format keeps all
        lines of a family together, so a family is one run of lines starting with its name
        followed by "{" or a blank (which leaves out HELP/TYPE lines and
        dask_scheduler_workers_added_total): one regular expression per family finds it. A
        busy scheduler's payload has ~160 lines; the three families, ~13.
        """
        desired: float | None = None
        workers: dict[str, int] = {}
        tasks: dict[str, int] = {}
        memo = self._states
        pos = 0  # Dask writes the families in this order: look after the previous one first
        for family, at_start, after_newline in _RUNS:
            match = (
                at_start.match(body)
                or after_newline.search(body, pos)
                or (after_newline.search(body) if pos else None)
            )
            if match is None:
                continue
            pos = match.end() - 1
            into = workers if family == WORKERS else tasks
            for line in match.group(match.re.groups).splitlines():
                series, _, text = line.rpartition(b" ")
                if series in memo:
                    state = memo[series]
                    try:
                        value = float(text)
                    except ValueError as exc:
                        raise ObserveError(f"unparseable /metrics line {line[:80]!r}") from exc
                else:
                    name, state, value = self._learn(family, line, series, text)
                    if name != family:
                        continue
                if family == DESIRED:
                    desired = value
                elif state is not None:
                    if not 0 <= value < math.inf:  # NaN too
                        raise ObserveError(f"{family}{{state={state!r}}} is not a count: {value}")
                    into[state] = int(value)
        if not workers:
            raise ObserveError(f"/metrics has no {WORKERS}: not a Dask scheduler?")
        clamped = None if desired is None else clamp_desired(desired, self.max_desired)
        return SchedulerState(desired=clamped, workers=workers, tasks=tasks)


def parse_metrics(body: bytes, *, max_desired: int) -> SchedulerState:
    """Parse one /metrics payload (no memo across calls)."""
    return MetricsParser(max_desired=max_desired).parse(body)


def _load_json_object(body: bytes, path: str) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ObserveError(f"unparseable {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ObserveError(f"unexpected {path}: not a JSON object")
    return data


def _number(data: dict[str, Any], key: str, path: str) -> float:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ObserveError(f"unexpected {path}: {key!r} is {value!r}")
    return value


def parse_counts(body: bytes, *, max_desired: int) -> SchedulerState:
    """Read /json/counts.json, the fallback when /metrics is missing.

    Workers come back in the older label set (``connected``, ``idle``, ``saturated``);
    tasks as processing/memory/waiting/released/erred/no-worker. ``desired_workers`` is
    only there in recent versions of distributed; otherwise ``desired`` is None.
    """
    path = "/json/counts.json"
    data = _load_json_object(body, path)
    workers = {
        "connected": _count(_number(data, "workers", path), "workers"),
        "idle": _count(_number(data, "idle", path), "idle workers"),
        "saturated": _count(_number(data, "saturated", path), "saturated workers"),
    }
    tasks = {
        state: _count(_number(data, key, path), key)
        for key, state in _COUNTS_TASK_STATES.items()
        if key in data
    }
    desired = None
    if "desired_workers" in data:
        desired = clamp_desired(_number(data, "desired_workers", path), max_desired)
    return SchedulerState(desired=desired, workers=workers, tasks=tasks)


def parse_identity(body: bytes) -> tuple[WorkerUsage, ...]:
    """Read each worker's nthreads, memory_limit and memory in use from /json/identity.json.

    Shape (distributed 2026.8): ``{"workers": {address: {"name", "nthreads",
    "memory_limit", "metrics": {"memory": rss_bytes, ...}, ...}}, ...}``. A worker that has
    not sent a heartbeat yet may lack ``metrics.memory``: it counts as 0.
    """
    path = "/json/identity.json"
    data = _load_json_object(body, path)
    workers = data.get("workers")
    if not isinstance(workers, dict):
        raise ObserveError(f"unexpected {path}: no 'workers' object")
    usage = []
    for address, info in workers.items():
        if not isinstance(info, dict):
            raise ObserveError(f"unexpected {path}: worker {address!r} is not an object")
        metrics = info.get("metrics")
        memory = metrics.get("memory", 0) if isinstance(metrics, dict) else 0
        if isinstance(memory, bool) or not isinstance(memory, int | float):
            memory = 0
        usage.append(
            WorkerUsage(
                name=str(info.get("name", address)),
                address=str(address),
                nthreads=int(_number(info, "nthreads", path)),
                memory_limit=int(_number(info, "memory_limit", path)),
                memory=int(memory),
            )
        )
    return tuple(usage)
