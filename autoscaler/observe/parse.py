"""Pure parsers of a scheduler's HTTP answers. Every failure is an `ObserveError`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from prometheus_client.parser import text_string_to_metric_families

from autoscaler.errors import ObserveError
from autoscaler.observe.model import WorkerUsage

DESIRED = "dask_scheduler_desired_workers"
WORKERS = "dask_scheduler_workers"
TASKS = "dask_scheduler_tasks"

# /json/counts.json keys that are task counts, and the task state each one stands for.
_COUNTS_TASK_STATES = {
    "processing": "processing",
    "memory": "memory",
    "waiting": "waiting",
    "released": "released",
    "erred": "erred",
    "unrunnable": "no-worker",
}


class SchedulerState(NamedTuple):
    """The part of one poll the loop needs (a named tuple: built thousands of times a cycle)."""

    desired: int | None  # clamped; None when the scheduler does not report it
    workers: dict[str, int]
    tasks: dict[str, int]


def clamp_desired(value: float, max_desired: int) -> int:
    if math.isnan(value):
        raise ObserveError("desired workers is NaN")
    if value >= max_desired:
        return max_desired
    return int(value) if value > 0 else 0  # -inf too


def _count(value: float, what: str) -> int:
    if not math.isfinite(value) or value < 0:
        raise ObserveError(f"{what} is not a count: {value!r}")
    return int(value)


def _run_patterns(name: bytes) -> tuple[re.Pattern[bytes], re.Pattern[bytes]]:
    run = rb"(?:" + re.escape(name) + rb"[ {][^\n]*(?:\n|\Z))+"
    # The literal "\nname" prefix lets `search` skip through the payload at C speed.
    return re.compile(run), re.compile(rb"\n(" + run + rb")")


_RUNS = tuple((family, *_run_patterns(family.encode())) for family in (DESIRED, WORKERS, TASKS))
# A value in a layout: a count as prometheus_client writes it ("76.0"). Anything else (NaN, a
# fraction, a sign) makes the payload be read exactly, which accepts or refuses it.
_VALUE = rb"(\d+)(?:\.0)?(?:\n|\Z)"


@dataclass(frozen=True, slots=True)
class _Run:
    """The sample lines of one family, as read exactly."""

    family: str
    start: int
    lines: list[bytes]
    states: list[str | None]
    plain: bool  # every line is "series value", with float(value) the parser's value


@dataclass(frozen=True, slots=True)
class _Segment:
    """One family's sample lines in a layout: the start of the first line (with the "\n"
    before it), and all lines, each value a group, up to the end of the family."""

    needle: bytes
    pattern: re.Pattern[bytes]
    starts: tuple[bytes, bytes]  # how the family's lines start

    @classmethod
    def of(cls, run: _Run) -> _Segment:
        series = [line[: line.rindex(b" ") + 1] for line in run.lines]  # each with its blank
        name = run.family.encode()
        ends = rb"(?!" + re.escape(name) + rb"[ {])"
        return cls(
            needle=b"\n" + series[0],
            pattern=re.compile(b"".join(re.escape(s) + _VALUE for s in series) + ends),
            starts=(name + b" ", name + b"{"),
        )


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where the families' sample lines sit in a payload, learned from one read exactly.

    Each family is a `_Segment`, in payload order; a family the payload lacked must still
    be missing. Of the values read, ``desired`` is the index of desired workers; ``workers``
    and ``tasks`` are slices, with the state of each. For any payload in the text format
    (each family's lines in one group), reading by layout gives what reading exactly gives,
    or None (tests/test_parse.py).
    """

    segments: tuple[_Segment, ...]
    absent: tuple[tuple[re.Pattern[bytes], re.Pattern[bytes]], ...]  # families it lacks
    desired: int | None
    workers: tuple[slice, tuple[str, ...]]
    tasks: tuple[slice, tuple[str, ...]]

    @classmethod
    def learn(cls, runs: list[_Run]) -> _Layout | None:
        """The layout of these runs; None when a line is not plain or lacks its state."""
        runs = sorted(runs, key=lambda run: run.start)
        slots: dict[str, tuple[slice, tuple[str, ...]]] = {}
        count = 0
        for run in runs:
            states = tuple(state for state in run.states if state is not None)
            if not run.plain or (run.family != DESIRED and len(states) < len(run.states)):
                return None
            slots[run.family] = slice(count, count + len(run.lines)), states
            count += len(run.lines)
        desired = slots.get(DESIRED)
        return cls(
            segments=tuple(_Segment.of(run) for run in runs),
            absent=tuple(patterns for family, *patterns in _RUNS if family not in slots),
            desired=None if desired is None else desired[0].stop - 1,
            workers=slots[WORKERS],
            tasks=slots.get(TASKS, (slice(0), ())),
        )

    def read(self, body: bytes, max_desired: int) -> SchedulerState | None:
        """The payload's state if it is laid out so, else None."""
        found: list[bytes] = []
        end = 0
        for segment in self.segments:
            # bytes.find skips to the line at C speed; the match reads it and what follows
            if end == 0 and body.startswith(segment.needle[1:]):
                at = 0
            else:
                at = body.find(segment.needle, end - 1 if end else 0) + 1
                if at == 0 or body.startswith(segment.starts, body.rfind(b"\n", 0, at - 1) + 1):
                    return None  # not there, or the family's lines begin earlier
            match = segment.pattern.match(body, at)
            if match is None:
                return None
            found += match.groups()
            end = match.end()
        for at_start, after_newline in self.absent:
            if at_start.match(body) or after_newline.search(body):
                return None
        values = list(map(int, found))
        (worker_slice, worker_states), (task_slice, task_states) = self.workers, self.tasks
        return SchedulerState(
            desired=None if self.desired is None else min(values[self.desired], max_desired),
            workers=dict(zip(worker_states, values[worker_slice], strict=True)),
            tasks=dict(zip(task_states, values[task_slice], strict=True)),
        )


