"""Store queries the dashboard needs and ``Store`` does not offer: decisions since a time.

They use the store's engine and tables directly (read only), so ``store.py`` stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, select

from autoscaler.store import Store
from autoscaler.store.models import ClusterRow, DecisionRow, unstorable


@dataclass(frozen=True, slots=True)
class Point:
    """One cluster's decision in one cycle, as drawn on the charts."""

    cluster: str
    decided_at: float
    allocated: int
    dominant_share: float


@dataclass(frozen=True, slots=True)
class CycleTotal:
    """All visible clusters in one cycle: the sum of their allocations."""

    decided_at: float
    allocated: int
    clusters: int


def decisions_since(store: Store, since: float, clusters: Sequence[str]) -> list[Point]:
    """The decisions of ``clusters`` made at or after ``since`` (unix seconds), oldest first."""
    names = [name for name in clusters if not unstorable(name)]
    if not names:
        return []
    query = (
        select(
            DecisionRow.cluster,
            DecisionRow.decided_at,
            DecisionRow.allocated,
            DecisionRow.dominant_share,
        )
        .where(DecisionRow.decided_at >= since, DecisionRow.cluster.in_(names))
        .order_by(DecisionRow.decided_at, DecisionRow.id)
    )
    with store.engine.connect() as connection:
        return [Point(*row) for row in connection.execute(query)]


def totals_since(store: Store, since: float, *, group: str | None = None) -> list[CycleTotal]:
    """Per cycle (one ``decided_at``) since ``since``: allocated workers of every visible
    cluster (registered, and of ``group`` if given), oldest first."""
    if unstorable(group):
        return []
    query = (
        select(DecisionRow.decided_at, func.sum(DecisionRow.allocated), func.count())
        .join(ClusterRow, ClusterRow.name == DecisionRow.cluster)
        .where(DecisionRow.decided_at >= since)
        .group_by(DecisionRow.decided_at)
        .order_by(DecisionRow.decided_at)
    )
    if group is not None:
        query = query.where(ClusterRow.group == group)
    with store.engine.connect() as connection:
        return [CycleTotal(t, int(total or 0), int(n)) for t, total, n in connection.execute(query)]
