"""Decisions and observations: bulk writes from the loop, bounded and indexed history."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import CursorResult, Insert, Table, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from autoscaler.domain import Decision
from autoscaler.errors import NotFound
from autoscaler.store.models import (
    ClusterRow,
    DecisionRow,
    LatestDecisionRow,
    ObservationRowORM,
    decision_values,
    unstorable,
)

_DECISIONS = cast(Table, DecisionRow.__table__)
_LATEST = cast(Table, LatestDecisionRow.__table__)
_OBSERVATIONS = cast(Table, ObservationRowORM.__table__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ObservationRow:
    """The latest observation of one cluster, as recorded by the loop."""

    cluster: str
    observed_at: float  # unix seconds
    desired: int | None = None  # dask_scheduler_desired_workers (clamped); None if unknown
    current: int | None = None  # workers seen
    workers: dict[str, Any] = field(default_factory=dict)  # workers by state
    tasks: dict[str, Any] = field(default_factory=dict)  # tasks by state
    error: str | None = None  # why the last poll failed, if it did
    stale: bool = False  # too many failed polls in a row


def _upsert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT (primary key) DO UPDATE, as one executemany."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert: Callable[[Table], Any]
    if dialect == "postgresql":
        insert = postgresql.insert
    elif dialect == "sqlite":
        insert = sqlite.insert
    else:  # pragma: no cover - only SQLite and PostgreSQL are supported
        raise NotImplementedError(f"upsert on {dialect}")
    statement = insert(table)
    keys = [column.name for column in table.primary_key.columns]
    update = {c.name: statement.excluded[c.name] for c in table.columns if c.name not in keys}
    upsert: Insert = statement.on_conflict_do_update(index_elements=keys, set_=update)
    session.execute(upsert, rows)


def _latest_per_cluster(rows: Sequence[dict[str, Any]], time_key: str) -> list[dict[str, Any]]:
    """One row per cluster (the newest): an upsert may not touch the same key twice."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = latest.get(row["cluster"])
        if seen is None or row[time_key] >= seen[time_key]:
            latest[row["cluster"]] = row
    return list(latest.values())


class HistoryMixin:
    _session: Callable[[], AbstractContextManager[Session]]

    def record_decisions(self, decisions: Sequence[Decision]) -> None:
        """Append one cycle's decisions to the history and refresh the latest ones."""
        rows = [decision_values(d) for d in decisions]
        if not rows:
            return
        with self._session() as session:
            session.execute(_DECISIONS.insert(), rows)
            _upsert(session, _LATEST, _latest_per_cluster(rows, "decided_at"))

    def record_observations(self, rows: Sequence[ObservationRow]) -> None:
        """Keep the latest observation of each cluster (upsert)."""
        values = [
            {
                "cluster": r.cluster,
                "observed_at": r.observed_at,
                "desired": r.desired,
                "current": r.current,
                "workers": dict(r.workers),
                "tasks": dict(r.tasks),
                "error": r.error,
                "stale": r.stale,
            }
            for r in rows
        ]
        with self._session() as session:
            _upsert(session, _OBSERVATIONS, _latest_per_cluster(values, "observed_at"))

    def latest_observations(self, *, group: str | None = None) -> list[ObservationRow]:
        if unstorable(group):
            return []
        query = select(ObservationRowORM).join(
            ClusterRow, ClusterRow.name == ObservationRowORM.cluster
        )
        if group is not None:
            query = query.where(ClusterRow.group == group)
        with self._session() as session:
            return [
                ObservationRow(
                    cluster=o.cluster,
                    observed_at=o.observed_at,
                    desired=o.desired,
                    current=o.current,
                    workers=dict(o.workers),
                    tasks=dict(o.tasks),
                    error=o.error,
                    stale=o.stale,
                )
                for o in session.scalars(query.order_by(ObservationRowORM.cluster))
            ]

    def latest_decisions(self, *, group: str | None = None) -> list[Decision]:
        """The latest decision of every registered cluster (visible to ``group``), by name."""
        if unstorable(group):
            return []
        query = select(LatestDecisionRow).join(
            ClusterRow, ClusterRow.name == LatestDecisionRow.cluster
        )
        if group is not None:
            query = query.where(ClusterRow.group == group)
        with self._session() as session:
            rows = session.scalars(query.order_by(LatestDecisionRow.cluster))
            return [row.to_decision() for row in rows]

    def history(
        self, cluster: str, *, limit: int = 100, group: str | None = None
    ) -> list[Decision]:
        """The last ``limit`` decisions of ``cluster``, newest first; NotFound if not visible."""
        if unstorable(cluster, group):
            raise NotFound(f"no cluster named {cluster!r}")
        visible = select(ClusterRow.id).where(ClusterRow.name == cluster)
        if group is not None:
            visible = visible.where(ClusterRow.group == group)
        query = (
            select(DecisionRow)
            .where(DecisionRow.cluster == cluster)
            .order_by(DecisionRow.decided_at.desc(), DecisionRow.id.desc())
            .limit(max(0, limit))
        )
        with self._session() as session:
            if session.scalar(visible) is None:
                raise NotFound(f"no cluster named {cluster!r}")
            return [row.to_decision() for row in session.scalars(query)]

    def prune_history(self, older_than: float) -> int:
        """Delete decisions made before ``older_than`` (unix seconds); returns how many.

        The loop calls ``prune_history(time.time() - settings.history_retention)``.
        """
        with self._session() as session:
            statement = delete(DecisionRow).where(DecisionRow.decided_at < older_than)
            result = cast(CursorResult[Any], session.execute(statement))
            return int(result.rowcount)
