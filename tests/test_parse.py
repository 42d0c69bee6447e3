"""The /metrics parser: reading by a learned layout gives what reading exactly gives.

`MetricsParser` reads an unknown payload exactly (every line through prometheus_client's
parser) and learns its layout; later payloads of that layout are read by one regular
expression per family. Here a parser that has learned the layout of a real scheduler's
payload reads payloads derived from it (other values, lines added, removed or moved,
timestamps, non-count values...), and must agree with a fresh parser reading exactly:
the same state, or an error both times.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoscaler.errors import ObserveError
from autoscaler.observe.parse import MetricsParser, SchedulerState

CAPTURED = Path(__file__).parent.parent / "benchmarks" / "data" / "scheduler_metrics.txt"
BASE = CAPTURED.read_bytes()
SAMPLE = re.compile(rb"^dask_scheduler_(?:desired_workers|workers|tasks)[ {][^\n]*$", re.M)
SAMPLE_LINES = [match.start() for match in SAMPLE.finditer(BASE)]
MAX_DESIRED = 1_000


def read(parser: MetricsParser, body: bytes) -> SchedulerState | str:
    try:
        return parser.parse(body)
    except ObserveError as exc:
        return f"error: {exc}"


def learned() -> MetricsParser:
    parser = MetricsParser(max_desired=MAX_DESIRED)
    parser.parse(BASE)
    return parser


def replace_line(body: bytes, index: int, new: bytes | None) -> bytes:
    """Replace (or drop, with None) the index-th sample line of the three families."""
    start = [m.start() for m in SAMPLE.finditer(body)][index]
    end = body.index(b"\n", start) + 1
    return body[:start] + (b"" if new is None else new + b"\n") + body[end:]


def sample_line(body: bytes, index: int) -> bytes:
    start = [m.start() for m in SAMPLE.finditer(body)][index]
    return body[start : body.index(b"\n", start)]


def with_value(line: bytes, value: bytes) -> bytes:
    return line.rpartition(b" ")[0] + b" " + value


VALUES = st.one_of(
    st.integers(0, 10**6).map(lambda n: b"%d.0" % n),
    st.integers(0, 10**6).map(lambda n: b"%d" % n),
    st.sampled_from(
        [b"NaN", b"+Inf", b"-Inf", b"-1.0", b"2.5", b"1e3", b"1_0", b"0x10", b"", b"7.00"]
    ),
)
LINE_INDEX = st.integers(0, len(SAMPLE_LINES) - 1)


FAMILIES = [b"dask_scheduler_desired_workers", b"dask_scheduler_workers", b"dask_scheduler_tasks"]


def family_lines(body: bytes, family: bytes) -> re.Match[bytes] | None:
    return re.search(rb"^(?:" + family + rb"[ {][^\n]*\n)+", body, re.M)


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    """BASE changed a few times, each family's lines kept together (as the text format
    requires: "all lines for a given metric must be provided as one single group")."""
    body = BASE
    for _ in range(draw(st.integers(1, 4))):
        lines = len(SAMPLE.findall(body))
        if not lines:
            break
        index = draw(LINE_INDEX) % lines
        line = sample_line(body, index)
        kind = draw(
            st.sampled_from(["value", "drop", "duplicate", "timestamp", "blank", "foreign", "move"])
        )
        if kind == "value":
            body = replace_line(body, index, with_value(line, draw(VALUES)))
        elif kind == "drop":
            body = replace_line(body, index, None)
        elif kind == "duplicate":
            body = replace_line(body, index, line + b"\n" + line)
        elif kind == "timestamp":
            body = replace_line(body, index, line + b" 1700000000000")
        elif kind == "blank":
            body = replace_line(body, index, line.replace(b" ", b"  "))
        else:  # another metric right before or after a family, or the family moved to the end
            group = family_lines(body, draw(st.sampled_from(FAMILIES)))
            if group is None:
                continue
            start, end = group.span()
            if kind == "move":
                body = body[:start] + body[end:] + group.group()
            else:
                at = draw(st.sampled_from([start, end]))
                body = body[:at] + b"other_metric 1.0\n" + body[at:]
    return body


def test_a_learned_payload_is_read_by_its_layout() -> None:
    parser = learned()
    body = replace_line(BASE, 0, b"dask_scheduler_desired_workers 12.0")
    layouts = parser._layouts
    assert len(layouts) == 1
    assert layouts[0].read(body, MAX_DESIRED) == MetricsParser(max_desired=MAX_DESIRED).parse(body)
    assert parser.parse(body).desired == 12


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(LINE_INDEX, st.integers(0, 10**9)), max_size=len(SAMPLE_LINES)))
def test_other_counts_are_read_by_the_layout_as_exactly(changes: list[tuple[int, int]]) -> None:
    body = BASE
    for index, value in changes:
        body = replace_line(body, index, with_value(sample_line(body, index), b"%d.0" % value))
    parser = learned()
    assert parser._layouts[0].read(body, MAX_DESIRED) is not None
    assert read(parser, body) == read(MetricsParser(max_desired=MAX_DESIRED), body)


@settings(max_examples=500, deadline=None)
@given(mutations(), mutations())
def test_any_payload_is_read_by_a_layout_as_exactly(first: bytes, second: bytes) -> None:
    # `first` may teach the parser a second layout, which then meets `second`
    parser = learned()
    for body in (first, second):
        assert read(parser, body) == read(MetricsParser(max_desired=MAX_DESIRED), body)


@pytest.mark.parametrize("value", [b"NaN", b"-1.0", b"+Inf", b"1_0", b"0x10"])
def test_a_count_that_is_not_one_is_still_refused(value: bytes) -> None:
    index = 3  # a dask_scheduler_workers line
    body = replace_line(BASE, index, with_value(sample_line(BASE, index), value))
    outcome = read(learned(), body)
    assert outcome == read(MetricsParser(max_desired=MAX_DESIRED), body)
    assert isinstance(outcome, str)


def test_layouts_are_bounded_and_the_latest_is_tried_first() -> None:
    parser = MetricsParser(max_desired=MAX_DESIRED, max_layouts=2)
    erred = b'dask_scheduler_tasks{state="erred"}'
    bodies = [
        BASE.replace(erred, b'dask_scheduler_tasks{state="%s"} 1.0\n%s' % (state, erred), 1)
        for state in (b"a", b"b", b"c")
    ]
    for body in bodies:
        parser.parse(body)
    known = [
        [layout.read(body, MAX_DESIRED) is not None for layout in parser._layouts]
        for body in bodies
    ]
    assert known == [[False, False], [False, True], [True, False]]
