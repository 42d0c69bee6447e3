"""The fast solver equals the textbook reference, meets the known answers and the invariants."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import drf
from drf import metrics, reference

KNOWN_ANSWERS = [
    # the DRF paper: pool (9 CPU, 18 GB), A (1, 4), B (3, 1), unlimited demand
    dict(capacity=[9, 18], worker=[[1, 4], [3, 1]], desired=[100, 100], expected=[3, 2]),
    dict(
        capacity=[64, 512],
        worker=[[2, 16], [4, 8], [1, 32]],
        desired=[20, 20, 20],
        expected=[14, 7, 7],
    ),
    dict(
        capacity=[64, 512],
        worker=[[2, 16], [4, 8], [1, 32]],
        desired=[20, 20, 20],
        weight=[2, 1, 1],
        expected=[19, 5, 5],
    ),
    dict(
        capacity=[64, 512],
        worker=[[2, 16], [4, 8], [1, 32]],
        desired=[20, 20, 20],
        minimum=[0, 0, 10],
        expected=[9, 6, 10],
    ),
    dict(capacity=[30, 30], worker=[[1, 3], [1, 1]], desired=[100, 100], expected=[5, 15]),
    dict(capacity=[10], worker=[[1], [1], [1]], desired=[2, 4, 10], expected=[2, 4, 4]),
]


@pytest.mark.parametrize("solver", [drf.allocate, reference.allocate], ids=["fast", "reference"])
@pytest.mark.parametrize("case", KNOWN_ANSWERS)
def test_known_answers(solver, case):
    case = dict(case)
    expected = case.pop("expected")
    assert solver(**case).tolist() == expected


@st.composite
def instances(draw, max_clusters: int = 12):
    n = draw(st.integers(1, max_clusters))
    r = draw(st.integers(1, 4))
    capacity = draw(st.lists(st.integers(0, 60), min_size=r, max_size=r))
    worker = draw(
        st.lists(st.lists(st.integers(0, 9), min_size=r, max_size=r), min_size=n, max_size=n)
    )
    desired = draw(st.lists(st.integers(0, 40), min_size=n, max_size=n))
    minimum = draw(st.lists(st.integers(0, 15), min_size=n, max_size=n))
    maximum = [
        None if m is None else lo + m
        for lo, m in zip(
            minimum,
            draw(st.lists(st.none() | st.integers(0, 30), min_size=n, max_size=n)),
            strict=True,
        )
    ]
    weight = draw(st.lists(st.sampled_from([0.5, 1, 1, 1, 2, 3]), min_size=n, max_size=n))
    tier = draw(st.lists(st.integers(0, 2), min_size=n, max_size=n))
    no_cap = drf.NO_CAP
    return dict(
        capacity=capacity,
        worker=worker,
        desired=desired,
        minimum=minimum,
        maximum=[no_cap if m is None else m for m in maximum],
        weight=weight,
        tier=tier,
    )


@settings(max_examples=400, deadline=None)
@given(instances())
def test_fast_equals_reference(problem):
    assert drf.allocate(**problem).tolist() == reference.allocate(**problem).tolist()


@st.composite
def many_ties(draw):
    """Many clusters with the same few worker shapes: long runs of equal keys."""
    n = draw(st.integers(20, 300))
    shapes = [[1, 2], [2, 1], [1, 1], [3, 3]]
    kinds = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    return dict(
        capacity=[draw(st.integers(10, 400)), draw(st.integers(10, 400))],
        worker=[shapes[k] for k in kinds],
        desired=draw(st.lists(st.integers(0, 30), min_size=n, max_size=n)),
        weight=draw(st.lists(st.sampled_from([1, 1, 2]), min_size=n, max_size=n)),
    )


@settings(max_examples=100, deadline=None)
@given(many_ties())
def test_fast_equals_reference_with_many_ties(problem):
    assert drf.allocate(**problem).tolist() == reference.allocate(**problem).tolist()


def _fits(problem, alloc, i):
    worker = np.asarray(problem["worker"], dtype=float)
    used = alloc @ worker
    return bool(np.all(used + worker[i] <= np.asarray(problem["capacity"], dtype=float)))


@settings(max_examples=200, deadline=None)
@given(instances())
def test_invariants(problem):
    alloc = drf.allocate(**problem)
    worker = np.asarray(problem["worker"], dtype=float)
    capacity = np.asarray(problem["capacity"], dtype=float)
    assert np.all(alloc @ worker <= capacity), "over capacity"
    minimum, maximum = np.asarray(problem["minimum"]), np.asarray(problem["maximum"])
    cap = np.minimum(np.maximum(problem["desired"], minimum), maximum)
    assert np.all(alloc <= cap)
    dom = drf.dominant_shares(capacity, worker)
    for i in range(len(alloc)):
        if alloc[i] < cap[i] and np.isfinite(dom[i]):
            # work-conserving: nobody below its cap has a next worker that fits
            assert not _fits(problem, alloc, i)
    # guarantees: if all minimums fit together, every cluster gets its minimum
    guarantee = np.minimum(minimum, maximum)
    if np.all(guarantee @ worker <= capacity) and np.all(np.isfinite(dom) | (guarantee == 0)):
        assert np.all(alloc >= guarantee)


PRIMES = [53, 59, 61, 67, 71, 73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127]


@st.composite
def tie_free_instances(draw):
    """Distinct prime dominant sizes and room for everyone's first worker: the only equal keys
    are the zeros at the start, which all fit, so the order of clusters cannot matter."""
    n = draw(st.integers(2, 10))
    big = draw(st.permutations(PRIMES))[:n]
    small = [draw(st.integers(0, p - 1)) for p in big]
    flip = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    worker = [[s, b] if f else [b, s] for b, s, f in zip(big, small, flip, strict=True)]
    minimum = draw(st.lists(st.integers(0, 3), min_size=n, max_size=n))
    first_workers = sum(b * (m + 1) for b, m in zip(big, minimum, strict=True))
    room = draw(st.integers(first_workers, 40 * sum(big)))
    return dict(
        capacity=[room, room],
        worker=worker,
        desired=draw(st.lists(st.integers(1, 35), min_size=n, max_size=n)),
        minimum=minimum,
    )


@settings(max_examples=150, deadline=None)
@given(tie_free_instances(), st.randoms(use_true_random=False))
def test_order_of_clusters_does_not_matter_without_ties(problem, rnd):
    n = len(problem["desired"])
    perm = list(range(n))
    rnd.shuffle(perm)
    shuffled = {k: (v if k == "capacity" else [v[i] for i in perm]) for k, v in problem.items()}
    again = drf.allocate(**shuffled)
    unshuffled = np.empty_like(again)
    unshuffled[perm] = again
    assert unshuffled.tolist() == drf.allocate(**problem).tolist()


def test_single_cluster_alone_gets_what_fits():
    assert drf.allocate([10, 100], [[3, 10]], [50]).tolist() == [3]


def test_zero_capacity_resource_gets_nothing_even_its_minimum():
    alloc = drf.allocate([10, 0], [[1, 1], [1, 0]], [5, 5], minimum=[2, 0])
    assert alloc.tolist() == [0, 5]


def test_tier_zero_served_before_tier_one():
    alloc = drf.allocate([10], [[1], [1]], [10, 10], tier=[1, 0])
    assert alloc.tolist() == [0, 10]


def test_blocked_cluster_does_not_stop_the_fill():
    # the big worker stops fitting first; the small ones keep filling the pool
    # keys: A (size 4) 0, 0.4, ...; B (size 1) 0, 0.1, 0.2, ... A's second worker comes at
    # level 0.4 with 8 units used and does not fit; B keeps filling the 2 units left.
    assert drf.allocate([10], [[4], [1]], [10, 10]).tolist() == [1, 6]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(capacity=[1, 2], worker=[[1]], desired=[1]), "worker must have shape"),
        (dict(capacity=[-1], worker=[[1]], desired=[1]), "capacity must be >= 0"),
        (dict(capacity=[float("nan")], worker=[[1]], desired=[1]), "capacity contains NaN"),
        (dict(capacity=[1], worker=[[-1]], desired=[1]), "worker must be >= 0"),
        (dict(capacity=[1], worker=[[1]], desired=[-1]), "desired must be >= 0"),
        (dict(capacity=[1], worker=[[1]], desired=[1, 2]), "desired must have shape"),
        (dict(capacity=[1], worker=[[1]], desired=[1.5]), "whole, finite"),
        (dict(capacity=[1], worker=[[1]], desired=[1], weight=[0]), "weight must be"),
        (dict(capacity=[1], worker=[[1]], desired=[1], minimum=[3], maximum=[2]), "minimum above"),
        (dict(capacity=[1], worker=[[1]], desired=[1], tier=[0.5]), "tier must be"),
    ],
)
@pytest.mark.parametrize("solver", [drf.allocate, reference.allocate], ids=["fast", "reference"])
def test_bad_input_is_a_clear_value_error(solver, kwargs, message):
    with pytest.raises(ValueError, match=message):
        solver(**kwargs)


def test_metrics():
    capacity, worker = [9, 18], [[1, 4], [3, 1]]
    alloc = drf.allocate(capacity, worker, [100, 100])
    shares = metrics.dominant_shares(capacity, worker, alloc)
    assert shares == pytest.approx([2 / 3, 2 / 3])
    assert metrics.jain_index(shares) == pytest.approx(1.0)
    assert metrics.jain_index([1, 0, 0, 0]) == pytest.approx(0.25)
    assert metrics.utilization(capacity, worker, alloc) == pytest.approx([1.0, 14 / 18])
    assert metrics.dominant_shares(capacity, worker, [1, 1], weight=[2, 1]) == pytest.approx(
        [4 / 18 / 2, 3 / 9]
    )