def _parse_line(line: bytes) -> tuple[str | None, float, bool]:
    """A sample line's "state" label and value, and whether it is plain: "series value",
    with ``float()`` of the value's text giving the parser's value."""
    try:
        sample = next(iter(text_string_to_metric_families(line.decode()))).samples[0]
    except (ValueError, IndexError, StopIteration, UnicodeDecodeError) as exc:
        raise ObserveError(f"unparseable /metrics line {line[:80]!r}: {exc}") from exc
    try:
        plain = sample.timestamp is None and float(line.rpartition(b" ")[2]) == sample.value
    except ValueError:
        plain = False
    return sample.labels.get("state"), sample.value, plain


class MetricsParser:
    """Read /metrics payloads: exactly at first, then by the layout learned from that.

    Only the sample lines of the three families are read. prometheus_client's parser costs
    ~10 us per line; and a scheduler's payload keeps its layout poll after poll: the same
    series (``dask_scheduler_workers{state="idle"}``...) in the same order, only the values
    change. So an unknown payload is read exactly, each line through prometheus_client's
    parser, and its layout is learned: one regular expression of those lines with each value
    a group, matched at the first line (found with ``bytes.find``), which reads all values in
    one call. A payload that does not match a known layout (lines added or moved, a
    timestamp, a value that is not a count) is read exactly, which also says what is wrong.
    """

    def __init__(self, *, max_desired: int, max_layouts: int = 16) -> None:
        self.max_desired = max_desired
        self.max_layouts = max_layouts
        self._layouts: list[_Layout] = []  # most recently learned first

    def parse(self, body: bytes) -> SchedulerState:
        """Read desired workers, workers and tasks by state from a /metrics payload."""
        for layout in self._layouts:
            state = layout.read(body, self.max_desired)
            if state is not None:
                return state
        return self._parse_exactly(body)

    def _parse_exactly(self, body: bytes) -> SchedulerState:
        """Every sample line of the three families through prometheus_client's parser.

        The text format keeps all lines of a family together, so a family is one run of
        lines starting with its name followed by "{" or a blank (which leaves out HELP/TYPE
        lines and dask_scheduler_workers_added_total): one regular expression per family
        finds it. A busy scheduler's payload has ~160 lines; the three families, ~13.
        """
        desired: float | None = None
        workers: dict[str, int] = {}
        tasks: dict[str, int] = {}
        runs: list[_Run] = []
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
            lines = match.group(match.re.groups).splitlines()
            parsed = [_parse_line(line) for line in lines]
            for state, value, _ in parsed:
                if family == DESIRED:
                    desired = value
                elif state is not None:
                    into[state] = _count(value, f"{family}{{state={state!r}}}")
            states = [state for state, _, _ in parsed]
            plain = all(plain for _, _, plain in parsed)
            runs.append(_Run(family, match.start(match.re.groups), lines, states, plain))
        if not workers:
            raise ObserveError(f"/metrics has no {WORKERS}: not a Dask scheduler?")
        clamped = None if desired is None else clamp_desired(desired, self.max_desired)
        layout = _Layout.learn(runs)
        if layout is not None:
            self._layouts = [layout, *self._layouts[: self.max_layouts - 1]]
        return SchedulerState(desired=clamped, workers=workers, tasks=tasks)


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
